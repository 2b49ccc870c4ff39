"""Load a notebook, check it, and read its roles (cell tags) and nbprod settings.

This is the one place a notebook is parsed: every way a file can fail to be a notebook
nbprod reads (not JSON, wrong types at any level, nested too deeply) ends here in a
``NotebookFileError`` that names the file and what is wrong, never in whatever nbformat
or the JSON decoder would raise, so the CLI, the server, the widgets and the pytest
plugin all report it as one clear error.
"""

from __future__ import annotations

import codecs
import json
import keyword
import os
import re
import reprlib
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbprod.exceptions import NotebookFileError
from nbprod.roles import ROLES

if TYPE_CHECKING:
    import nbformat

PREDICTION_ROLES = ("features", "inference")
SUPPORTED_NBFORMAT = (4,)
CELL_TYPES = ("code", "markdown", "raw")

# Documents nested deeper are refused before anything recursive walks them: nbformat's
# from_dict, copy.deepcopy and json.dumps recurse once or more per level and fail at a few
# hundred levels. Real notebooks, widget state and JSON outputs included, nest far less.
MAX_DEPTH = 200

# Half of a UTF-16 surrogate pair: JSON can escape one ("\\ud800"), but it is not a
# character, so no UTF-8 file and no Python compiler takes it.
_SURROGATE = re.compile("[\ud800-\udfff]")

# Values quoted in messages are cut short: a huge one keeps the message one short line.
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxlong = _SHORT.maxother = 40


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
    # Drift thresholds of the package's ``monitor``: {"defaults": {...}, "columns": {...}}
    monitor: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Notebook:
    """A checked notebook: its path, its code cells with their roles, its settings, and
    the decoded document (``raw``). ``node``, the document as nbformat's NotebookNode
    that execution hands to papermill, is built on first use: reading and checking a
    notebook (``nbprod check``, the pre-commit hook) never imports nbformat, whose
    import alone (its JSON-schema validators) costs more than checking the notebook."""

    path: Path
    raw: dict[str, Any] = field(repr=False)
    cells: tuple[Cell, ...]
    settings: Settings

    @property
    def metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = self.raw["metadata"]
        return metadata

    @cached_property
    def node(self) -> nbformat.NotebookNode:
        return notebook_node(self.raw, str(self.path))

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
    """Read and parse ``path``; every way it is not a notebook nbprod can read is a
    ``NotebookFileError`` naming the file and what is wrong, with a fix where there is one."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise NotebookFileError(f"{path}: no such file") from error
    except OSError as error:
        if os.path.isdir(path):  # IsADirectoryError; PermissionError on Windows
            raise NotebookFileError(f"{path} is a folder, not a notebook") from error
        raise NotebookFileError(f"{path} cannot be read: {error.strerror or error}") from error
    return notebook_from_json(_decode(data, path), path)


def _decode(data: bytes, path: Path) -> Any:
    """The JSON document in a file's bytes."""
    if data.startswith(codecs.BOM_UTF8):
        raise NotebookFileError(
            f"{path} starts with a byte order mark (BOM), which JSON does not allow",
            "save it as UTF-8 without a BOM (Jupyter and papermill cannot open it either)",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise NotebookFileError(
            f"{path} is not a text file: byte {data[error.start]:#04x} at offset "
            f"{error.start} is not UTF-8",
            "notebooks are saved in UTF-8; was it saved in another encoding, or is it "
            "not a notebook?",
        ) from error
    if not text.strip():
        raise NotebookFileError(
            f"{path} is empty", "a notebook is a JSON file; was it saved completely?"
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise NotebookFileError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})",
            "a notebook is a JSON file; was it saved completely, or merged with conflict markers?",
        ) from error
    except RecursionError as error:  # Python's JSON decoder recurses once per level
        raise NotebookFileError(
            f"{path} is not a notebook nbprod can read: its JSON nests lists and objects "
            f"more than {MAX_DEPTH} levels deep"
        ) from error
    except ValueError as error:  # valid JSON Python will not read: an integer too long
        reason = str(error).split(";")[0]  # what follows is advice for programmers
        raise NotebookFileError(f"{path} cannot be read as JSON: {reason}") from error


def notebook_from_json(raw: Any, path: str | Path) -> Notebook:
    """A notebook from its decoded JSON, e.g. unsaved content an editor sends; ``path``
    is where it lives (or will), which names the package and places its runs."""
    path = Path(path)
    raw = check_notebook(raw, str(path))
    return Notebook(path=path.resolve(), raw=raw, cells=_cells(raw), settings=_settings(raw))


