"""Which notebooks a path names: ``nbprod check``, ``nbprod test`` and the pytest plugin.

A file is taken as given (whatever its suffix: the command then says what is wrong
with it). A folder is searched for ``*.ipynb`` the way pytest collects tests: hidden
folders, build output, ``node_modules``, virtual environments, nbprod's own run
folders (``.nbprod``) and Jupyter's checkpoints are not entered.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from nbprod.exceptions import NotebookFileError
from nbprod.roles import ROLES

# pytest's default ``norecursedirs``, plus what holds copies of notebooks.
SKIPPED_FOLDERS = frozenset(
    {"build", "dist", "node_modules", "venv", "CVS", "_darcs", "{arch}", "__pycache__"}
)


def skipped_folder(folder: Path) -> bool:
    """Whether a folder met while searching is left out (see the module docstring)."""
    name = folder.name
    return (
        name.startswith(".")
        or name in SKIPPED_FOLDERS
        or name.endswith(".egg")
        or (folder / "pyvenv.cfg").is_file()  # any virtual environment, whatever its name
    )


def is_generated(path: Path) -> bool:
    """Run folders (``.nbprod/runs/...``) and Jupyter's checkpoints hold copies."""
    return any(part in (".nbprod", ".ipynb_checkpoints") for part in path.parts)


def find_notebooks(paths: Iterable[str | Path]) -> list[Path]:
    """The notebooks the paths name, each once, in the order given (folders sorted).

    A path that does not exist raises ``NotebookFileError`` naming it.
    """
    found: dict[Path, None] = {}
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.update(dict.fromkeys(_under(path)))
        elif path.exists():
            found[path] = None
        else:
            raise NotebookFileError(f"{path}: no such file or folder")
    return list(found)


def _under(folder: Path) -> list[Path]:
    notebooks = []
    for root, folders, files in os.walk(folder):
        base = Path(root)
        folders[:] = sorted(name for name in folders if not skipped_folder(base / name))
        notebooks += [base / name for name in sorted(files) if name.endswith(".ipynb")]
    return notebooks


_OWN_ROLES = frozenset(ROLES) - {"parameters"}  # the tags only nbprod gives


def has_roles(path: Path) -> bool:
    """Whether any code cell of the notebook carries an nbprod role tag.

    ``parameters`` alone does not count: it is papermill's tag first, and a notebook
    that papermill parameterises is not one nbprod extracts until it tags more. Reads
    only the JSON (no validation), so that deciding costs little, and reads tags as
    ``load_notebook`` does (``" Train"`` is ``train``); a file whose tags cannot be read
    (not JSON, cells or tags of the wrong type) counts as having roles, so that its
    check reports what is wrong.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return True
    cells = document.get("cells") if isinstance(document, dict) else None
    if not isinstance(cells, list):
        return not (isinstance(document, dict) and "worksheets" in document)  # nbformat 3
    for cell in cells:
        # only code cells have roles; a cell of no known type is read as one, so that
        # its check says what is wrong with it
        if isinstance(cell, dict) and cell.get("cell_type") in ("markdown", "raw"):
            continue
        metadata = cell.get("metadata", {}) if isinstance(cell, dict) else None
        tags = metadata.get("tags", []) if isinstance(metadata, dict) else None
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            return True
        if any(tag.strip().lower() in _OWN_ROLES for tag in tags):
            return True
    return False
