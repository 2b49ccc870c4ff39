"""The `nbprod` command line: exit codes and messages of every error path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nbbuild import SMALL, write_notebook
from tools import nbprod

PREDICT_W = "def predict(x):\n    return w"


def small(tmp_path: Path, *cells: tuple[str | None, str]) -> Path:
    return write_notebook(tmp_path / "small.ipynb", *(cells or SMALL))


def test_check_ok_exits_0_and_names_the_entry_point(tmp_path: Path) -> None:
    result = nbprod("check", small(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "predict(x)" in result.stdout
    assert "artifacts: w" in result.stdout


def test_check_problems_exit_1_with_cell_line_and_fix(tmp_path: Path) -> None:
    notebook = write_notebook(
        tmp_path / "nb.ipynb",
        (None, "df = [1]"),
        ("train", "x = 1\nmodel = len(df)"),
        ("inference", "def predict(v):\n    return model"),
    )
    result = nbprod("check", notebook)
    assert result.returncode == 1
    assert (
        "cell 2 (train), line 2: reads `df`, which only the untagged cell 1 defines"
        in result.stdout
    )
    assert "  fix: tag cell 1 `data`" in result.stdout


def test_check_json_is_the_analysis(tmp_path: Path) -> None:
    result = nbprod("check", small(tmp_path), "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["entry_point"]["signature"] == "predict(x)"
    assert [a["name"] for a in data["artifacts"]] == ["w"]
    assert data["roles"]["train"]["inputs"] == ["a", "xs"]
    assert data["problems"] == []


def test_check_json_with_problems_still_exits_1(tmp_path: Path) -> None:
    notebook = small(tmp_path, ("parameters", "a = len([])"), ("inference", "y = a"))
    result = nbprod("check", notebook, "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["problems"][0]["cell"] == 1


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = nbprod("check", tmp_path / "nope.ipynb")
    assert result.returncode == 2
    assert "nope.ipynb: no such file" in result.stderr


def test_not_json_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.ipynb"
    path.write_text('{"cells": [', encoding="utf-8")
    result = nbprod("check", path)
    assert result.returncode == 2
    assert "is not valid JSON (line 1" in result.stderr


def test_json_that_is_not_a_notebook_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "data.ipynb"
    path.write_text('{"hello": 1}', encoding="utf-8")
    result = nbprod("check", path)
    assert result.returncode == 2
    assert "is not a Jupyter notebook" in result.stderr


def test_unsupported_nbformat_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps({"nbformat": 2, "nbformat_minor": 0, "cells": []}), encoding="utf-8")
    result = nbprod("check", path)
    assert result.returncode == 2
    assert "uses nbformat 2, which nbprod does not support" in result.stderr


def test_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    result = nbprod("check", "--bogus", small(tmp_path))
    assert result.returncode == 2


def test_run_unknown_parameter_fails_before_running(tmp_path: Path) -> None:
    notebook = small(tmp_path)
    result = nbprod("run", notebook, "-p", "b=3")
    assert result.returncode == 2
    assert "unknown parameter b" in result.stderr
    assert "the notebook's parameters are: a" in result.stderr
    assert not (tmp_path / ".nbprod").exists(), "nothing may run for a bad parameter"


def test_run_bad_parameter_syntax(tmp_path: Path) -> None:
    result = nbprod("run", small(tmp_path), "-p", "novalue")
    assert result.returncode == 2
    assert "write parameters as NAME=VALUE" in result.stderr


def test_a_notebook_with_problems_runs_as_papermill_runs_it(tmp_path: Path) -> None:
    """A check problem does not stop a run (papermill would run the notebook); the cell
    that fails at run time is named with its error, as papermill's verdict has it."""
    notebook = small(tmp_path, ("train", "m = undefined_thing"), ("inference", "y = m"))
    result = nbprod("run", notebook)
    assert result.returncode == 1
    assert "failed: cell 1 (train), line 1: NameError: name 'undefined_thing'" in result.stderr


