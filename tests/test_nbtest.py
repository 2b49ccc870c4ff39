"""``nbprod test``: every stage of every notebook, a summary table, exit 0/1/2."""

from __future__ import annotations

import json
from pathlib import Path

from nbbuild import SMALL, notebook_node, write_notebook
from tools import nbprod

from nbprod.runs.records import run_dir
from nbprod.runs.store import load_record


def _small(path: Path, **replaced: str) -> Path:
    """SMALL with the source of some roles replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = [(role, replaced.get(role or "", source)) for role, source in SMALL]
    return write_notebook(path, *cells)


def _row(stdout: str, name: str) -> list[str]:
    """The cells of the table row of notebook ``name``."""
    line = next(line for line in stdout.splitlines() if f" {name} " in line and "│" in line)
    return [cell.strip() for cell in line.strip("│ ").split("│")]


def test_a_folder_gets_a_table_of_every_stage_and_exit_1(tmp_path: Path) -> None:
    models = tmp_path / "models"
    good = _small(models / "good.ipynb")
    _small(models / "problem.ipynb", train="w = sum(xs) * a * undefined_name")
    failing = "import sys\nw = sum(xs) * a\nprint('disk full', file=sys.stderr)\n"
    failing += "raise ValueError('no')"
    _small(models / "nested" / "failing.ipynb", train=failing)
    write_notebook(models / "plain.ipynb", (None, "1 / 0"))  # no roles, no --all: not run
    _small(models / ".ipynb_checkpoints" / "good-checkpoint.ipynb", train="raise KeyError")

    result = nbprod("test", "models", cwd=tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert _row(result.stdout, "models/good.ipynb")[1:4] == ["passed"] * 3
    assert _row(result.stdout, "models/problem.ipynb")[1:4] == ["FAILED", "not run", "not run"]
    assert _row(result.stdout, "models/nested/failing.ipynb")[1:4] == [
        "passed",
        "FAILED",
        "not run",
    ]
    assert "plain.ipynb" not in result.stdout and "checkpoint" not in result.stdout
    assert "models/problem.ipynb::check" in result.stdout
    assert "cell 3 (train), line 1: reads `undefined_name`" in result.stdout
    assert "models/nested/failing.ipynb::execute" in result.stdout
    assert ">   raise ValueError('no')" in result.stdout
    assert "E   ValueError: no" in result.stdout
    assert "--- captured stderr ---\ndisk full\n" in result.stdout
    assert "3 notebooks: 1 passed, 2 failed" in result.stdout
    # The run was recorded like any other, with a kernel forked by the warm server.
    runs = [p.name for p in (good.parent / ".nbprod" / "runs").iterdir() if p.is_dir()]
    records = [load_record(good, run_id)[0] for run_id in runs]
    assert [(r.status, r.kernel_start) for r in records] == [("succeeded", "fork")]


def test_json_all_and_explicit_notebooks(tmp_path: Path) -> None:
    good = _small(tmp_path / "good.ipynb")
    plain = notebook_node((None, "x = 1"), (None, "assert x == 1"))
    plain.metadata["kernelspec"] = "hand-edited: not an object"  # read as no kernelspec
    (tmp_path / "plain.ipynb").write_text(json.dumps(plain))

    result = nbprod("test", "--all", "--json", "--no-fork", ".", cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    reports = {Path(r["path"]).name: r for r in json.loads(result.stdout)}
    assert set(reports) == {"good.ipynb", "plain.ipynb"}
    assert reports["plain.ipynb"]["tagged"] is False
    assert list(reports["plain.ipynb"]["stages"]) == ["execute"]
    stages = reports["good.ipynb"]["stages"]
    assert [stages[s]["status"] for s in ("check", "execute", "parity")] == ["passed"] * 3
    record, folder = load_record(good, stages["execute"]["run"])
    assert folder == run_dir(good, record.id) and (folder / "executed.ipynb").is_file()
    assert record.status == "succeeded" and record.kernel_start == "process"
    assert record.parameters == {"a": 2}


def test_a_notebook_named_without_roles_is_told_to_tag(tmp_path: Path) -> None:
    plain = write_notebook(tmp_path / "plain.ipynb", (None, "x = 1"))
    named = nbprod("test", plain)
    assert named.returncode == 1
    assert "no cell has an nbprod role" in named.stdout
    searched = nbprod("test", tmp_path)
    assert searched.returncode == 2
    assert "no notebook with nbprod roles" in searched.stderr and "--all" in searched.stderr
    missing = nbprod("test", tmp_path / "nope")
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr


def test_exitfirst_stops_after_the_first_failing_notebook(tmp_path: Path) -> None:
    _small(tmp_path / "a_failing.ipynb", data="xs = [1, 2, 3]\nraise RuntimeError('boom')")
    _small(tmp_path / "b_good.ipynb")
    result = nbprod("test", "-x", "--json", tmp_path)
    assert result.returncode == 1
    reports = json.loads(result.stdout)
    assert [Path(r["path"]).name for r in reports] == ["a_failing.ipynb"]
    assert "cell 2 (data), line 2: RuntimeError: boom" in reports[0]["stages"]["execute"]["error"]
    table = nbprod("test", "-x", tmp_path)
    assert "1 notebook: 0 passed, 1 failed in" in table.stdout
    assert "; stopped there, 1 not run" in table.stdout


def test_a_parity_failure_keeps_the_package_to_look_at(tmp_path: Path) -> None:
    _small(
        tmp_path / "noisy.ipynb",
        inference="import random\n\ndef predict(x):\n    return x * w + random.random()",
        test="assert predict(1) >= w",
    )
    result = nbprod("test", tmp_path)
    assert result.returncode == 1
    assert _row(result.stdout, f"{tmp_path}/noisy.ipynb")[1:4] == ["passed", "passed", "FAILED"]
    assert "test_predictions_match_the_notebook" in result.stdout
    # extract's own check said it first; the stage keeps the package to look at anyway
    assert "the generated package does not predict what the notebook did" in result.stdout
    package = next(
        line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("package:")
    )
    assert (Path(package) / "tests").is_dir()


def test_timeout_fails_the_notebook_in_the_cell_that_ran_over(tmp_path: Path) -> None:
    _small(tmp_path / "slow.ipynb", train="import time\nw = sum(xs) * a\ntime.sleep(60)")
    result = nbprod("test", "--timeout", "3", tmp_path)
    assert result.returncode == 1
    assert _row(result.stdout, f"{tmp_path}/slow.ipynb")[1:4] == ["passed", "FAILED", "not run"]
    assert "cell 3 (train): the run went past its timeout of 3 s in this cell" in result.stdout


def _nbmake_notebook(path: Path, *cells: tuple[str, dict], execution: dict | None = None) -> None:
    """A notebook without roles whose cells carry nbmake's settings."""
    node = notebook_node(*((None, source) for source, _ in cells))
    for cell, (_, settings) in zip(node.cells, cells, strict=True):
        if settings:
            cell.metadata["nbmake"] = settings
    if execution is not None:
        node.metadata["execution"] = execution
    path.write_text(json.dumps(node))


