"""Loading notebooks: clear errors for bad files, roles from tags, metadata.nbprod settings."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from nbbuild import build, write_notebook

from nbprod.exceptions import NotebookFileError
from nbprod.notebook import load_notebook, package_name_from


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def v4(
    cells: list[dict[str, Any]] | None = None, minor: int = 5, **metadata: Any
) -> dict[str, Any]:
    return {"nbformat": 4, "nbformat_minor": minor, "metadata": metadata, "cells": cells or []}


def test_missing_file_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "gone.ipynb"
    with pytest.raises(NotebookFileError) as raised:
        load_notebook(path)
    assert str(raised.value) == f"{path}: no such file"
    assert raised.value.exit_code == 2


def test_folder_is_not_a_notebook(tmp_path: Path) -> None:
    folder = tmp_path / "dir.ipynb"
    folder.mkdir()
    with pytest.raises(NotebookFileError, match="is a folder, not a notebook"):
        load_notebook(folder)


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.ipynb"
    path.write_text('{\n  "cells": [,\n}', encoding="utf-8")
    with pytest.raises(NotebookFileError) as raised:
        load_notebook(path)
    assert raised.value.message.startswith(f"{path} is not valid JSON (line 2, column 13")
    assert raised.value.hint is not None and "JSON" in raised.value.hint


def test_binary_file_is_not_a_text_file(tmp_path: Path) -> None:
    path = tmp_path / "bin.ipynb"
    path.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(NotebookFileError, match="is not a text file"):
        load_notebook(path)


@pytest.mark.parametrize("document", [[1, 2], "text", 3, {"metadata": {}}])
def test_json_that_is_not_a_notebook(tmp_path: Path, document: Any) -> None:
    path = write_json(tmp_path / "data.ipynb", document)
    with pytest.raises(NotebookFileError) as raised:
        load_notebook(path)
    assert str(raised.value) == f"{path} is not a Jupyter notebook: it has no 'cells'"


def test_notebook_without_nbformat_version(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a.ipynb", {"cells": [], "metadata": {}})
    with pytest.raises(NotebookFileError, match="it has no 'nbformat' version"):
        load_notebook(path)


@pytest.mark.parametrize(
    "document",
    [
        {"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []},
        {"nbformat": 5, "nbformat_minor": 0, "metadata": {}, "cells": []},
    ],
)
def test_unsupported_nbformat_says_how_to_upgrade(tmp_path: Path, document: Any) -> None:
    path = write_json(tmp_path / "old.ipynb", document)
    with pytest.raises(NotebookFileError) as raised:
        load_notebook(path)
    major = document["nbformat"]
    assert raised.value.message == f"{path} uses nbformat {major}, which nbprod does not support"
    assert (
        raised.value.hint == "open and save it with a current Jupyter to upgrade it to nbformat 4"
    )


def test_schema_violation_is_a_file_error(tmp_path: Path) -> None:
    cell = {"cell_type": "bogus", "id": "a1", "metadata": {}, "source": ""}
    path = write_json(tmp_path / "bad.ipynb", v4([cell]))
    with pytest.raises(NotebookFileError, match="is not a valid notebook"):
        load_notebook(path)


def test_file_errors_survive_pickling(tmp_path: Path) -> None:
    with pytest.raises(NotebookFileError) as raised:
        load_notebook(tmp_path / "gone.ipynb")
    copy = pickle.loads(pickle.dumps(raised.value))
    assert str(copy) == str(raised.value)


def test_cell_numbers_count_markdown_cells(tmp_path: Path) -> None:
    notebook = build(tmp_path, "# Title", ("data", "x = 1"), "text", (None, "y = 2"))
    assert [(c.number, c.role) for c in notebook.cells] == [(2, "data"), (4, None)]
    assert notebook.cells[0].label == "cell 2 (data)"
    assert notebook.cells[1].label == "cell 4 (untagged)"


def test_roles_come_from_tags_ignoring_case_and_other_tags(tmp_path: Path) -> None:
    notebook = build(tmp_path, ("skip-execution,Train", "m = 1"), ("hide", "z = 1"))
    assert [c.role for c in notebook.cells] == ["train", None]


def test_second_role_tag_is_kept_as_an_extra_role(tmp_path: Path) -> None:
    notebook = build(tmp_path, ("data,train", "x = 1"))
    assert notebook.cells[0].role == "data"
    assert notebook.cells[0].extra_roles == ("train",)


def test_by_role_lists_cells_in_order(tmp_path: Path) -> None:
    notebook = build(tmp_path, ("train", "a = 1"), ("data", "b = 1"), ("train", "c = 1"))
    assert [c.number for c in notebook.by_role("train")] == [1, 3]


def test_nbprod_settings_are_read_from_metadata(tmp_path: Path) -> None:
    settings = {
        "name": "churn",
        "inference": "score",
        "smoke": {"n_estimators": 2},
        "inputs": ["X"],
        "artifacts": ["lookup"],
        "kernel": "python3",
    }
    notebook = build(tmp_path, ("train", "m = 1"), nbprod=settings)
    assert notebook.settings.name == "churn"
    assert notebook.settings.inference == "score"
    assert notebook.settings.smoke == {"n_estimators": 2}
    assert notebook.settings.inputs == ("X",)
    assert notebook.settings.artifacts == ("lookup",)
    assert notebook.settings.kernel == "python3"


def test_missing_settings_have_defaults(tmp_path: Path) -> None:
    settings = build(tmp_path, ("train", "m = 1")).settings
    assert (settings.name, settings.inference, settings.smoke) == (None, None, {})


def test_settings_that_are_not_an_object_are_a_file_error(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a.ipynb", v4(nbprod=["name"]))
    with pytest.raises(NotebookFileError, match=r"metadata\.nbprod must be a JSON object"):
        load_notebook(path)


def test_smoke_parameters_must_be_an_object(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a.ipynb", v4(nbprod={"smoke": 3}))
    with pytest.raises(NotebookFileError, match="smoke must be an object"):
        load_notebook(path)


def test_package_name_from_metadata_wins(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "Some Notebook.ipynb", ("train", "m = 1"), nbprod={"name": "churn"}
    )
    assert load_notebook(path).package_name == "churn"


def test_package_name_from_file_name(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "2024 My-Model.ipynb", ("train", "m = 1"))
    assert load_notebook(path).package_name == "nb_2024_my_model"


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("churn.ipynb", "churn"),
        ("Churn Model (final).ipynb", "churn_model_final"),
        ("my.model.v2.ipynb", "my_model_v2"),
        ("class.ipynb", "nb_class"),
        ("---.ipynb", "model"),
    ],
)
def test_file_name_made_a_valid_package_name(file_name: str, expected: str) -> None:
    name = package_name_from(Path(file_name))
    assert name == expected
    assert name.isidentifier()


def test_schema_slips_in_outputs_are_tolerated(tmp_path: Path) -> None:
    """Other tools write outputs nbformat's schema rejects; the cells still count."""
    cell = {
        "cell_type": "code",
        "id": "a1",
        "metadata": {"tags": ["train"]},
        "source": "w = 1",
        "execution_count": None,
        "outputs": [{"output_type": "stream", "text": "hi"}],  # no "name": invalid
    }
    notebook = load_notebook(write_json(tmp_path / "nb.ipynb", v4([cell])))
    assert [(c.number, c.role, c.source) for c in notebook.cells] == [(1, "train", "w = 1")]
