"""Malformed notebooks: whatever is wrong with a file, nbprod answers with one clear error
(``NotebookFileError``, exit 2) or a check result, never a traceback.

A property test mutates a sound notebook at every level (wrong types, missing keys, deep
nesting, huge strings, bytes that are not UTF-8) and holds the library to raising only
``NbprodError``; examples pin the message for each kind of damage, and notebooks that
break nbformat's schema only where nbprod does not look keep loading. The CLI is run on
a few malformed files as users run it.
"""

from __future__ import annotations

import codecs
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from nbbuild import SMALL, notebook_node
from nbformat.v4 import new_output
from tools import nbprod

from nbprod.analysis.analyzer import analyze
from nbprod.exceptions import NbprodError, NotebookFileError
from nbprod.notebook import MAX_DEPTH, load_notebook, notebook_from_json
from nbprod.testing.discover import has_roles

# -- a sound notebook with something at every level a mutation can reach ----------------


def sound_document() -> dict[str, Any]:
    """SMALL with settings, outputs of each kind and an attachment, as decoded JSON."""
    settings = {"name": "small", "inference": "predict", "smoke": {"a": 3}, "kernel": "python3"}
    node = notebook_node(*SMALL, "A markdown cell with an attachment.", nbprod=settings)
    node.cells[2].outputs = [
        new_output("stream", name="stdout", text=["6\n", "done\n"]),
        new_output("execute_result", data={"text/plain": ["6"]}, execution_count=1),
        new_output(
            "display_data",
            data={"image/png": "iVBORw0KGgo=", "application/json": {"a": [1, {"b": None}]}},
        ),
    ]
    node.cells[-1].attachments = {"a.png": {"image/png": "iVBORw0KGgo="}}
    document: dict[str, Any] = json.loads(json.dumps(node))
    return document


SOUND = sound_document()


def test_the_sound_notebook_is_sound(tmp_path: Path) -> None:
    """Mutations start from a notebook that loads and can be extracted."""
    path = tmp_path / "sound.ipynb"
    path.write_text(json.dumps(SOUND), encoding="utf-8")
    analysis = analyze(load_notebook(path))
    assert analysis.ok, analysis.errors
    assert [cell.role for cell in analysis.notebook.cells][:3] == ["parameters", "data", "train"]


# -- the property ---------------------------------------------------------------------------

# Values JSON cannot hold as Python values (or not cheaply) are written as markers and put
# into the text after json.dumps.
MARKERS = {
    "@deep-lists@": "[" * 100_000 + "]" * 100_000,
    "@deep-objects@": '{"a":' * 100_000 + "0" + "}" * 100_000,
    "@just-too-deep@": "[" * MAX_DEPTH + "]" * MAX_DEPTH,
    "@huge-string@": json.dumps("x" * 1_000_000),
    "@huge-lines@": json.dumps(["é = 1\n"] * 20_000),
    "@huge-number@": "9" * 5_000,  # more digits than Python reads from text
}
KEYS = st.sampled_from(
    [
        *("cells", "metadata", "nbformat", "nbformat_minor", "worksheets"),
        *("cell_type", "source", "outputs", "attachments", "id", "execution_count"),
        *("tags", "nbprod", "kernelspec", "smoke", "name", "inference", "inputs", "artifacts"),
        *("kernel", "output_type", "data", "text"),
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**20),
    st.floats(),  # NaN and infinities too: Python's JSON reads and writes them
    st.text(max_size=8),
    st.sampled_from(["train", "inference", "code", "markdown", "4", "", "\ud800", "x\udc00"]),
)
STRINGS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["train", " Inference", "code", "raw", "\ud800", "x\udc00", "@huge-string@"]),
)
VALUES = st.one_of(
    st.recursive(
        SCALARS,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(KEYS | st.text(max_size=4), inner, max_size=3)
        ),
        max_leaves=6,
    ),
    st.sampled_from(list(MARKERS)),
)
BAD_BYTES = [b"\xff", b"\x80", b"\xc3", b"\xed\xa0\x80"]  # each invalid in UTF-8