def test_a_run_with_problems_is_recorded_but_not_extractable(tmp_path: Path) -> None:
    # `data` is made by an untagged cell: the notebook runs, but train() could not remake it
    notebook = small(
        tmp_path, (None, "data = [1, 2]"), ("train", "m = sum(data)"), ("inference", "y = m")
    )
    result = nbprod("run", notebook, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "succeeded" and summary["extractable"] is False
    assert "reads `data`" in summary["not_extractable"][0]
    assert f"warning: run {summary['id']} is not extractable: " in result.stderr
    refused = nbprod("extract", notebook, "--run", summary["id"], "-o", tmp_path / "pkg")
    assert refused.returncode == 1 and not (tmp_path / "pkg").exists()
    assert f"run {summary['id']} is not extractable" in refused.stderr
    assert "reads `data`" in refused.stderr


def test_run_parameters_are_literals_and_recorded(tmp_path: Path) -> None:
    notebook = small(tmp_path)
    result = nbprod("run", notebook, "-p", "a=5", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    folder = Path(summary["folder"])
    assert json.loads((folder / "parameters.json").read_text()) == {"a": 5}
    assert set(summary) >= {"id", "status", "folder"}
    assert summary["status"] == "succeeded"


def test_failing_cell_names_the_cell_and_keeps_the_partial_notebook(tmp_path: Path) -> None:
    notebook = small(
        tmp_path,
        ("data", "xs = [1, 2]"),
        ("train", "w = 1\nboom = 1 / 0"),
        ("inference", "def predict(x):\n    return x * w"),
        (None, "predict(1)"),
    )
    before = notebook.read_bytes()
    result = nbprod("run", notebook)
    assert result.returncode == 1
    assert "cell 2 (train), line 2: ZeroDivisionError: division by zero" in result.stderr
    assert notebook.read_bytes() == before
    runs = list((tmp_path / ".nbprod" / "runs").iterdir())
    assert len(runs) == 1
    record = json.loads((runs[0] / "run.json").read_text())
    assert record["status"] == "failed"
    assert (record["error"]["cell"], record["error"]["line"]) == (2, 2)
    executed = json.loads((runs[0] / "executed.ipynb").read_text())
    data_cell = next(c for c in executed["cells"] if "xs = [1, 2]" in "".join(c["source"]))
    assert data_cell["execution_count"] is not None, "cells before the failure ran"


def test_a_failing_line_below_blank_lines_is_the_line_the_user_sees(tmp_path: Path) -> None:
    # The kernel numbers lines without the blank lines that open a cell.
    notebook = small(
        tmp_path,
        ("train", "\n\nw = 1\nboom = 1 / 0"),
        ("inference", "def predict(x):\n    return x * w"),
    )
    result = nbprod("run", notebook)
    assert result.returncode == 1
    assert "cell 1 (train), line 4: ZeroDivisionError" in result.stderr


def test_a_cell_tagged_raises_exception_may_raise(tmp_path: Path) -> None:
    # As nbclient and nbmake run it: the error is expected, the run goes on past it.
    notebook = small(
        tmp_path,
        *SMALL[:4],
        ("raises-exception", "predict(None) + 'oops'"),
        *SMALL[4:],
    )
    result = nbprod("run", notebook, "--json")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "succeeded" and "w" in run["artifacts"], run
    assert any(Path(run["folder"], "parity").iterdir()), "the example call after it was recorded"
    executed = json.loads(Path(run["folder"], "executed.ipynb").read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if "ename" in o]
    assert [e["ename"] for e in errors] == ["TypeError"], "the allowed error is kept"
    markers = [c for c in executed["cells"] if "papermill-error-cell-tag" in str(c["metadata"])]
    assert markers == [], "papermill's error banner is not left in the executed notebook"


def test_a_failure_after_an_allowed_error_names_its_own_cell(tmp_path: Path) -> None:
    notebook = small(
        tmp_path,
        ("data", "xs = [1, 2]"),
        ("raises-exception", "int('x')"),
        ("train", "w = 1\nboom = {}['missing']"),
        ("inference", PREDICT_W),
    )
    result = nbprod("run", notebook)
    assert result.returncode == 1
    assert "cell 3 (train), line 2: KeyError: 'missing'" in result.stderr
    assert "ValueError" not in result.stderr


def test_failed_run_json_reports_failure(tmp_path: Path) -> None:
    notebook = small(
        tmp_path, ("train", "w = 1 / 0"), ("inference", "def predict(x):\n    return w")
    )
    result = nbprod("run", notebook, "--json")
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["status"] == "failed"
    assert "ZeroDivisionError" in summary["error"]


def test_kernel_death_is_a_clear_failure(tmp_path: Path) -> None:
    notebook = small(
        tmp_path,
        ("train", "import os\nw = 1\nos._exit(1)"),
        ("inference", "def predict(x):\n    return w"),
    )
    result = nbprod("run", notebook, timeout=300)
    assert result.returncode == 1
    assert "kernel died" in result.stderr
    assert "cell 1 (train)" in result.stderr


def test_run_works_in_the_notebook_folder(tmp_path: Path) -> None:
    (tmp_path / "numbers.txt").write_text("4\n5\n")
    notebook = small(
        tmp_path,
        ("data", "xs = [int(v) for v in open('numbers.txt')]"),
        ("train", "w = sum(xs)"),
        ("inference", "def predict(x):\n    return x * w"),
        (None, "predict(2)"),
    )
    result = nbprod("run", notebook, "--json", cwd=Path("/"))
    assert result.returncode == 0, result.stderr
    metrics_run = Path(json.loads(result.stdout)["folder"])
    parity = json.loads((metrics_run / "parity" / "parity.json").read_text())
    assert parity["calls"][0]["result"] == {"kind": "json", "value": 18}


def test_extract_refuses_existing_folder_without_force(tmp_path: Path) -> None:
    notebook = small(tmp_path)
    run = json.loads(nbprod("run", notebook, "--json").stdout)
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = nbprod("extract", notebook, "--run", run["id"], "-o", out)
    assert result.returncode == 2
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"
    forced = nbprod("extract", notebook, "--run", run["id"], "-o", out, "--force")
    assert forced.returncode == 0, forced.stderr
    assert not (out / "keep.txt").exists()
    assert (out / "src" / "small" / "pipeline.py").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pkg.")], "no leftovers"


def test_extract_unknown_run_exits_2(tmp_path: Path) -> None:
    notebook = small(tmp_path)
    result = nbprod("extract", notebook, "--run", "nope", "-o", tmp_path / "pkg")
    assert result.returncode == 2
    assert "no run 'nope'" in result.stderr
    assert not (tmp_path / "pkg").exists()
    fast = nbprod("extract", notebook, "--run", "nope", "-o", tmp_path / "pkg", "--onnx")
    assert fast.returncode == 2 and "no run 'nope'" in fast.stderr  # --onnx is an option


@pytest.mark.parametrize("command", ["extract", "publish"])
def test_extract_and_publish_offer_the_onnx_fast_path(command: str) -> None:
    shown = nbprod(command, "--help")
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())  # click wraps the help
    assert "--onnx / --no-onnx" in text
    assert "converted to ONNX, used when it predicts what the notebook did" in text
    assert "(needs nbprod[onnx])" in text


def test_extract_refuses_a_failed_run(tmp_path: Path) -> None:
    notebook = small(
        tmp_path, ("train", "w = 1 / 0"), ("inference", "def predict(x):\n    return w")
    )
    run = json.loads(nbprod("run", notebook, "--json").stdout)
    result = nbprod("extract", notebook, "--run", run["id"], "-o", tmp_path / "pkg")
    assert result.returncode == 2
    assert f"run {run['id']} failed" in result.stderr
    assert not (tmp_path / "pkg").exists()


def test_extract_refuses_a_run_without_parity(tmp_path: Path) -> None:
    notebook = small(
        tmp_path,
        ("train", "w = 3"),
        ("inference", "def predict(x, y):\n    return x * y * w"),
    )
    run = nbprod("run", notebook, "--json")
    assert run.returncode == 0, run.stderr
    run_id = json.loads(run.stdout)["id"]
    result = nbprod("extract", notebook, "--run", run_id, "-o", tmp_path / "pkg")
    assert result.returncode == 2
    assert "recorded no call of `predict`" in result.stderr
    assert "call `predict(...)` once in the notebook" in result.stderr


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        pytest.param(
            [(None, "helper = 3"), ("train", "w = helper"), ("inference", PREDICT_W)],
            "cell 2 (train), line 1: reads `helper`, which only the untagged cell 1 defines",
            id="untagged-definition",
        ),
        pytest.param(
            [("train", "w = 1"), ("inference", "def predict(x):\n    return x * w * bias")],
            "prediction reads `bias`, which is neither an artifact, a parameter, an import nor "
            "defined in a features or inference cell",
            id="inference-unknown-name",
        ),
        pytest.param(
            [("train", "w = 1"), ("inference", "def a(x):\n    return w\ndef b(x):\n    return w")],
            "more than one candidate entry point: `a`, `b`",
            id="two-entry-points",
        ),
        pytest.param(
            [("parameters", "n = int('3')"), ("train", "w = n"), ("inference", PREDICT_W)],
            "cell 1 (parameters), line 1: parameter `n` is not a literal value: `int('3')`",
            id="non-literal-parameter",
        ),
        pytest.param(
            [("train", "w = 1\ndef broken(:\n    pass"), ("inference", PREDICT_W)],
            "cell 1 (train), line 2: the cell does not parse: invalid syntax",
            id="syntax-error",
        ),
        pytest.param(
            [("train", "from math import *\nw = pi"), ("inference", PREDICT_W)],
            "cell 1 (train), line 1: `from math import *` hides which names it defines",
            id="star-import",
        ),
    ],
)
def test_check_error_paths_exit_1(tmp_path: Path, cells: list, expected: str) -> None:
    result = nbprod("check", write_notebook(tmp_path / "nb.ipynb", *cells))
    assert result.returncode == 1, result.stdout
    assert expected in result.stdout
    assert "  fix: " in result.stdout


