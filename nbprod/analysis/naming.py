"""The name of the generated package: the notebook's, unless that would shadow a module.

A notebook called ``xgboost.ipynb`` must not become a package ``xgboost`` that hides
the library it imports (a circular import, or an install that cannot resolve), nor one
named after the standard library or a dependency every generated package has.
"""

from __future__ import annotations

import functools
import site
import sys
import sysconfig
from collections.abc import Iterable
from importlib.machinery import PathFinder

from nbprod.notebook import Notebook

# Top-level modules of what every generated package installs or is tested with.
_ALWAYS_THERE = frozenset(
    {
        "nbprod",
        "numpy",
        "pandas",
        "skops",
        "sklearn",
        "scipy",
        "joblib",
        "threadpoolctl",
        "pyarrow",
        "starlette",
        "uvicorn",
        "httpx",
        "pytest",
        "tests",
    }
)


def is_taken(name: str, imported: Iterable[str]) -> bool:
    """Whether a generated package may not take the module name ``name``: one of the
    notebook's imports, the standard library, the package's own dependencies, or a
    module installed here."""
    return (
        name in frozenset(imported)
        or name in _ALWAYS_THERE
        or name in sys.stdlib_module_names
        or _installed(name)
    )


def is_library(name: str) -> bool:
    """Whether the top-level module ``name`` is the standard library's or installed in
    site-packages, as opposed to the notebook's own code (a file beside it)."""
    return name in sys.stdlib_module_names or _installed(name)


@functools.cache
def _installed(name: str) -> bool:
    """Whether the interpreter's site-packages hold a top-level module ``name``. Asking
    the import system about one name costs microseconds; listing every distribution's
    modules (``packages_distributions``) costs a fifth of a second at each start."""
    folders = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    if site.ENABLE_USER_SITE:
        folders.add(site.getusersitepackages())
    try:
        return PathFinder.find_spec(name, sorted(folders)) is not None
    except (ImportError, ValueError):
        return True  # unsure: keep clear of it


def package_name(notebook: Notebook, imported: Iterable[str]) -> tuple[str, str | None]:
    """(the package's name, why it differs from the notebook's file name, or None).

    ``metadata.nbprod.name`` is taken as given (the analysis reports a clash); the
    default gets ``_model`` appended until it is free.
    """
    wanted = notebook.package_name
    if notebook.settings.name is not None or not is_taken(wanted, imported):
        return wanted, None
    chosen = f"{wanted}_model"
    while is_taken(chosen, imported):
        chosen += "_pkg"
    return chosen, (
        f"the package is named `{chosen}`: `{wanted}`, from the notebook's file name, would "
        f"shadow the module `{wanted}`"
    )