def places(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path (keys and indexes) of every value in a document, the document's own first."""
    found = [here]
    if isinstance(value, dict | list):
        for key, inner in value.items() if isinstance(value, dict) else enumerate(value):
            found += places(inner, (*here, key))
    return found


def alike(value: Any) -> st.SearchStrategy[Any]:
    """Values of the JSON type of ``value``: a string for a string, a list for a list..."""
    if isinstance(value, str):
        return STRINGS
    if isinstance(value, bool) or value is None:
        return st.booleans() | st.none()
    if isinstance(value, int | float):
        return st.integers() | st.floats()
    if isinstance(value, list):
        return st.lists(VALUES, max_size=3)
    return st.dictionaries(KEYS | st.text(max_size=4), VALUES, max_size=3)


def mutate(document: Any, draw: Callable[[Any], Any]) -> Any:
    """One structural change somewhere: a value replaced by any other or by another of its
    type, a key or an item removed, or a key or an item added."""
    path = draw(st.sampled_from(places(document)))
    action = draw(st.sampled_from(["replace", "replace in kind", "remove", "add"]))
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    target = parent[path[-1]] if path else document
    if action == "add" and isinstance(target, dict):
        target[draw(KEYS)] = draw(VALUES)
    elif action == "add" and isinstance(target, list):
        target.insert(draw(st.integers(0, len(target))), draw(VALUES))
    elif action == "remove" and path:
        del parent[path[-1]]
    else:
        value = draw(alike(target) if action == "replace in kind" else VALUES)
        if not path:
            return value
        parent[path[-1]] = value
    return document


@st.composite
def mutants(draw: Callable[[Any], Any]) -> bytes:
    """A sound notebook, changed one to three times, then perhaps damaged as bytes."""
    document = copy.deepcopy(SOUND)
    for _ in range(draw(st.integers(1, 3))):
        document = mutate(document, draw)
    text = json.dumps(document)  # ASCII: a lone surrogate stays an escape, "\ud800"
    for marker, written in MARKERS.items():
        text = text.replace(json.dumps(marker), written)
    data = text.encode("utf-8")
    damage = draw(st.sampled_from([*[None] * 8, "bom", "empty", "cut", "bad byte"]))
    if damage == "bom":
        data = codecs.BOM_UTF8 + data
    elif damage == "empty":
        data = draw(st.sampled_from([b"", b" \n"]))
    elif damage == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif damage == "bad byte":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from(BAD_BYTES)) + data[at:]
    return data


def assert_clear(error: NotebookFileError, path: Path) -> None:
    """One short line naming the file (settings errors name the setting) and saying what
    is wrong, never the fallback for what the checks before nbformat missed."""
    message = error.message
    assert "\n" not in message and len(message) < 300 + len(str(path)), message
    assert message.startswith((str(path), "metadata.nbprod")), message
    assert "nbformat cannot read it" not in message, message


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mutants")


@settings(
    max_examples=300,
    database=None,  # every run explores afresh; a failure prints its example
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=mutants())
def test_a_mutated_notebook_raises_nothing_but_nbprod_errors(folder: Path, data: bytes) -> None:
    path = folder / "mutant.ipynb"
    path.write_bytes(data)
    # what the pytest plugin and `nbprod check FOLDER` ask of every file first
    assert isinstance(has_roles(path), bool)
    try:
        analyze(load_notebook(path))
    except NotebookFileError as error:
        event("refused")
        assert error.exit_code == 2
        assert_clear(error, path)
    except NbprodError as error:
        event(f"raised {type(error).__name__}")
    else:
        event("loaded and analysed")


@settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(document=st.builds(copy.deepcopy, st.just(SOUND)), data=st.data())
def test_unsaved_content_raises_nothing_but_nbprod_errors(
    folder: Path, document: dict[str, Any], data: st.DataObject
) -> None:
    """The server's check route hands decoded JSON to notebook_from_json, unsaved."""
    for _ in range(data.draw(st.integers(1, 3))):
        document = mutate(document, data.draw)
    content = json.loads(json.dumps(document).replace('"@deep-lists@"', "[" * 300 + "]" * 300))
    path = folder / "unsaved.ipynb"
    try:
        analyze(notebook_from_json(content, path))
    except NotebookFileError as error:
        assert_clear(error, path)
    except NbprodError:
        pass


# -- each kind of damage, and its message ---------------------------------------------------

REMOVE = object()


