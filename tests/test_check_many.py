"""`nbprod check PATH...` on many notebooks, as a pre-commit hook calls it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from nbbuild import SMALL, write_notebook
from tools import nbprod

# cell 2 reads `df`, which only the untagged cell 1 defines
UNTAGGED_DATA = (
    (None, "df = [1]"),
    ("train", "x = 1\nmodel = len(df)"),
    ("inference", "def predict(v):\n    return model"),
    (None, "predict(1)"),
)
UNTAGGED_DATA_LINES = [
    "cell 2 (train), line 2: reads `df`, which only the untagged cell 1 defines",
    "  fix: tag cell 1 `data`",
]
PLAIN = ((None, "x = 1"), "Just notes.", (None, "print(x)"))


def notebook(path: Path, *cells: tuple[str | None, str] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_notebook(path, *cells)


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_problem_lines_start_with_the_path_given_and_a_summary_ends(tmp_path: Path) -> None:
    notebook(tmp_path / "models" / "good.ipynb", *SMALL)
    notebook(tmp_path / "models" / "wine.ipynb", *UNTAGGED_DATA)
    result = nbprod("check", "models/good.ipynb", "models/wine.ipynb", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert lines(result.stdout) == [
        f"models/wine.ipynb: {UNTAGGED_DATA_LINES[0]}",
        UNTAGGED_DATA_LINES[1],
        "2 notebooks: 1 ok, 1 with problems, 0 skipped (no roles)",
    ]


def test_all_ok_exits_0_with_the_summary_only(tmp_path: Path) -> None:
    first = write_notebook(tmp_path / "a.ipynb", *SMALL)
    second = write_notebook(tmp_path / "b.ipynb", *SMALL)
    result = nbprod("check", first, second)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines(result.stdout) == ["2 notebooks: 2 ok, 0 with problems, 0 skipped (no roles)"]


def test_warnings_are_prefixed_and_do_not_fail(tmp_path: Path) -> None:
    warned = write_notebook(
        tmp_path / "warned.ipynb", *SMALL[:3], ("inference", "%matplotlib inline\n" + SMALL[3][1])
    )
    result = nbprod("check", warned, write_notebook(tmp_path / "ok.ipynb", *SMALL), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines(result.stdout)[0].startswith(f"{warned}: cell 4 (inference), line 1: warning: ")
    assert lines(result.stdout)[-1] == "2 notebooks: 2 ok, 0 with problems, 0 skipped (no roles)"


def test_a_folder_checks_its_notebooks_with_roles_only(tmp_path: Path) -> None:
    notebook(tmp_path / "repo" / "good.ipynb", *SMALL)
    notebook(tmp_path / "repo" / "sub" / "wine.ipynb", *UNTAGGED_DATA)
    notebook(tmp_path / "repo" / "sub" / "exploration.ipynb", *PLAIN)
    result = nbprod("check", "repo", cwd=tmp_path)
    assert result.returncode == 1
    assert lines(result.stdout) == [
        f"repo/sub/wine.ipynb: {UNTAGGED_DATA_LINES[0]}",
        UNTAGGED_DATA_LINES[1],
        "3 notebooks: 1 ok, 1 with problems, 1 skipped (no roles)",
    ]


def test_one_folder_is_reported_as_several_notebooks(tmp_path: Path) -> None:
    write_notebook(tmp_path / "only.ipynb", *SMALL)
    result = nbprod("check", tmp_path)
    assert result.returncode == 0
    assert lines(result.stdout) == ["1 notebook: 1 ok, 0 with problems, 0 skipped (no roles)"]


def test_an_untagged_notebook_named_itself_is_reported_unless_tagged_only(
    tmp_path: Path,
) -> None:
    good = write_notebook(tmp_path / "good.ipynb", *SMALL)
    plain = write_notebook(tmp_path / "plain.ipynb", *PLAIN)
    reported = nbprod("check", good, plain)
    assert reported.returncode == 1
    assert f"{plain}: cell 1 (untagged): no cell has an nbprod role" in reported.stdout
    assert "1 ok, 1 with problems, 0 skipped (no roles)" in reported.stdout

    skipped = nbprod("check", "--tagged-only", good, plain)
    assert skipped.returncode == 0, skipped.stdout
    assert lines(skipped.stdout) == ["2 notebooks: 1 ok, 0 with problems, 1 skipped (no roles)"]


def test_tagged_only_on_one_notebook(tmp_path: Path) -> None:
    plain = write_notebook(tmp_path / "plain.ipynb", *PLAIN)
    skipped = nbprod("check", "--tagged-only", plain)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert lines(skipped.stdout) == ["1 notebook: 0 ok, 0 with problems, 1 skipped (no roles)"]
    # a tagged notebook alone reads exactly as without the flag
    tagged = write_notebook(tmp_path / "tagged.ipynb", *UNTAGGED_DATA)
    with_flag, without = nbprod("check", "--tagged-only", tagged), nbprod("check", tagged)
    assert (with_flag.returncode, with_flag.stdout) == (without.returncode, without.stdout)
    assert lines(without.stdout)[:2] == UNTAGGED_DATA_LINES
    assert lines(without.stdout)[-1].endswith("tagged.ipynb cannot be extracted yet")


def test_an_unreadable_notebook_is_reported_and_the_others_still_checked(
    tmp_path: Path,
) -> None:
    good = write_notebook(tmp_path / "good.ipynb", *SMALL)
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [', encoding="utf-8")
    misnamed = write_notebook(tmp_path / "misnamed.ipynb", *SMALL, nbprod={"name": "Bad Name"})
    later = write_notebook(tmp_path / "later.ipynb", *UNTAGGED_DATA)
    result = nbprod("check", good, broken, misnamed, later, tmp_path / "nope.ipynb")
    assert result.returncode == 2, "a file that cannot be read wins over problems"
    assert lines(result.stdout) == [
        f"{tmp_path / 'nope.ipynb'}: no such file or folder",
        f"{broken}: is not valid JSON (line 1, column 12: Expecting value)",
        "  fix: a notebook is a JSON file; was it saved completely, or merged with conflict "
        "markers?",
        f"{misnamed}: metadata.nbprod.name 'Bad Name' is not a valid package name",
        '  fix: use lower-case letters, digits and underscores, e.g. "churn_model"',
        f"{later}: {UNTAGGED_DATA_LINES[0]}",
        UNTAGGED_DATA_LINES[1],
        "5 notebooks: 1 ok, 1 with problems, 3 could not be read, 0 skipped (no roles)",
    ]


def test_one_unreadable_notebook_alone_keeps_the_single_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [', encoding="utf-8")
    result = nbprod("check", "--tagged-only", broken)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "is not valid JSON (line 1" in result.stderr


def test_json_is_a_list_with_the_path_of_each_notebook(tmp_path: Path) -> None:
    good = write_notebook(tmp_path / "good.ipynb", *SMALL)
    wine = write_notebook(tmp_path / "wine.ipynb", *UNTAGGED_DATA)
    plain = write_notebook(tmp_path / "plain.ipynb", *PLAIN)
    broken = write_notebook(tmp_path / "broken.ipynb", *SMALL, nbprod={"name": "Bad Name"})
    result = nbprod("check", "--json", "--tagged-only", good, wine, plain, broken)
    assert result.returncode == 2
    entries = json.loads(result.stdout)
    assert [entry["path"] for entry in entries] == [str(p) for p in (good, wine, plain, broken)]
    assert entries[0]["ok"] is True
    assert entries[0]["entry_point"]["signature"] == "predict(x)"
    assert entries[1]["ok"] is False
    assert [(p["cell"], p["line"]) for p in entries[1]["problems"]] == [(2, 2)]
    assert entries[2] == {"path": str(plain), "skipped": "no cell has an nbprod role"}
    assert entries[3]["error"]["type"] == "NotebookFileError"
    assert entries[3]["error"]["message"] == (
        "metadata.nbprod.name 'Bad Name' is not a valid package name"
    )
    assert "ok" not in entries[3]


def test_json_for_one_notebook_is_unchanged(tmp_path: Path) -> None:
    result = nbprod("check", "--json", write_notebook(tmp_path / "nb.ipynb", *SMALL))
    assert json.loads(result.stdout)["entry_point"]["signature"] == "predict(x)"


def test_folder_search_skips_run_copies_checkpoints_and_environments(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for folder in (".nbprod/runs/r1", ".ipynb_checkpoints", "venv", "env", "node_modules"):
        # copies with a problem: reported if the search entered their folder
        notebook(repo / folder / "copy.ipynb", *UNTAGGED_DATA)
    (repo / "env" / "pyvenv.cfg").write_text("home = /usr/bin", encoding="utf-8")
    write_notebook(repo / "model.ipynb", *SMALL)
    result = nbprod("check", repo)
    assert result.returncode == 0, result.stdout
    assert lines(result.stdout) == ["1 notebook: 1 ok, 0 with problems, 0 skipped (no roles)"]


def test_a_notebook_named_twice_is_checked_once(tmp_path: Path) -> None:
    wine = write_notebook(tmp_path / "wine.ipynb", *UNTAGGED_DATA)
    result = nbprod("check", wine, tmp_path, wine)
    assert result.stdout.count(UNTAGGED_DATA_LINES[0]) == 1
    assert lines(result.stdout)[-1] == "1 notebook: 0 ok, 1 with problems, 0 skipped (no roles)"


def test_untagged_notebooks_are_skipped_without_reading_them_as_notebooks(
    tmp_path: Path,
) -> None:
    # A pre-commit hook passes every changed notebook: deciding that none of them is
    # nbprod's must not pay for importing nbformat (and its jsonschema) or IPython.
    plain = write_notebook(tmp_path / "plain.ipynb", *PLAIN)
    code = (
        "import sys\n"
        "from nbprod.cli import main\n"
        f"main(['check', '--tagged-only', {str(plain)!r}, {str(tmp_path)!r}],"
        " standalone_mode=False)\n"
        "print(sorted({'nbformat', 'IPython', 'jsonschema'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert lines(done.stdout) == [
        "1 notebook: 0 ok, 0 with problems, 1 skipped (no roles)",
        "[]",
    ]
