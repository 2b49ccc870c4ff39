"""The fork server, in three parts: the process (``server``), the driver's handle on it
(``handle``) and the wire protocol they share (``protocol``).

A package of its own because the server process must stay light and single-threaded:
it imports ``protocol`` and the standard library only, never jupyter_client's kernel
manager (``nbprod.execution.kernels``), which the handle uses.
"""