def damaged(path: Path, *changes: tuple[tuple[Any, ...], Any]) -> Path:
    """The sound notebook at ``path`` with values at places replaced (or REMOVEd)."""
    document = copy.deepcopy(SOUND)
    for place, value in changes:
        parent = document
        for key in place[:-1]:
            parent = parent[key]
        if value is REMOVE:
            del parent[place[-1]]
        else:
            parent[place[-1]] = value
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("changes", "message", "hint"),
    [
        ([(("cells",), {"a": 1})], "'cells' must be a list, not an object", None),
        ([(("cells", 1), 3)], "cell 2: it is a number, not an object", None),
        ([(("cells", 1), ["x = 1"])], "cell 2: it is a list, not an object", None),
        (
            [(("cells", 1, "cell_type"), REMOVE)],
            "cell 2: it has no 'cell_type'",
            'give it "cell_type": "code", "markdown" or "raw"',
        ),
        (
            [(("cells", 1, "cell_type"), ["code"])],
            "cell 2: its cell_type is a list, not code, markdown or raw",
            None,
        ),
        (
            [(("cells", 1, "source"), REMOVE)],
            "cell 2: it has no 'source'",
            'give it "source": "" if it is empty',
        ),
        (
            [(("cells", 1, "source"), 3)],
            "cell 2: 'source' must be a string or a list of strings, not a number",
            None,
        ),
        (
            [(("cells", 1, "source"), ["x = 1\n", None])],
            "cell 2: 'source' must be a string or a list of strings, not a list holding null",
            None,
        ),
        (
            [(("cells", 1, "source"), "x = '\ud800'")],
            "cell 2: 'source' holds '\\ud800', half of a surrogate pair, which is not a character",
            "remove it, or write the character meant",
        ),
        (
            [(("cells", 1, "metadata"), None)],
            "cell 2: 'metadata' must be an object, not null",
            None,
        ),
        (
            [(("cells", 1, "metadata", "tags"), "data")],
            "cell 2: its tags (metadata.tags) must be a list of strings, not a string",
            'write them as strings in a list, e.g. "tags": ["train"]',
        ),
        (
            [(("cells", 1, "metadata", "tags"), ["data", 7])],
            "cell 2: its tags (metadata.tags) must be a list of strings, not a list holding a "
            "number",
            'write them as strings in a list, e.g. "tags": ["train"]',
        ),
        ([(("cells", 1, "id"), ["a"])], "cell 2: 'id' must be a string, not a list", None),
        ([(("cells", 2, "outputs"), {})], "cell 3: 'outputs' must be a list, not an object", None),
        ([(("cells", 2, "outputs", 0), "6")], "cell 3: output 1 is a string, not an object", None),
        (
            [(("cells", 2, "outputs", 0, "text"), ["6", 6])],
            "cell 3: output 1: 'text' must be a string or a list of strings, not a list "
            "holding a number",
            None,
        ),
        (
            [(("cells", 2, "outputs", 1, "data"), [])],
            "cell 3: output 2: 'data' must be an object, not a list",
            None,
        ),
        (
            [(("cells", 2, "outputs", 2, "output_type"), ["display_data"])],
            "cell 3: output 3: 'output_type' must be a string, not a list",
            None,
        ),
        (
            [(("cells", 6, "attachments"), "a.png")],
            "cell 7: 'attachments' must be an object, not a string",
            None,
        ),
        (
            [(("cells", 6, "attachments", "a.png"), "iVBORw0KGgo=")],
            "cell 7: attachment 'a.png' is a string, not an object",
            None,
        ),
        (
            [(("metadata",), REMOVE)],
            "it has no 'metadata'",
            'add "metadata": {} at its top level',
        ),
        ([(("metadata",), [])], "'metadata' must be an object, not a list", None),
        ([(("nbformat_minor",), "5")], "its 'nbformat_minor' is '5', not a whole number", None),
    ],
)
def test_each_kind_of_damage_is_named(
    tmp_path: Path, changes: list[tuple[tuple[Any, ...], Any]], message: str, hint: str | None
) -> None:
    path = damaged(tmp_path / "nb.ipynb", *changes)
    with pytest.raises(NotebookFileError) as raised:
        load_notebook(path)
    assert raised.value.message == f"{path} is not a valid notebook: {message}"
    assert raised.value.hint == hint


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("4", "its 'nbformat' version is '4', not a whole number such as 4"),
        (4.0, "its 'nbformat' version is 4.0, not a whole number such as 4"),
        (True, "its 'nbformat' version is true, not a whole number such as 4"),
        (REMOVE, "it has no 'nbformat' version"),
    ],
)
def test_an_nbformat_version_that_is_no_number(tmp_path: Path, version: Any, message: str) -> None:
    path = damaged(tmp_path / "nb.ipynb", (("nbformat",), version))
    with pytest.raises(NotebookFileError) as raised:
        load_notebook(path)
    assert raised.value.message == f"{path} is not a Jupyter notebook: {message}"


