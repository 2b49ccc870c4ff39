"""MLflow sees nbprod's runs: a sweep logged as it runs (file store), runs exported to a
real ``mlflow server`` without duplicates, an unreachable server, the ways to turn it on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from nbbuild import write_notebook
from tools import BIN, free_port, make_venv

from nbprod.exceptions import UsageError
from nbprod.execution.mlflow import MlflowMissing, require_mlflow

pytestmark = pytest.mark.slow

# A notebook a package can be made of (so its runs have a model card), with two parameters
# and two metrics: one from a `metrics` cell, one from nbprod.log_metric.
TAGGED = (
    ("parameters", "a = 1\nb = 'x'"),
    ("data", "import nbprod\nrows = [a, len(b)]"),
    ("train", "w = sum(rows)"),
    ("metrics", "score = float(w)\nnbprod.log_metric('twice', 2 * w)"),
    ("inference", "def predict(v):\n    return v * w"),
    (None, "predict(3)"),
)
# A plain notebook (no roles but `parameters`): it runs, and is not extractable.
PLAIN = (("parameters", "a = 1"), (None, "import nbprod\nnbprod.log_metric('double', 2 * a)"))
# MLflow 3 refuses its file store unless asked; these tests want one.
FILE_STORE = {"MLFLOW_ALLOW_FILE_STORE": "true"}


def nbprod(
    *args: str | Path, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """The nbprod command with ``env`` added to this environment (no MLflow variables of
    the machine leak in)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run(
        [str(BIN / "nbprod"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env={**base, **FILE_STORE, "NO_COLOR": "1", "COLUMNS": "200", **env},
    )


def client(uri: str) -> MlflowClient:
    os.environ.update(FILE_STORE)
    return MlflowClient(tracking_uri=uri)


def logged_runs(uri: str, experiment: str) -> list[Any]:
    mlflow = client(uri)
    found = mlflow.get_experiment_by_name(experiment)
    return [] if found is None else list(mlflow.search_runs([found.experiment_id]))


# -- a real MLflow server, started as the sweep runs ---------------------------------------


@pytest.fixture(scope="module")
def server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``mlflow server`` (sqlite backend, artifacts in the test's folder) in a venv of its
    own: the full ``mlflow`` would downgrade packages of the development venv. Stopped
    by its process id (its process group: the server's workers go with it)."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    python = make_venv(folder / "venv", f"mlflow=={version('mlflow-skinny')}")
    port = free_port()
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [
            str(python.parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    try:
        yield f"http://127.0.0.1:{port}", folder / "server.log"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def server(server_process: tuple[str, Path]) -> str:
    """The server's URI once it answers."""
    uri, log = server_process
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=5) as answer:
                if answer.status == 200:
                    return uri
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError("mlflow server did not start:\n" + log.read_text()) from None
            time.sleep(0.5)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, server_process: Any) -> dict[str, Any]:
    """One 2 by 2 sweep with --mlflow to a file store, shared by the tests of this module
    (the server starts meanwhile)."""
    folder = tmp_path_factory.mktemp("swept")
    notebook = write_notebook(folder / "scored.ipynb", *TAGGED)
    uri = (folder / "mlruns").as_uri()
    result = nbprod(
        "run", notebook, "-p", "a=1,2", "-p", "b=x,yy", "--workers", "2", "--mlflow", "--json",
        MLFLOW_TRACKING_URI=uri,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MLflow" not in result.stderr, result.stderr
    return {"notebook": notebook, "uri": uri, "sweep": json.loads(result.stdout)}


# -- (a) a sweep, logged as it runs -------------------------------------------------------


def test_a_sweep_is_one_parent_run_with_a_child_per_run(swept: dict[str, Any]) -> None:
    sweep = swept["sweep"]
    runs = logged_runs(swept["uri"], "scored")  # the notebook's stem
    parents = [r for r in runs if r.data.tags.get("nbprod.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("nbprod.kind") == "run"]
    assert len(parents) == 1 and len(children) == 4 and len(runs) == 5
    parent = parents[0]
    assert parent.info.run_name == sweep["sweep_id"]
    assert parent.data.tags["nbprod.sweep_id"] == sweep["sweep_id"]
    assert parent.data.params == {"a": "[1, 2]", "b": "['x', 'yy']"}
    assert parent.info.status == "FINISHED"
    mlflow = client(swept["uri"])
    grid = Path(mlflow.download_artifacts(parent.info.run_id, "grid.json"))
    assert sorted(map(json.dumps, json.loads(grid.read_text()))) == sorted(
        json.dumps(r["parameters"]) for r in sweep["runs"]
    )

    records = {r["id"]: r for r in sweep["runs"]}
    for child in children:
        tags = child.data.tags
        record = records.pop(tags["nbprod.run_id"])
        a, b = record["parameters"]["a"], record["parameters"]["b"]
        assert child.data.params == {"a": str(a), "b": b}
        assert child.data.metrics == {"score": float(a + len(b)), "twice": 2.0 * (a + len(b))}
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["mlflow.runName"] == record["id"]
        assert tags["mlflow.source.name"] == str(swept["notebook"])
        assert tags["nbprod.notebook"] == str(swept["notebook"])
        assert tags["nbprod.notebook_sha256"] == record["notebook_sha256"]
        assert tags["nbprod.sweep_id"] == sweep["sweep_id"]
        assert tags["nbprod.status"] == "succeeded" and tags["nbprod.extractable"] == "true"
        assert child.info.status == "FINISHED"
        assert child.info.start_time == int(record["started"] * 1000)
        assert child.info.end_time == int(record["finished"] * 1000)
        artifacts = {a.path for a in mlflow.list_artifacts(child.info.run_id)}
        assert artifacts == {"executed.ipynb", "model_card.md"}
        executed = Path(mlflow.download_artifacts(child.info.run_id, "executed.ipynb"))
        assert executed.read_bytes() == (Path(record["folder"]) / "executed.ipynb").read_bytes()
        card = Path(mlflow.download_artifacts(child.info.run_id, "model_card.md")).read_text()
        assert f"run `{record['id']}`" in card and "## Model card" in card
    assert not records, "every nbprod run has its MLflow run"


# -- (b) runs already in the store, exported to a server -----------------------------------


def test_export_to_a_server_logs_each_run_once(swept: dict[str, Any], server: str) -> None:
    notebook, sweep_id = swept["notebook"], swept["sweep"]["sweep_id"]
    args = ("runs", "export", "--mlflow", "--sweep", sweep_id, "--notebook", notebook)
    first = nbprod(*args, "--mlflow-experiment", "exported", MLFLOW_TRACKING_URI=server)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"4 logged, 0 already logged, 0 not finished: experiment 'exported' at {server}" in (
        first.stdout
    )
    again = nbprod(*args, "--mlflow-experiment", "exported", "--json", MLFLOW_TRACKING_URI=server)
    assert again.returncode == 0, again.stdout + again.stderr
    outcomes = json.loads(again.stdout)
    assert [o["outcome"] for o in outcomes] == ["already logged"] * 4

    runs = logged_runs(server, "exported")
    assert len(runs) == 5, "a second export logs nothing twice"
    parent = next(r for r in runs if r.data.tags["nbprod.kind"] == "sweep")
    assert parent.info.run_name == sweep_id and parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags["nbprod.kind"] == "run"]
    assert {r.data.tags["nbprod.run_id"] for r in children} == {
        r["id"] for r in swept["sweep"]["runs"]
    }
    assert {o["mlflow_run_id"] for o in outcomes} == {r.info.run_id for r in children}
    mlflow = client(server)
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert {a.path for a in mlflow.list_artifacts(child.info.run_id)} == {
            "executed.ipynb",
            "model_card.md",
        }
        executed = mlflow.download_artifacts(child.info.run_id, "executed.ipynb")
        assert json.loads(Path(executed).read_text())["cells"]


# -- (c) an unreachable server -------------------------------------------------------------


def test_an_unreachable_server_loses_no_run(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "plain.ipynb", *PLAIN)
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = nbprod("run", notebook, "--json", MLFLOW_TRACKING_URI=uri)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    warnings = [line for line in result.stderr.splitlines() if "MLflow" in line]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith(f"warning: MLflow at {uri} did not take the runs: ")
    assert "nbprod runs export --mlflow" in warnings[0]
    listed = json.loads(nbprod("runs", notebook, "--json").stdout)
    assert [(r["id"], r["status"]) for r in listed] == [(summary["id"], "succeeded")]
    assert listed[0]["metrics"] == {"double": 2.0}


# -- (d) the ways to turn it on and off ----------------------------------------------------


def test_the_environment_the_pyproject_and_no_mlflow(tmp_path: Path) -> None:
    env_uri = (tmp_path / "env-mlruns").as_uri()
    for folder in ("env", "project/notebooks"):
        (tmp_path / folder).mkdir(parents=True)
    by_env = write_notebook(tmp_path / "env" / "plain.ipynb", *PLAIN)
    ran = nbprod("run", by_env, "-p", "a=3", "--json", MLFLOW_TRACKING_URI=env_uri)
    assert ran.returncode == 0, ran.stderr
    (run,) = logged_runs(env_uri, "plain")
    assert run.data.tags["nbprod.run_id"] == json.loads(ran.stdout)["id"]
    assert run.data.params == {"a": "3"} and run.data.metrics == {"double": 6.0}
    assert run.data.tags["nbprod.extractable"] == "false"
    assert "no cell is tagged `inference`" in run.data.tags["nbprod.not_extractable"]
    assert "mlflow.parentRunId" not in run.data.tags and "nbprod.sweep_id" not in run.data.tags
    artifacts = {a.path for a in client(env_uri).list_artifacts(run.info.run_id)}
    assert artifacts == {"executed.ipynb"}, "a run no package can be made of has no card"

    off = nbprod("run", by_env, "--no-mlflow", MLFLOW_TRACKING_URI=env_uri)
    assert off.returncode == 0, off.stderr
    assert len(logged_runs(env_uri, "plain")) == 1, "--no-mlflow wins over the environment"

    project = tmp_path / "project"
    by_project = write_notebook(project / "notebooks" / "plain.ipynb", *PLAIN)
    (project / "pyproject.toml").write_text(
        '[tool.nbprod]\nmlflow = {tracking_uri = "mlruns", experiment = "team"}\n'
    )
    ran = nbprod("run", by_project, MLFLOW_TRACKING_URI=env_uri)
    assert ran.returncode == 0, ran.stderr
    (run,) = logged_runs((project / "mlruns").as_uri(), "team")  # beside the pyproject.toml
    assert run.data.tags["nbprod.notebook"] == str(by_project)
    assert len(logged_runs(env_uri, "plain")) == 1, "the pyproject.toml wins over the env"

    flagged = nbprod("run", by_project, "--mlflow-experiment", "mine", MLFLOW_TRACKING_URI=env_uri)
    assert flagged.returncode == 0, flagged.stderr
    assert len(logged_runs((project / "mlruns").as_uri(), "mine")) == 1, "the flag wins"


def test_mlflow_is_imported_only_when_used() -> None:
    code = "import sys, nbprod, nbprod.cli; sys.exit('mlflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_missing_extra_is_a_usage_error_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    with pytest.raises(MlflowMissing) as raised:
        require_mlflow()
    assert isinstance(raised.value, UsageError)
    assert "pip install 'nbprod[mlflow]'" in str(raised.value)
