"""Running notebooks: one run (``execute``: instrument, kernel, record), many runs
(``sweep``: plan a grid, hand it to an executor), and where the kernels come from
(``kernels``, the ``forkserver`` package, the ``executors`` registry).

A stage package: it reads the analysis, records runs through ``nbprod.runs`` and, at
the end of a run, proves the run can become a package through ``nbprod.extract``'s
verification (the round trip), which is why extraction sits below it.
"""
