"""Code that runs outside nbprod: inside the notebook's kernel and inside generated packages.

These modules import nothing from nbprod (only the standard library, numpy, pandas,
pyarrow and skops), because they are copied verbatim into every generated package
and executed from source inside kernels that may not have nbprod installed.
"""

import hashlib
import json
from importlib import resources
from pathlib import Path

# What a generated package carries a copy of (``_values.py``, ...), in import order; a
# run's kernel executes these and ``capture`` from source as the package ``_nbprod``.
PACKAGED = ("values", "_formats", "artifacts", "schema")
KERNEL = (*PACKAGED, "capture")
# Carried by generated packages only: a kernel has no use for them, and each module a
# kernel loads would change the fork server's digest and cost every run its import.
PACKAGE_ONLY = ("_profile", "_onnx")
# Copied under their own names: ``<pkg>.monitor`` (drift against the profile) is public.
MONITOR = ("monitor", "_monitor_drift", "_monitor_html")


def source(name: str) -> str:
    """The source text of ``nbprod/runtime/<name>.py``, as it is copied or executed."""
    return resources.files(__name__).joinpath(f"{name}.py").read_text(encoding="utf-8")


def loader(modules: tuple[str, ...] = KERNEL) -> str:
    """Source that defines ``__nbprod_load()``: it executes ``modules`` from source as the
    package ``_nbprod`` (so that ``artifacts`` imports ``from . import _formats`` as in a
    generated package), each also reachable as ``_nbprod_<name>`` (``nbprod.log_metric``
    finds the recorder at ``_nbprod_capture``), and returns them by name.

    The kernel runs on this machine: it reads the sources from nbprod's own files (its
    tracebacks then show their lines), or from the cell when nbprod is not installed as
    files. A kernel forked from nbprod's fork server, which ran the same loader, already
    has these very modules (the digest of their sources says so): it keeps them, with
    what the server looked up once for every run (``capture.warm``).
    """
    sources = {name: source(name) for name in modules}
    digest = hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()
    folder = resources.files(__name__)
    if isinstance(folder, Path) and folder.is_dir():
        # through the import system: its bytecode cache spares compiling them each run
        file = f"{str(folder)!r} + '/' + name + '.py'"
        run = f"""\
        spec = importlib.util.spec_from_file_location(module.__name__, {file})
        module.__file__ = spec.origin
        spec.loader.exec_module(module)"""
    else:
        code = f"compile({json.dumps(sources)}[name], '<nbprod ' + name + '>', 'exec')"
        run = f"""\
        exec({code}, module.__dict__)"""
    return f"""\
def __nbprod_load():
    import importlib.util, sys, types
    package = sys.modules.get("_nbprod")
    if getattr(package, "__nbprod_digest__", None) == {digest!r}:
        return dict(package.__nbprod_modules__)
    package = types.ModuleType("_nbprod")
    package.__path__ = []
    sys.modules["_nbprod"] = package
    modules = {{}}
    for name in {list(modules)!r}:
        module = types.ModuleType("_nbprod." + name)
        module.__package__ = "_nbprod"
        sys.modules[module.__name__] = sys.modules["_nbprod_" + name.lstrip("_")] = module
        setattr(package, name, module)
{run}
        modules[name] = module
    package.__nbprod_modules__ = modules
    package.__nbprod_digest__ = {digest!r}
    return dict(modules)
"""