@pytest.mark.parametrize(
    ("setting", "value", "message", "hint"),
    [
        ("inference", 3, "inference must be the name of a function, not a number", "predict"),
        ("kernel", ["python3"], "kernel must be a kernel name, not a list", "python3"),
        ("inputs", "X", "inputs must be a list of names", '["X"]'),
        ("artifacts", ["model", 2], "artifacts must be a list of names", '["model"]'),
        ("name", "X" * 10_000, "name 'XXXXXXXXXXXXXXXXX...XXXXXXXXXXXXXXXXXX' is not", "churn"),
    ],
)
def test_settings_of_the_wrong_type(
    tmp_path: Path, setting: str, value: Any, message: str, hint: str
) -> None:
    path = damaged(tmp_path / "nb.ipynb", (("metadata", "nbprod", setting), value))
    with pytest.raises(NotebookFileError) as raised:
        load_notebook(path)
    assert raised.value.message.startswith(f"metadata.nbprod.{message}")
    assert len(raised.value.message) < 100  # a huge value is cut short
    assert hint in str(raised.value.hint)


def test_nesting_deeper_than_nbprod_reads(tmp_path: Path) -> None:
    """Refused before anything recursive walks it, whether the decoder can or not."""
    levels = MAX_DEPTH - 2  # under the notebook and its metadata
    at_the_limit = json.dumps({**SOUND, "metadata": {"deep": "@"}})
    path = tmp_path / "deep.ipynb"
    path.write_text(at_the_limit.replace('"@"', "[" * levels + "]" * levels), encoding="utf-8")
    assert load_notebook(path).cells
    for depth in (levels + 1, 100_000):
        path.write_text(at_the_limit.replace('"@"', "[" * depth + "]" * depth), encoding="utf-8")
        with pytest.raises(NotebookFileError) as raised:
            load_notebook(path)
        assert raised.value.message == (
            f"{path} is not a notebook nbprod can read: its JSON nests lists and objects "
            f"more than {MAX_DEPTH} levels deep"
        )
        assert has_roles(path)  # read as far as it can be: the check then says why


@pytest.mark.parametrize(
    ("data", "message", "hint"),
    [
        (b"", "is empty", "a notebook is a JSON file; was it saved completely?"),
        (b"  \n", "is empty", "a notebook is a JSON file; was it saved completely?"),
        (
            codecs.BOM_UTF8 + json.dumps(SOUND).encode(),
            "starts with a byte order mark (BOM), which JSON does not allow",
            "save it as UTF-8 without a BOM (Jupyter and papermill cannot open it either)",
        ),
        (
            json.dumps(SOUND).encode().replace(b"xs = [1, 2, 3]", b"xs = [1, \xe9]"),
            "is not a text file: byte 0xe9 at offset ",
            "notebooks are saved in UTF-8; was it saved in another encoding, or is it not a "
            "notebook?",
        ),
        (
            json.dumps(SOUND).encode().replace(b'"nbformat": 4', b'"nbformat": ' + b"9" * 5000),
            "cannot be read as JSON: Exceeds the limit (4300 digits) for integer string conversion",
            None,
        ),
    ],
)
def test_a_file_that_is_no_json_text(
    tmp_path: Path, data: bytes, message: str, hint: str | None
) -> None:
    path = tmp_path / "nb.ipynb"
    path.write_bytes(data)
    with pytest.raises(NotebookFileError) as raised:
        load_notebook(path)
    assert raised.value.message.startswith(f"{path} {message}")
    assert "\n" not in raised.value.message
    assert raised.value.hint == hint


def test_a_path_the_system_cannot_open_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / f"{'n' * 300}.ipynb"
    with pytest.raises(NotebookFileError) as raised:
        load_notebook(path)
    assert raised.value.message == f"{path} cannot be read: File name too long"


# -- what breaks the schema only where nbprod does not look keeps loading ------------------