def test_warnings_do_not_fail_the_check(tmp_path: Path) -> None:
    notebook = small(
        tmp_path,
        ("train", "%time w = 2\n!pip install tqdm"),
        ("inference", PREDICT_W),
        (None, "predict(1)"),
    )
    result = nbprod("check", notebook)
    assert result.returncode == 0, result.stdout
    assert "cell 1 (train), line 2: warning: IPython magic `!pip install tqdm` is ignored" in (
        result.stdout
    )
    data = json.loads(nbprod("check", notebook, "--json").stdout)
    assert data["dependency_hints"] == ["tqdm"]


def test_run_timeout_names_the_slow_cell(tmp_path: Path) -> None:
    notebook = small(
        tmp_path,
        ("train", "import time\nw = 1"),
        ("metrics", "time.sleep(30)\nscore = 1.0"),
        ("inference", PREDICT_W),
    )
    result = nbprod("run", notebook, "--timeout", "2")
    assert result.returncode == 1
    assert "cell 2 (metrics): the run went past its timeout of 2 s in this cell" in result.stderr


def test_notebook_without_language_metadata_runs(tmp_path: Path) -> None:
    """Notebooks saved by other tools may carry no kernelspec or language_info at all."""
    notebook = small(tmp_path)
    data = json.loads(notebook.read_text())
    data["metadata"] = {}
    notebook.write_text(json.dumps(data))
    result = nbprod("run", notebook, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["status"] == "succeeded"
