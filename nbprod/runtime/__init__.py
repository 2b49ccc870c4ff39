"""Code that runs outside nbprod: inside the notebook's kernel and inside generated packages.

These modules import nothing from nbprod (only the standard library, numpy, pandas,
pyarrow and skops), because they are copied verbatim into every generated package
and executed from source inside kernels that may not have nbprod installed.
"""