def notebook_node(raw: dict[str, Any], name: str) -> nbformat.NotebookNode:
    """A checked document as nbformat's NotebookNode: lines joined, and cell ids given
    where nbformat 4.5 wants them."""
    import nbformat
    from nbformat.v4.rwbase import rejoin_lines

    try:
        node = rejoin_lines(nbformat.from_dict(raw))
    except Exception as error:  # what a later nbformat relies on that is not checked
        raise NotebookFileError(
            f"{name} is not a valid notebook: nbformat cannot read it "
            f"({type(error).__name__}: {error})"
        ) from error
    if raw.get("nbformat_minor", 0) >= 5:
        _give_cell_ids(node.cells)
    return node


def check_notebook(raw: Any, name: str = "notebook") -> dict[str, Any]:
    """``raw``, a decoded notebook JSON document, once checked to be nbformat version 4;
    ``NotebookFileError`` saying what is wrong when it is not one nbprod can read.

    What nbprod and nbformat's reading rely on is checked here, with a message for each
    way it can be wrong, before anything of nbformat touches the document. The rest of
    nbformat's schema is not enforced: real notebooks often break it in outputs or
    metadata written by other tools, which does not matter as long as the cells are sound.
    """
    if not isinstance(raw, dict) or ("cells" not in raw and "worksheets" not in raw):
        raise NotebookFileError(f"{name} is not a Jupyter notebook: it has no 'cells'")
    major = raw.get("nbformat")
    if major is None:
        raise NotebookFileError(f"{name} is not a Jupyter notebook: it has no 'nbformat' version")
    if not _is_int(major):
        raise NotebookFileError(
            f"{name} is not a Jupyter notebook: its 'nbformat' version is {_shown(major)}, "
            "not a whole number such as 4"
        )
    if major not in SUPPORTED_NBFORMAT:
        raise NotebookFileError(
            f"{name} uses nbformat {major}, which nbprod does not support",
            "open and save it with a current Jupyter to upgrade it to nbformat 4",
        )
    if "cells" not in raw:
        raise NotebookFileError(f"{name} is not a Jupyter notebook: it has no 'cells'")
    _check_structure(raw, name)
    if _deeper_than(raw, MAX_DEPTH):
        raise NotebookFileError(
            f"{name} is not a notebook nbprod can read: its JSON nests lists and objects "
            f"more than {MAX_DEPTH} levels deep"
        )
    return raw


def _check_structure(raw: dict[str, Any], name: str) -> None:
    """Raise ``NotebookFileError`` for a wrong type where nbprod or nbformat's reading
    looks, and for a cell nbprod cannot take (no source, an unknown type)."""
    minor = raw.get("nbformat_minor", 0)
    if not _is_int(minor):
        raise _invalid(name, f"its 'nbformat_minor' is {_shown(minor)}, not a whole number")
    if "metadata" not in raw:
        raise _invalid(name, "it has no 'metadata'", 'add "metadata": {} at its top level')
    if not isinstance(raw["metadata"], dict):
        raise _invalid(name, f"'metadata' must be an object, not {_kind(raw['metadata'])}")
    cells = raw["cells"]
    if not isinstance(cells, list):
        raise _invalid(name, f"'cells' must be a list, not {_kind(cells)}")
    for number, cell in enumerate(cells, start=1):
        problem = _cell_problem(cell, with_ids=minor >= 5)
        if problem is not None:
            what, hint = problem
            raise _invalid(name, f"cell {number}: {what}", hint)


def _invalid(name: str, what: str, hint: str | None = None) -> NotebookFileError:
    return NotebookFileError(f"{name} is not a valid notebook: {what}", hint)