@pytest.mark.parametrize(
    "changes",
    [
        [(("cells", 2, "outputs", 0, "name"), REMOVE)],  # a stream without its name
        [(("cells", 2, "outputs", 0, "output_type"), 3)],
        [(("cells", 2, "outputs", 1, "data"), {"text/plain": 6})],
        [(("cells", 1, "id"), 12)],  # a number, not the string the schema asks for
        [(("cells", 4, "metadata"), REMOVE)],  # the untagged cell
        [(("cells", 6, "metadata"), {"tags": "note"})],  # a markdown cell has no role
        [(("cells", 1, "execution_count"), "one")],
        [(("nbformat_minor",), REMOVE)],
        [(("nbformat_minor",), 99)],
        [(("metadata", "kernelspec"), 3)],
        [(("metadata", "widgets"), {"state": [[[[{"deep": [1]}]]]] * 3})],
        [(("worksheets",), []), (("custom",), {"by": "another tool"})],
    ],
)
def test_schema_slips_elsewhere_keep_loading(
    tmp_path: Path, changes: list[tuple[tuple[Any, ...], Any]]
) -> None:
    notebook = load_notebook(damaged(tmp_path / "nb.ipynb", *changes))
    assert [cell.role for cell in notebook.cells][:3] == ["parameters", "data", "train"]
    assert analyze(notebook).ok


def test_missing_and_repeated_cell_ids_are_given_new_ones_without_warnings(
    tmp_path: Path,
) -> None:
    # Warnings are errors here: nbformat's normalize would warn about each.
    path = damaged(
        tmp_path / "nb.ipynb",
        (("cells", 0, "id"), REMOVE),
        (("cells", 2, "id"), SOUND["cells"][1]["id"]),
    )
    ids = [cell["id"] for cell in load_notebook(path).node.cells]
    assert len(set(ids)) == len(ids) == len(SOUND["cells"])
    assert ids[1] == SOUND["cells"][1]["id"] and all(isinstance(i, str) and i for i in ids)
    assert "id" not in json.loads(path.read_text(encoding="utf-8"))["cells"][0]  # not rewritten


# -- the command line -----------------------------------------------------------------------

MALFORMED: dict[str, Callable[[Path], object]] = {
    "cells-an-object": lambda path: damaged(path, (("cells",), {"a": 1})),
    "nested-100000-deep": lambda path: path.write_text(
        '{"nbformat": 4, "cells": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8"
    ),
    "tags-a-string": lambda path: damaged(path, (("cells", 1, "metadata", "tags"), "data")),
    "not-utf8": lambda path: path.write_bytes(b'{"cells": ["\xff"]}'),
}


@pytest.mark.parametrize("kind", ["nested-100000-deep", "tags-a-string"])
def test_check_says_what_is_wrong_in_one_line(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.ipynb"
    MALFORMED[kind](path)
    result = nbprod("check", path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    error, *fix = result.stderr.splitlines()
    assert error.startswith(f"error: {path} "), result.stderr
    assert all(line.startswith("  fix: ") for line in fix), result.stderr


def test_check_of_a_folder_gives_each_file_its_line(tmp_path: Path) -> None:
    for kind, make in MALFORMED.items():
        make(tmp_path / f"{kind}.ipynb")
    result = nbprod("check", tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("  fix: ")]
    assert [line.partition(": ")[0] for line in lines[:-1]] == [
        str(tmp_path / f"{kind}.ipynb") for kind in sorted(MALFORMED)
    ]
    summary = "4 notebooks: 0 ok, 0 with problems, 4 could not be read, 0 skipped (no roles)"
    assert lines[-1] == summary


@pytest.mark.parametrize("command", [("run",), ("extract", "--run", "latest", "-o", "out")])
def test_run_and_extract_refuse_it_before_they_start(tmp_path: Path, command: tuple[str]) -> None:
    path = tmp_path / "nb.ipynb"
    MALFORMED["cells-an-object"](path)
    result = nbprod(command[0], path, *command[1:], cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: {path} is not a valid notebook: 'cells' must be a list, not an object"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nb.ipynb"]  # no run, no package


def test_nbprod_test_fails_the_check_of_each(tmp_path: Path) -> None:
    for kind, make in MALFORMED.items():
        make(tmp_path / f"{kind}.ipynb")
    result = nbprod("test", tmp_path, "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    results = {Path(entry["path"]).name: entry for entry in json.loads(result.stdout)}
    assert sorted(results) == sorted(f"{kind}.ipynb" for kind in MALFORMED)
    for name, entry in results.items():
        check = entry["stages"]["check"]
        assert check["status"] == "failed", entry
        assert check["error"].startswith(str(tmp_path / name)), entry
        assert entry["stages"]["execute"]["status"] == "not run"
