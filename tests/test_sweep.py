"""Sweeps through the real CLI: grids, isolation, failures, cancellation, the run store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nbbuild import write_notebook
from tools import BIN, nbprod

from nbprod.execution.sweep import expand, parse_axis, read_grid

pytestmark = pytest.mark.slow

LIGHT = (
    ("parameters", "x = 1\ny = 10"),
    ("data", "import nbprod\nrows = [x, y]"),
    ("train", "w = sum(rows)"),
    ("metrics", "score = float(w)\nnbprod.log_metric('twice', 2 * w)"),
    ("inference", "def predict(v):\n    return v * w"),
    (None, "predict(3)"),
)


def light(tmp_path: Path, *extra: tuple[str | None, str]) -> Path:
    return write_notebook(tmp_path / "light.ipynb", *(extra or LIGHT))


def sweep_json(*args: str | Path, timeout: float = 600) -> tuple[int, dict]:
    result = nbprod("run", *args, "--json", timeout=timeout)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


# -- grids --------------------------------------------------------------------------------


def test_axes_are_literals_lists_or_words() -> None:
    assert parse_axis("depth=3,5,8") == ("depth", [3, 5, 8])
    assert parse_axis("alphas=[1.0, 2.0]") == ("alphas", [[1.0, 2.0]])
    assert parse_axis("solver=lbfgs,saga") == ("solver", ["lbfgs", "saga"])
    assert parse_axis("pair=(1, 2)") == ("pair", [(1, 2)])
    assert expand([("a", [1, 2]), ("b", ["x", "y"])]) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]


def test_grid_files(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("x: [1, 2]\ny: 5\n")
    assert read_grid(grid) == [{"x": 1, "y": 5}, {"x": 2, "y": 5}]
    explicit = tmp_path / "runs.json"
    explicit.write_text(json.dumps([{"x": 1}, {"x": 3, "y": 4}]))
    assert read_grid(explicit) == [{"x": 1}, {"x": 3, "y": 4}]


def test_grid_sweep_records_every_run_with_metrics(tmp_path: Path) -> None:
    notebook = light(tmp_path)
    code, result = sweep_json(notebook, "-p", "x=1,2", "-p", "y=10,20", "--workers", "2")
    assert code == 0
    runs = result["runs"]
    assert sorted((r["parameters"]["x"], r["parameters"]["y"]) for r in runs) == [
        (1, 10),
        (1, 20),
        (2, 10),
        (2, 20),
    ]
    for run in runs:
        total = run["parameters"]["x"] + run["parameters"]["y"]
        assert run["status"] == "succeeded"
        assert run["metrics"] == {"twice": 2.0 * total, "score": float(total)}
        assert run["sweep_id"] == result["sweep_id"]
        assert (Path(run["folder"]) / "executed.ipynb").is_file()
    listed = json.loads(nbprod("runs", notebook, "--json", "--sort", "score").stdout)
    assert [r["metrics"]["score"] for r in listed] == [22.0, 21.0, 12.0, 11.0]


def test_grid_file_and_smoke_parameters(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "nb.ipynb", *LIGHT, nbprod={"smoke": {"y": 0}})
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps([{"x": 5}, {"x": 6}]))
    code, result = sweep_json(notebook, "--grid", grid, "--smoke")
    assert code == 0
    assert sorted(r["metrics"]["score"] for r in result["runs"]) == [5.0, 6.0]


def test_unknown_parameter_in_a_grid_fails_before_any_run(tmp_path: Path) -> None:
    notebook = light(tmp_path)
    result = nbprod("run", notebook, "-p", "z=1,2")
    assert result.returncode == 2
    assert "unknown parameter z" in result.stderr
    assert not (tmp_path / ".nbprod" / "runs").exists()


def test_unknown_executor_is_a_usage_error(tmp_path: Path) -> None:
    result = nbprod("run", light(tmp_path), "-p", "x=1,2", "--executor", "nowhere")
    assert result.returncode == 2
    assert "unknown executor 'nowhere'" in result.stderr and "local, dask" in result.stderr


# -- isolation and failures ---------------------------------------------------------------


def test_runs_do_not_share_kernel_state(tmp_path: Path) -> None:
    """Each run is a fresh kernel: a mark left by one run is never seen by another."""
    notebook = light(
        tmp_path,
        ("parameters", "x = 1"),
        (
            "train",
            "import builtins\nseen = hasattr(builtins, 'nbprod_leak')\n"
            "builtins.nbprod_leak = x\nw = 0 if seen else 1",
        ),
        ("metrics", "fresh = float(w)"),
        ("inference", "def predict(v):\n    return v * w"),
        (None, "predict(1)"),
    )
    code, result = sweep_json(notebook, "-p", "x=1,2,3,4", "--workers", "2")
    assert code == 0
    assert [r["metrics"]["fresh"] for r in result["runs"]] == [1.0, 1.0, 1.0, 1.0]


def test_failing_dying_and_slow_runs_do_not_stop_the_sweep(tmp_path: Path) -> None:
    notebook = light(
        tmp_path,
        ("parameters", "mode = 'ok'"),
        (
            "train",
            "import os, time\n"
            "if mode == 'raise':\n    w = 1 / 0\n"
            "if mode == 'die':\n    os._exit(3)\n"
            "if mode == 'slow':\n    time.sleep(60)\n"
            "w = 2",
        ),
        ("inference", "def predict(v):\n    return v * w"),
        (None, "predict(1)"),
    )
    code, result = sweep_json(
        notebook, "-p", "mode=ok,raise,die,slow", "--workers", "2", "--timeout", "8"
    )
    assert code == 1
    by_mode = {r["parameters"]["mode"]: r for r in result["runs"]}
    assert by_mode["ok"]["status"] == "succeeded"
    assert by_mode["raise"]["status"] == "failed"
    assert by_mode["raise"]["error"]["cell"] == 2
    assert by_mode["raise"]["error"]["ename"] == "ZeroDivisionError"
    assert by_mode["raise"]["error"]["evalue"] == "division by zero"
    assert by_mode["die"]["status"] == "failed"
    assert "kernel died" in by_mode["die"]["error"]["message"]
    assert by_mode["slow"]["status"] == "failed"
    assert "timeout of 8 s" in by_mode["slow"]["error"]["message"]


def test_ctrl_c_cancels_the_sweep_and_kills_its_kernels(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    notebook = light(
        tmp_path,
        ("parameters", "x = 1"),
        (
            "train",
            f"import os, time\nopen(os.path.join({str(pids)!r}, str(os.getpid())), 'w')"
            ".close()\ntime.sleep(120)\nw = x",
        ),
        ("inference", "def predict(v):\n    return v * w"),
    )
    process = subprocess.Popen(
        [str(BIN / "nbprod"), "run", str(notebook), "-p", "x=1,2,3,4", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    kernels = [int(p.name) for p in pids.iterdir()]
    assert len(kernels) == 2, "two runs should be inside their train cell"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "cancelled" in err
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in kernels) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in kernels if _alive(pid)], "kernels must not outlive the sweep"
    db = sqlite3.connect(tmp_path / ".nbprod" / "runs.db")
    statuses = sorted(row[0] for row in db.execute("SELECT status FROM runs"))
    assert statuses == ["cancelled"] * 4


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_two_sweeps_write_one_store_at_once(tmp_path: Path) -> None:
    notebook = light(tmp_path)
    commands = [
        [str(BIN / "nbprod"), "run", str(notebook), "-p", f"x={a},{b}", "--workers", "1", "--json"]
        for a, b in ((1, 2), (3, 4))
    ]
    processes = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [o[1] for o in outputs]
    db = sqlite3.connect(tmp_path / ".nbprod" / "runs.db")
    rows = db.execute("SELECT status, sweep_id FROM runs").fetchall()
    assert len(rows) == 4 and {status for status, _ in rows} == {"succeeded"}
    assert len({sweep for _, sweep in rows}) == 2


# -- the store from the CLI -----------------------------------------------------------------


def test_runs_show_compare_and_best_selector(tmp_path: Path) -> None:
    notebook = light(tmp_path)
    code, result = sweep_json(notebook, "-p", "x=1,5,3")
    assert code == 0
    ids = {r["parameters"]["x"]: r["id"] for r in result["runs"]}
    shown = json.loads(
        nbprod("runs", "show", "best:score", "--notebook", notebook, "--json").stdout
    )
    assert shown["id"] == ids[5]
    lowest = json.loads(
        nbprod("runs", "show", "min:score", "--notebook", notebook, "--json").stdout
    )
    assert lowest["id"] == ids[1]
    compared = nbprod("runs", "compare", ids[1], ids[5], "--notebook", notebook)
    assert compared.returncode == 0
    assert ids[1] in compared.stdout and "score" in compared.stdout
    table = nbprod("runs", notebook, "--sort", "score")
    assert table.stdout.index(ids[5]) < table.stdout.index(ids[3]) < table.stdout.index(ids[1])
    extracted = nbprod("extract", notebook, "--run", "best:score", "-o", tmp_path / "pkg")
    assert extracted.returncode == 0, extracted.stderr
    assert f"from run {ids[5]}" in extracted.stdout
    missing = nbprod("runs", "show", "best:nope", "--notebook", notebook)
    assert missing.returncode == 2 and "known metrics: score, twice" in missing.stderr


def test_package_of_a_notebook_using_log_metric_does_not_need_nbprod(tmp_path: Path) -> None:
    notebook = light(tmp_path)
    run = json.loads(nbprod("run", notebook, "--json").stdout)
    assert nbprod("extract", notebook, "--run", run["id"], "-o", tmp_path / "pkg").returncode == 0
    pipeline = (tmp_path / "pkg" / "src" / "light" / "pipeline.py").read_text()
    assert "import nbprod" not in pipeline
    probe = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys; sys.path.insert(0, 'src'); sys.modules['nbprod'] = None\n"
            "import light; print(light.train())",
        ],
        cwd=tmp_path / "pkg",
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, probe.stderr
    assert "'twice': 22.0" in probe.stdout and "'score': 11.0" in probe.stdout


# -- Dask -----------------------------------------------------------------------------------


def test_dask_executor_on_a_local_cluster(tmp_path: Path) -> None:
    from distributed import LocalCluster

    notebook = light(tmp_path)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        code, result = sweep_json(
            notebook, "-p", "x=1,2", "--executor", "dask", "--scheduler", cluster.scheduler_address
        )
    assert code == 0
    assert sorted(r["metrics"]["score"] for r in result["runs"]) == [11.0, 12.0]
    for run in result["runs"]:
        folder = Path(run["folder"])
        assert (folder / "artifacts" / "manifest.json").is_file()
        assert (folder / "parity" / "parity.json").is_file()
    stored = json.loads(nbprod("runs", notebook, "--json").stdout)
    assert {r["id"] for r in stored} == {r["id"] for r in result["runs"]}


def test_ctrl_c_during_a_single_run(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    notebook = light(
        tmp_path,
        (
            "train",
            f"import os, time\nopen(os.path.join({str(pids)!r}, str(os.getpid())), 'w')"
            ".close()\ntime.sleep(120)\nw = 1",
        ),
        ("inference", "def predict(v):\n    return v * w"),
    )
    process = subprocess.Popen(
        [str(BIN / "nbprod"), "run", str(notebook)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(pids.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    kernel = int(next(pids.iterdir()).name)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "was cancelled" in err
    deadline = time.monotonic() + 10
    while _alive(kernel) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(kernel)
    db = sqlite3.connect(tmp_path / ".nbprod" / "runs.db")
    assert [row[0] for row in db.execute("SELECT status FROM runs")] == ["cancelled"]


def test_project_config_sets_the_store(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.nbprod]\nstore = "shared/runs.db"\n')
    folder = tmp_path / "notebooks"
    folder.mkdir()
    notebook = light(folder)
    result = nbprod("run", notebook, "--json")
    assert result.returncode == 0, result.stderr
    db = sqlite3.connect(tmp_path / "shared" / "runs.db")
    assert [row[0] for row in db.execute("SELECT status FROM runs")] == ["succeeded"]
    assert not (folder / ".nbprod" / "runs.db").exists()


def test_forked_kernels_inherit_the_runtime_the_fork_server_loaded(tmp_path: Path) -> None:
    """The fork server loads nbprod's kernel runtime and reads the installed
    distributions once; each forked kernel keeps both instead of doing it again, and
    still records the run's environment. A kernel started normally does it all itself."""
    notebook = light(
        tmp_path,
        ("parameters", "x = 1"),
        (
            "train",
            "import os, sys\nread_by = list(sys.modules['_nbprod_artifacts']._READ_BY)\nw = x",
        ),
        ("metrics", "inherited = float(bool(read_by) and os.getpid() not in read_by)"),
        ("inference", "def predict(v):\n    return v * w"),
        (None, "predict(1)"),
    )
    code, forked = sweep_json(notebook, "-p", "x=1,2", "--workers", "2")
    assert code == 0, forked
    assert [r["kernel_start"] for r in forked["runs"]] == ["fork", "fork"]
    assert [r["metrics"]["inherited"] for r in forked["runs"]] == [1.0, 1.0]
    code, started = sweep_json(notebook, "-p", "x=3,4", "--workers", "2", "--no-fork")
    assert code == 0, started
    assert [r["metrics"]["inherited"] for r in started["runs"]] == [0.0, 0.0]
    for run in forked["runs"] + started["runs"]:
        environment = json.loads((Path(run["folder"]) / "environment.json").read_text())
        assert {"numpy", "pandas", "skops"} <= set(environment["packages"]), environment