def _cell_problem(cell: Any, with_ids: bool) -> tuple[str, str | None] | None:
    """What is wrong with one cell, and how to fix it; None when nothing nbprod minds."""
    if not isinstance(cell, dict):
        return f"it is {_kind(cell)}, not an object", None
    if "cell_type" not in cell:
        return "it has no 'cell_type'", 'give it "cell_type": "code", "markdown" or "raw"'
    if cell["cell_type"] not in CELL_TYPES:
        return f"its cell_type is {_shown(cell['cell_type'])}, not code, markdown or raw", None
    if "source" not in cell:
        return "it has no 'source'", 'give it "source": "" if it is empty'
    source = cell["source"]
    problem = _text_problem(source, "'source'")
    if problem is not None:
        return problem, None
    surrogate = _SURROGATE.search(source if isinstance(source, str) else "".join(source))
    if surrogate is not None:
        return (
            f"'source' holds {surrogate.group()!r}, half of a surrogate pair, "
            "which is not a character",
            "remove it, or write the character meant",
        )
    metadata = cell.get("metadata", {})
    if not isinstance(metadata, dict):
        return f"'metadata' must be an object, not {_kind(metadata)}", None
    # A code cell's tags are its roles: read otherwise, it could silently lose its role.
    tags = metadata.get("tags", []) if cell["cell_type"] == "code" else []
    problem = _text_problem(tags, "its tags (metadata.tags)", lines=True)
    if problem is not None:
        return problem, 'write them as strings in a list, e.g. "tags": ["train"]'
    if with_ids and isinstance(cell.get("id"), list | dict):
        return f"'id' must be a string, not {_kind(cell['id'])}", None
    attachments = cell.get("attachments", {})
    if not isinstance(attachments, dict):
        return f"'attachments' must be an object, not {_kind(attachments)}", None
    for file_name, attachment in attachments.items():
        if not isinstance(attachment, dict):
            return f"attachment {_shown(file_name)} is {_kind(attachment)}, not an object", None
    if cell["cell_type"] == "code":
        return _outputs_problem(cell.get("outputs", []))
    return None


def _outputs_problem(outputs: Any) -> tuple[str, str | None] | None:
    """What nbformat's reading needs of a code cell's outputs; schema slips pass."""
    if not isinstance(outputs, list):
        return f"'outputs' must be a list, not {_kind(outputs)}", None
    for number, output in enumerate(outputs, start=1):
        if not isinstance(output, dict):
            return f"output {number} is {_kind(output)}, not an object", None
        kind = output.get("output_type", "")
        if isinstance(kind, list | dict):
            return f"output {number}: 'output_type' must be a string, not {_kind(kind)}", None
        data = output.get("data", {})
        if kind in ("execute_result", "display_data") and not isinstance(data, dict):
            return f"output {number}: 'data' must be an object, not {_kind(data)}", None
        text = output.get("text")
        if kind and isinstance(text, list):  # the lines nbformat joins
            problem = _text_problem(text, "'text'")
            if problem is not None:
                return f"output {number}: {problem}", None
    return None


def _text_problem(value: Any, field: str, lines: bool = False) -> str | None:
    """What is wrong with text: a list of strings (its lines), or one string unless
    ``lines``; None when nothing is."""
    expected = "a list of strings" if lines else "a string or a list of strings"
    if isinstance(value, str) and not lines:
        return None
    if not isinstance(value, list):
        return f"{field} must be {expected}, not {_kind(value)}"
    for item in value:
        if not isinstance(item, str):
            return f"{field} must be {expected}, not a list holding {_kind(item)}"
    return None


def _deeper_than(document: Any, limit: int) -> bool:
    """Whether lists and objects nest more than ``limit`` levels. Walked level by level,
    without recursion; a list of plain values (an output's numbers) is passed over at C
    speed by the set of its types."""
    level, depth = [document], 1
    while level:
        if depth > limit:
            return True
        inner = []
        for value in level:
            items = value.values() if isinstance(value, dict) else value
            if any(issubclass(kind, dict | list) for kind in set(map(type, items))):
                inner += [item for item in items if isinstance(item, dict | list)]
        level, depth = inner, depth + 1
    return False


def _give_cell_ids(cells: list[Any]) -> None:
    """nbformat 4.5 cells have unique ids: a cell without one, or with one an earlier cell
    has, gets a new one, as nbformat's ``normalize`` does, without its warnings."""
    from nbformat.corpus.words import generate_corpus_id

    seen: set[Any] = set()
    for cell in cells:
        if "id" not in cell or cell["id"] in seen:
            cell["id"] = generate_corpus_id()
        seen.add(cell["id"])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no number


