"""The name of the generated package: the notebook's, unless that would shadow a module.

A notebook called ``xgboost.ipynb`` must not become a package ``xgboost`` that hides
the library it imports (a circular import, or an install that cannot resolve), nor one
named after the standard library or a dependency every generated package has.
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys
from collections.abc import Iterable

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


def taken_names(imported: Iterable[str]) -> frozenset[str]:
    """Module names a generated package may not take: the notebook's imports, the
    standard library, the package's own dependencies and what is installed here."""
    return frozenset(imported) | _ALWAYS_THERE | _installed() | frozenset(sys.stdlib_module_names)


@functools.cache
def _installed() -> frozenset[str]:
    return frozenset(importlib.metadata.packages_distributions())


def package_name(notebook: Notebook, imported: Iterable[str]) -> tuple[str, str | None]:
    """(the package's name, why it differs from the notebook's file name, or None).

    ``metadata.nbprod.name`` is taken as given (the analysis reports a clash); the
    default gets ``_model`` appended until it is free.
    """
    wanted = notebook.package_name
    taken = taken_names(imported)
    if notebook.settings.name is not None or wanted not in taken:
        return wanted, None
    chosen = f"{wanted}_model"
    while chosen in taken:
        chosen += "_pkg"
    return chosen, (
        f"the package is named `{chosen}`: `{wanted}`, from the notebook's file name, would "
        f"shadow the module `{wanted}`"
    )
