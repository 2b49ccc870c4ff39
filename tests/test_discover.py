"""Which notebooks a path names, and whether a notebook uses nbprod at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nbbuild import SMALL, write_notebook

from nbprod.exceptions import NotebookFileError
from nbprod.notebook import load_notebook
from nbprod.testing.discover import find_notebooks, has_roles


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_notebook(path, *SMALL)


def test_a_folder_gives_its_notebooks_sorted_files_before_subfolders(tmp_path: Path) -> None:
    for name in ("b.ipynb", "a/z.ipynb", "c.ipynb", "a/y.ipynb", "d/x.ipynb"):
        touch(tmp_path / name)
    (tmp_path / "notes.md").write_text("not a notebook", encoding="utf-8")
    assert find_notebooks([tmp_path]) == [
        tmp_path / "b.ipynb",
        tmp_path / "c.ipynb",
        tmp_path / "a" / "y.ipynb",
        tmp_path / "a" / "z.ipynb",
        tmp_path / "d" / "x.ipynb",
    ]


def test_paths_keep_the_order_given_and_each_notebook_comes_once(tmp_path: Path) -> None:
    first, second = touch(tmp_path / "sub" / "first.ipynb"), touch(tmp_path / "second.ipynb")
    found = find_notebooks([second, tmp_path / "sub", first, str(second), tmp_path])
    assert found == [second, first]


def test_a_file_is_taken_as_given_whatever_its_suffix(tmp_path: Path) -> None:
    script = tmp_path / "model.py"
    script.write_text("x = 1", encoding="utf-8")
    assert find_notebooks([script]) == [script]


def test_a_missing_path_is_an_error_naming_it(tmp_path: Path) -> None:
    touch(tmp_path / "there.ipynb")
    with pytest.raises(NotebookFileError, match=r"nope\.ipynb: no such file or folder"):
        find_notebooks([tmp_path / "there.ipynb", tmp_path / "nope.ipynb"])


@pytest.mark.parametrize(
    "folder",
    [
        ".nbprod/runs/r1",
        ".ipynb_checkpoints",
        ".hidden",
        "venv",
        "build",
        "dist",
        "node_modules",
        "__pycache__",
        "pkg.egg",
        "myenv",  # a virtual environment by its pyvenv.cfg, whatever its name
    ],
)
def test_searching_leaves_out_copies_environments_and_build_output(
    tmp_path: Path, folder: str
) -> None:
    kept = touch(tmp_path / "kept.ipynb")
    touch(tmp_path / folder / "copy.ipynb")
    if folder == "myenv":
        (tmp_path / folder / "pyvenv.cfg").write_text("home = /usr/bin", encoding="utf-8")
    assert find_notebooks([tmp_path]) == [kept]


def test_a_skipped_name_given_itself_is_still_searched(tmp_path: Path) -> None:
    notebook = touch(tmp_path / "build" / "nb.ipynb")
    assert find_notebooks([tmp_path / "build"]) == [notebook]


def test_has_roles_on_tagged_and_untagged_notebooks(tmp_path: Path) -> None:
    assert has_roles(write_notebook(tmp_path / "tagged.ipynb", *SMALL))
    assert not has_roles(write_notebook(tmp_path / "plain.ipynb", (None, "x = 1"), "# Notes"))
    assert not has_roles(write_notebook(tmp_path / "other.ipynb", ("slow,skip", "x = 1")))
    # papermill's own tag: a notebook papermill parameterises is not an nbprod notebook
    papermill = write_notebook(tmp_path / "papermill.ipynb", ("parameters", "n = 1"), (None, "n"))
    assert not has_roles(papermill)
    assert has_roles(
        write_notebook(tmp_path / "started.ipynb", ("parameters", "n = 1"), ("train", "w = n"))
    )


def test_has_roles_reads_tags_as_load_notebook_does(tmp_path: Path) -> None:
    spaced = write_notebook(tmp_path / "spaced.ipynb", (" Train ", "w = 1"), (None, "y = w"))
    assert has_roles(spaced)
    assert [cell.role for cell in load_notebook(spaced).cells] == ["train", None]
    # a tag on a markdown cell is not a role: load_notebook only reads code cells
    document = json.loads(spaced.read_text(encoding="utf-8"))
    document["cells"][0]["cell_type"] = "markdown"
    del document["cells"][0]["outputs"], document["cells"][0]["execution_count"]
    markdown = tmp_path / "markdown.ipynb"
    markdown.write_text(json.dumps(document), encoding="utf-8")
    assert not has_roles(markdown)
    assert [cell.role for cell in load_notebook(markdown).cells] == [None]


@pytest.mark.parametrize(
    "content",
    [
        '{"cells": [',  # cut short
        "[1, 2]",  # JSON, not a notebook
        '{"cells": 5}',
        '{"cells": [{"cell_type": "code", "metadata": {"tags": 3}}]}',
        b"\xff\xfe not text",
    ],
)
def test_a_file_that_cannot_be_read_counts_as_having_roles(
    tmp_path: Path, content: str | bytes
) -> None:
    # so that `nbprod check` and the pytest plugin report what is wrong with it
    path = tmp_path / "broken.ipynb"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    assert has_roles(path)
    assert has_roles(tmp_path / "missing.ipynb")
