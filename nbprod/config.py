"""Project-wide defaults from ``[tool.nbprod]`` of the nearest ``pyproject.toml``.

```toml
[tool.nbprod]
store = ".runs/runs.db"              # run store (relative to the pyproject.toml)
dask = { address = "tcp://scheduler:8786" }
mlflow = { tracking_uri = "http://mlflow:5000", experiment = "churn" }  # log runs to MLflow
```
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any


def project_config(notebook: Path) -> tuple[dict[str, Any], Path | None]:
    """(``[tool.nbprod]`` table, folder of its pyproject.toml) for a notebook."""
    for folder in [notebook.resolve().parent, *notebook.resolve().parents]:
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            return _read(pyproject), folder
    return {}, None


@lru_cache(maxsize=32)
def _read(pyproject: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    table = data.get("tool", {}).get("nbprod", {})
    return table if isinstance(table, dict) else {}


def configured(notebook: Path, dotted: str) -> Any:
    """A value such as ``dask.address`` from the project's ``[tool.nbprod]``, or None."""
    value: Any = project_config(notebook)[0]
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value
