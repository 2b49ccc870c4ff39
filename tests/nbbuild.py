"""Build small notebooks in tests: ``notebook(("train", "model = fit()"), ...)``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nbprod.notebook import Notebook, load_notebook

Cell = tuple[str | None, str] | str

# A notebook every role of which runs in a fraction of a second: one artifact (`w`),
# one parameter, an example call for the parity record and a test cell.
SMALL = (
    ("parameters", "a = 2"),
    ("data", "xs = [1, 2, 3]"),
    ("train", "w = sum(xs) * a"),
    ("inference", "def predict(x):\n    return x * w"),
    (None, "predict(5)"),
    ("test", "assert predict(1) == w"),
)
# SMALL with a markdown cell and a metric (`score`), for tests that list and sort runs.
SCORED = (
    "A notebook whose runs take a second and record a metric.",
    *SMALL[:3],
    ("metrics", "score = float(w)"),
    *SMALL[3:],
)


def notebook_node(*cells: Cell, nbprod: dict[str, Any] | None = None) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    if nbprod is not None:
        nb.metadata["nbprod"] = nbprod
    for cell in cells:
        if isinstance(cell, str):
            nb.cells.append(new_markdown_cell(cell))
            continue
        role, source = cell
        code = new_code_cell(source)
        if role:
            code.metadata["tags"] = role.split(",")
        nb.cells.append(code)
    return nb


def write_notebook(path: Path, *cells: Cell, nbprod: dict[str, Any] | None = None) -> Path:
    path.write_text(json.dumps(notebook_node(*cells, nbprod=nbprod)), encoding="utf-8")
    return path


def build(tmp_path: Path, *cells: Cell, nbprod: dict[str, Any] | None = None) -> Notebook:
    return load_notebook(write_notebook(tmp_path / "nb.ipynb", *cells, nbprod=nbprod))
