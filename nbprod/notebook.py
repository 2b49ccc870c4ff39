"""Load a notebook, validate it, and read its roles (cell tags) and nbprod settings."""

from __future__ import annotations

import json
import keyword
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4.rwbase import rejoin_lines
from nbformat.validator import normalize

from .exceptions import NotebookFileError
from .roles import ROLES

PREDICTION_ROLES = ("features", "inference")
SUPPORTED_NBFORMAT = (4,)


@dataclass(frozen=True)
class Cell:
    """A code cell with its role. ``number`` is the 1-based position among all cells."""

    number: int
    source: str
    role: str | None
    extra_roles: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"cell {self.number} ({self.role or 'untagged'})"


@dataclass(frozen=True)
class Settings:
    """``metadata.nbprod`` of the notebook."""

    name: str | None = None
    inference: str | None = None
    smoke: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()
    kernel: str | None = None


@dataclass(frozen=True)
class Notebook:
    path: Path
    node: nbformat.NotebookNode
    cells: tuple[Cell, ...]
    settings: Settings

    @property
    def package_name(self) -> str:
        return self.settings.name or package_name_from(self.path)

    def by_role(self, role: str) -> list[Cell]:
        return [cell for cell in self.cells if cell.role == role]


def package_name_from(path: Path) -> str:
    """The notebook's file name made a valid, PEP 8 style module name."""
    ascii_stem = unicodedata.normalize("NFKD", path.stem).encode("ascii", "ignore").decode()
    name = re.sub(r"[^0-9a-zA-Z]+", "_", ascii_stem.strip().lower()).strip("_") or "model"
    if name[0].isdigit() or keyword.iskeyword(name):
        name = f"nb_{name}"
    return name


def load_notebook(path: str | Path) -> Notebook:
    """Read and validate ``path``; errors name the file and say how to fix it."""
    path = Path(path)
    if not path.exists():
        raise NotebookFileError(f"{path}: no such file")
    if path.is_dir():
        raise NotebookFileError(f"{path} is a folder, not a notebook")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise NotebookFileError(f"{path} is not a text file: {error}") from error
    except json.JSONDecodeError as error:
        raise NotebookFileError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})",
            "a notebook is a JSON file; was it saved completely, or merged with conflict markers?",
        ) from error
    return notebook_from_json(raw, path)


def notebook_from_json(raw: Any, path: str | Path) -> Notebook:
    """A notebook from its decoded JSON, e.g. unsaved content an editor sends; ``path``
    is where it lives (or will), which names the package and places its runs."""
    path = Path(path)
    node = parse_notebook(raw, str(path))
    return Notebook(path=path.resolve(), node=node, cells=_cells(node), settings=_settings(node))


def parse_notebook(raw: Any, name: str = "notebook") -> nbformat.NotebookNode:
    """Validate a decoded notebook JSON document and return it as nbformat version 4."""
    if not isinstance(raw, dict) or ("cells" not in raw and "worksheets" not in raw):
        raise NotebookFileError(f"{name} is not a Jupyter notebook: it has no 'cells'")
    major = raw.get("nbformat")
    if not isinstance(major, int):
        raise NotebookFileError(f"{name} is not a Jupyter notebook: it has no 'nbformat' version")
    if major not in SUPPORTED_NBFORMAT:
        raise NotebookFileError(
            f"{name} uses nbformat {major}, which nbprod does not support",
            "open and save it with a current Jupyter to upgrade it to nbformat 4",
        )
    _, raw = normalize(raw)  # e.g. adds the cell ids nbformat 4.5 requires
    node = rejoin_lines(nbformat.from_dict(raw))
    try:
        nbformat.validate(node)
    except nbformat.ValidationError as error:
        # Real notebooks often break the schema in outputs or metadata written by
        # other tools; that does not matter to nbprod as long as the cells are sound.
        if not _cells_are_sound(raw):
            message = str(getattr(error, "message", error))
            raise NotebookFileError(f"{name} is not a valid notebook: {message}") from error
    return node


def _cells_are_sound(raw: dict[str, Any]) -> bool:
    cells = raw.get("cells")
    return isinstance(cells, list) and all(
        isinstance(cell, dict)
        and cell.get("cell_type") in ("code", "markdown", "raw")
        and isinstance(cell.get("source"), str | list)
        and isinstance(cell.get("metadata", {}), dict)
        for cell in cells
    )


def _cells(node: nbformat.NotebookNode) -> tuple[Cell, ...]:
    cells = []
    for number, cell in enumerate(node.cells, start=1):
        if cell.cell_type != "code":
            continue
        tags = [str(tag).strip().lower() for tag in cell.get("metadata", {}).get("tags", [])]
        roles = [tag for tag in tags if tag in ROLES]
        cells.append(
            Cell(
                number=number,
                source=cell.source,
                role=roles[0] if roles else None,
                extra_roles=tuple(roles[1:]),
            )
        )
    return tuple(cells)


def _settings(node: nbformat.NotebookNode) -> Settings:
    meta = node.metadata.get("nbprod", {}) or {}
    if not isinstance(meta, dict):
        raise NotebookFileError("metadata.nbprod must be a JSON object")
    smoke = meta.get("smoke", {}) or {}
    if not isinstance(smoke, dict):
        raise NotebookFileError("metadata.nbprod.smoke must be an object of parameter values")
    name = meta.get("name")
    if name is not None and not (
        isinstance(name, str)
        and re.fullmatch(r"[a-z_][a-z0-9_]*", name)
        and not keyword.iskeyword(name)
    ):
        raise NotebookFileError(
            f"metadata.nbprod.name {name!r} is not a valid package name",
            'use lower-case letters, digits and underscores, e.g. "churn_model"',
        )
    return Settings(
        name=name,
        inference=meta.get("inference"),
        smoke=dict(smoke),
        inputs=tuple(meta.get("inputs", ()) or ()),
        artifacts=tuple(meta.get("artifacts", ()) or ()),
        kernel=meta.get("kernel"),
    )


def declared_kernel(metadata: Any) -> tuple[str, str]:
    """The kernelspec name ("" when none) and language ("python" when none) a notebook's
    metadata declares; entries that are not objects, as hand-edited files have, count
    as absent."""
    spec = metadata.get("kernelspec") if isinstance(metadata, dict) else None
    info = metadata.get("language_info") if isinstance(metadata, dict) else None
    spec = spec if isinstance(spec, dict) else {}
    info = info if isinstance(info, dict) else {}
    language = str(spec.get("language") or info.get("name") or "python")
    if language.lower().startswith("python"):  # "Python", "python3" are Python too
        language = "python"
    return str(spec.get("name") or ""), language
