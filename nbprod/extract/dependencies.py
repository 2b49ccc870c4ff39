"""Runtime requirements of the generated package, pinned to the run's versions.

scikit-learn is pinned exactly (a model is only guaranteed to load, and to predict
the same, with the version that fitted it); other libraries get a compatible-release
pin (``~=X.Y.Z``).
"""

from __future__ import annotations

import sys
from typing import Any

EXACT = frozenset({"scikit-learn", "skops"})
# What every generated package needs whatever the notebook imports.
BASE = ("numpy", "pandas", "skops")
TEST_ONLY = ("pyarrow",)
# `<pkg> serve` (the extra "serve") and Parquet batch files (the extra "parquet").
SERVE = ("starlette>=0.37", "uvicorn>=0.30")
HTTP_TESTS = ("httpx>=0.27",)
# Distributions that are part of the notebook tool chain, never of a model's runtime.
NOTEBOOK_ONLY = frozenset({"ipython", "ipykernel", "matplotlib-inline", "nbprod", "papermill"})


def pins(environment: dict[str, Any], used_modules: set[str]) -> tuple[list[str], list[str]]:
    """(runtime requirements, test requirements) for the modules the code imports.

    The tests need Parquet (recorded values) and the HTTP app with its test client.
    """
    packages: dict[str, str] = environment.get("packages", {})
    modules = set(environment.get("modules", []))
    runtime: dict[str, str] = {}
    import importlib.metadata as metadata

    providers = metadata.packages_distributions()
    for module in sorted(used_modules & modules | set(BASE) & set(packages) | set(BASE)):
        for distribution in providers.get(module, [module]):
            if distribution.lower() in NOTEBOOK_ONLY or module in sys.stdlib_module_names:
                continue
            version = packages.get(distribution)
            runtime[distribution.lower()] = _pin(distribution, version)
    tests = [_pin(d, packages.get(d)) for d in TEST_ONLY] + [*SERVE, *HTTP_TESTS, "pytest>=7"]
    return sorted(runtime.values(), key=str.lower), tests


def parquet_pin(environment: dict[str, Any]) -> str:
    return _pin("pyarrow", environment.get("packages", {}).get("pyarrow"))


def _pin(distribution: str, version: str | None) -> str:
    if version is None:
        return distribution
    if distribution.lower() in EXACT:
        return f"{distribution}=={version}"
    return f"{distribution}~={version}"
