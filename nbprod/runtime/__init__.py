"""Code that runs outside nbprod: inside the notebook's kernel and inside generated packages.

These modules import nothing from nbprod (only the standard library, numpy, pandas,
pyarrow and skops), because they are copied verbatim into every generated package
and executed from source inside kernels that may not have nbprod installed.
"""

from importlib import resources

# What a generated package carries a copy of (``_values.py``, ...), in import order; a
# run's kernel executes these and ``capture`` from source as the package ``_nbprod``.
PACKAGED = ("values", "_formats", "artifacts", "schema")
KERNEL = (*PACKAGED, "capture")


def source(name: str) -> str:
    """The source text of ``nbprod/runtime/<name>.py``, as it is copied or executed."""
    return resources.files(__name__).joinpath(f"{name}.py").read_text(encoding="utf-8")