def _kind(value: Any) -> str:
    """The JSON type of ``value`` as a message says it: "a list", "null", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    for kind, text in ((int | float, "a number"), (str, "a string"), (list, "a list")):
        if isinstance(value, kind):
            return text
    return "an object" if isinstance(value, dict) else type(value).__name__


def _shown(value: Any) -> str:
    """A string or number quoted in a message, cut short; anything else by its kind."""
    plain = isinstance(value, str | int | float) and not isinstance(value, bool)
    return _SHORT.repr(value) if plain else _kind(value)


def _cells(raw: dict[str, Any]) -> tuple[Cell, ...]:
    cells = []
    for number, cell in enumerate(raw["cells"], start=1):
        if cell["cell_type"] != "code":
            continue
        source = cell["source"]
        tags = [tag.strip().lower() for tag in cell.get("metadata", {}).get("tags", [])]
        roles = [tag for tag in tags if tag in ROLES]
        cells.append(
            Cell(
                number=number,
                source=source if isinstance(source, str) else "".join(source),
                role=roles[0] if roles else None,
                extra_roles=tuple(roles[1:]),
            )
        )
    return tuple(cells)


def _settings(raw: dict[str, Any]) -> Settings:
    meta = raw["metadata"].get("nbprod", {}) or {}
    if not isinstance(meta, dict):
        raise NotebookFileError("metadata.nbprod must be a JSON object")
    smoke = meta.get("smoke", {}) or {}
    if not isinstance(smoke, dict):
        raise NotebookFileError("metadata.nbprod.smoke must be an object of parameter values")
    name = meta.get("name")
    naming = 'use lower-case letters, digits and underscores, e.g. "churn_model"'
    if name is not None and not isinstance(name, str):
        raise NotebookFileError(
            f"metadata.nbprod.name must be a package name, not {_kind(name)}", naming
        )
    if name is not None and not (
        re.fullmatch(r"[a-z_][a-z0-9_]*", name) and not keyword.iskeyword(name)
    ):
        raise NotebookFileError(
            f"metadata.nbprod.name {_shown(name)} is not a valid package name", naming
        )
    for key, what, example in (
        ("inference", "the name of a function", "predict"),
        ("kernel", "a kernel name", "python3"),
    ):
        if not isinstance(meta.get(key) or "", str):
            raise NotebookFileError(
                f"metadata.nbprod.{key} must be {what}, not {_kind(meta[key])}",
                f'e.g. "{key}": "{example}"',
            )
    for key, example in (("inputs", "X"), ("artifacts", "model")):
        names = meta.get(key) or []
        if not isinstance(names, list) or not all(isinstance(item, str) for item in names):
            raise NotebookFileError(
                f"metadata.nbprod.{key} must be a list of names",
                f'e.g. "{key}": ["{example}"]',
            )
    return Settings(
        name=name,
        inference=meta.get("inference") or None,
        smoke=dict(smoke),
        inputs=tuple(meta.get("inputs") or ()),
        artifacts=tuple(meta.get("artifacts") or ()),
        kernel=meta.get("kernel") or None,
        monitor=_monitor_settings(meta.get("monitor")),
    )


# The thresholds ``metadata.nbprod.monitor`` may set (nbprod/runtime/monitor.py DEFAULTS).
MONITOR_THRESHOLDS = (
    "psi",
    "ks",
    "js",
    "null_rate",
    "out_of_range",
    "unseen",
    "rejections",
    "p_value",
)


def _monitor_settings(monitor: Any) -> dict[str, Any]:
    """``metadata.nbprod.monitor`` checked: ``{"defaults": {NAME: number}, "columns":
    {COLUMN: {NAME: number}}}``, each NAME one of ``MONITOR_THRESHOLDS``."""
    example = 'e.g. "monitor": {"defaults": {"psi": 0.25}, "columns": {"age": {"null_rate": 0.1}}}'
    if monitor is None:
        return {}
    if not isinstance(monitor, dict):
        raise NotebookFileError(
            f"metadata.nbprod.monitor must be an object, not {_kind(monitor)}", example
        )
    for key in monitor:
        if key not in ("defaults", "columns"):
            raise NotebookFileError(
                f"metadata.nbprod.monitor has an unknown key {_shown(key)}", example
            )
    columns = monitor.get("columns") or {}
    if not isinstance(columns, dict):
        raise NotebookFileError(
            f"metadata.nbprod.monitor.columns must be an object, not {_kind(columns)}", example
        )
    groups = [("defaults", monitor.get("defaults") or {})]
    groups += [(f"columns.{name}", limits) for name, limits in columns.items()]
    for where, limits in groups:
        if not isinstance(limits, dict):
            raise NotebookFileError(
                f"metadata.nbprod.monitor.{where} must be an object, not {_kind(limits)}", example
            )
        for key, value in limits.items():
            if key not in MONITOR_THRESHOLDS:
                raise NotebookFileError(
                    f"metadata.nbprod.monitor.{where} has an unknown threshold {_shown(key)}",
                    f"use {', '.join(MONITOR_THRESHOLDS)}",
                )
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise NotebookFileError(
                    f"metadata.nbprod.monitor.{where}.{key} must be a number >= 0, "
                    f"not {_shown(value)}",
                    example,
                )
    return monitor


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