def test_nbmake_settings_in_a_notebook_are_honoured(tmp_path: Path) -> None:
    # A repository tested with nbmake passes and fails for the same reasons.
    mock = {"mock": {"x": 2, "cfg": {"on": True, "off": None}}, "post_cell_execute": ["y = x + 1"]}
    _nbmake_notebook(
        tmp_path / "mocked.ipynb",
        ("x = 5\ncfg = {}", mock),
        ("assert (x, y, cfg) == (2, 3, {'on': True, 'off': None})", {}),
    )
    boom = {"post_cell_execute": ["raise RuntimeError('boom!')"]}
    _nbmake_notebook(tmp_path / "masked.ipynb", ("raise ValueError('bang!')", boom))
    _nbmake_notebook(tmp_path / "post_fails.ipynb", ("x = 1", boom))
    _nbmake_notebook(
        tmp_path / "allowed.ipynb", ("1 / 0", {}), ("x = 1", {}), execution={"allow_errors": True}
    )
    _nbmake_notebook(
        tmp_path / "own_timeout.ipynb",
        ("import time\ntime.sleep(60)", {}),
        execution={"timeout": 3},
    )

    result = nbprod("test", "--all", "--json", "--no-fork", ".", cwd=tmp_path, timeout=600)

    reports = {Path(r["path"]).stem: r["stages"]["execute"] for r in json.loads(result.stdout)}
    assert {name: r["status"] for name, r in reports.items()} == {
        "allowed": "passed",
        "masked": "failed",
        "mocked": "passed",
        "own_timeout": "failed",
        "post_fails": "failed",
    }, result.stdout
    assert reports["masked"]["error"].startswith("cell 1: ValueError: bang!")
    assert reports["post_fails"]["error"].startswith(
        "cell 1 (its nbmake mock/post_cell_execute): RuntimeError: boom!"
    )
    assert ">   raise RuntimeError('boom!')" in reports["post_fails"]["error"]
    assert "the run went past its timeout of 3 s" in reports["own_timeout"]["error"]
