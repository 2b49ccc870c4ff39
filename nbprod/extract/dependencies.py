"""Runtime requirements of the generated package, pinned to the run's versions.

They are what the extracted code imports, and what the artifacts' loaders import
even when that code does not (an xgboost model needs xgboost, a data frame pyarrow):
each manifest entry records those distributions with the versions that saved it.
scikit-learn is pinned exactly (a model is only guaranteed to load, and to predict
the same, with the version that fitted it); other libraries get a compatible-release
pin (``~=X.Y.Z``).
"""

from __future__ import annotations

import re
import sys
from typing import Any

EXACT = frozenset({"scikit-learn", "skops"})
# What every generated package needs whatever the notebook imports.
BASE = ("numpy", "pandas", "skops")
TEST_ONLY = ("pyarrow",)
# `<pkg> serve` (the extra "serve": its GET /metrics too) and Parquet batch files and
# prediction logs (the extra "parquet").
SERVE = ("starlette>=0.37", "uvicorn>=0.30", "prometheus_client>=0.20")
HTTP_TESTS = ("httpx>=0.27",)
# Distributions that are part of the notebook tool chain, never of a model's runtime.
NOTEBOOK_ONLY = frozenset({"ipython", "ipykernel", "matplotlib-inline", "nbprod", "papermill"})


def pins(
    environment: dict[str, Any],
    used_modules: set[str],
    manifest: dict[str, Any] | None = None,
    package: str | None = None,
) -> tuple[list[str], list[str]]:
    """(runtime requirements, test requirements) for the modules the code imports and
    the distributions the artifacts of ``manifest`` (``artifacts/manifest.json``) load with.

    An artifact may refer to the package's own code (a class of the notebook): when an
    earlier build of ``package`` was installed in the kernel, it is never its own requirement.
    The tests need Parquet (recorded values) and the HTTP app with its test client.
    """
    packages: dict[str, str] = environment.get("packages", {})
    modules = set(environment.get("modules", []))
    runtime: dict[str, str] = {}
    import importlib.metadata as metadata

    providers = metadata.packages_distributions()
    for module in sorted(used_modules & modules | set(BASE) & set(packages) | set(BASE)):
        for distribution in providers.get(module, []):
            if distribution.lower() in NOTEBOOK_ONLY or module in sys.stdlib_module_names:
                continue
            version = packages.get(distribution)
            runtime[distribution.lower()] = _pin(distribution, version)
    itself = _normalized(package or "")
    for distribution, version in artifact_distributions(manifest or {}).items():
        if distribution.lower() not in NOTEBOOK_ONLY and _normalized(distribution) != itself:
            runtime[distribution.lower()] = _pin(distribution, version)
    tests = [_pin(d, packages.get(d)) for d in TEST_ONLY] + [*SERVE, *HTTP_TESTS, "pytest>=7"]
    return sorted(runtime.values(), key=str.lower), tests


def artifact_distributions(manifest: dict[str, Any]) -> dict[str, str]:
    """The distributions the artifacts' loaders import, with the versions that saved them
    (recorded in the kernel; a manifest from before formats existed records none)."""
    found: dict[str, str] = {}
    for entry in manifest.get("artifacts", {}).values():
        found.update(entry.get("versions", {}))
    return found


def onnx_pin(versions: dict[str, str]) -> str:
    """The package's extra ``onnx``: the ONNX Runtime its converted models were proven on."""
    return _pin("onnxruntime", versions.get("onnxruntime"))


def parquet_pin(environment: dict[str, Any]) -> str:
    return _pin("pyarrow", environment.get("packages", {}).get("pyarrow"))


def _normalized(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _pin(distribution: str, version: str | None) -> str:
    if version is None:
        return distribution
    if distribution.lower() in EXACT:
        return f"{distribution}=={version}"
    return f"{distribution}~={version}"
