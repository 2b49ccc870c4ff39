"""Where test inputs live: the shipped example notebooks are the fixture notebooks."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "example_notebooks"
EXAMPLE_NAMES = ("wine_forest", "diabetes_regression", "cancer_threshold")


def example(name: str) -> Path:
    return EXAMPLES / f"{name}.ipynb"


def copy_example(name: str, folder: Path) -> Path:
    """Copy an example notebook and its data so runs write their store under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(EXAMPLES / "data", folder / "data", dirs_exist_ok=True)
    return Path(shutil.copy(example(name), folder / f"{name}.ipynb"))
