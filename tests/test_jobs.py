"""Background jobs (``nbprod.jobs.manager``) without Jupyter: sweeps from submit to result,
state that outlives its manager, vanished processes, cancel, refusals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from nbbuild import SCORED, write_notebook
from tools import nbprod

from nbprod.exceptions import JobNotFound, NotebookFileError, RunNotFound, UsageError
from nbprod.jobs.manager import JobManager
from nbprod.jobs.model import Job
from nbprod.runs.store import RunStore

pytestmark = pytest.mark.slow


def slow(folder: Path, pids: Path, seconds: int = 120) -> Path:
    """A notebook whose train cell leaves its kernel's pid in ``pids``, then sleeps."""
    pids.mkdir(exist_ok=True)
    return write_notebook(
        folder / "slow.ipynb",
        ("parameters", "x = 1"),
        (
            "train",
            f"import os, time\nopen(os.path.join({str(pids)!r}, str(os.getpid())), 'w')"
            f".close()\ntime.sleep({seconds})\nw = x",
        ),
        ("inference", "def predict(v):\n    return v * w"),
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def group_gone(pgid: int) -> bool:
    """No live process left in the group (a zombie waiting for init to reap it is gone)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return False
    return True


def descendants(pid: int) -> list[int]:
    """``pid``'s process tree, kernels (which live in sessions of their own) included."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def submit_elsewhere(root: Path, notebook: Path, parameters: dict[str, object]) -> str:
    """Submit a sweep from another process that exits at once, as a server that stops:
    no thread here waits for the job, so this process only finds it on disk."""
    code = (
        "import json, sys\nfrom nbprod.jobs.manager import JobManager\n"
        "job = JobManager(sys.argv[1]).sweep(sys.argv[2], json.loads(sys.argv[3]), workers=2)\n"
        "print(job.id)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(root), str(notebook), json.dumps(parameters)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_a_sweep_job_runs_to_its_result_while_threads_read_it(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "scored.ipynb", *SCORED)
    manager = JobManager(tmp_path)
    job = manager.sweep(notebook, {"a": [1, 3]}, workers=2)
    assert job.status == "running" and job.sweep_id and job.planned == 2
    assert job.state_file == tmp_path / ".nbprod" / "jobs" / f"{job.id}.json"
    state = json.loads(job.state_file.read_text())  # plain JSON, written whole
    assert Job(**state) == job and state["status"] == "running"

    errors: list[BaseException] = []

    def read() -> None:
        try:
            while not manager.get(job.id).done:
                assert manager.list()[0].id == job.id
                manager.get(job.id).to_json(tmp_path)
                time.sleep(0.05)
        except BaseException as error:
            errors.append(error)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    done = manager.wait(job.id, timeout=300)
    for reader in readers:
        reader.join(timeout=30)
    assert not errors, errors
    assert done.status == "succeeded", done.to_json()
    assert done.exit_code == 0
    shown = done.to_json(tmp_path)
    assert shown["path"] == "scored.ipynb"
    assert shown["progress"] == {"total": 2, "done": 2, "failed": 0, "running": 0}
    records = RunStore(tmp_path / ".nbprod" / "runs.db").runs(sweep_id=job.sweep_id)
    assert sorted(shown["runs"]) == sorted(r.id for r in records)
    runs = shown["result"]["runs"]
    assert sorted(r["metrics"]["score"] for r in runs) == [6.0, 18.0]
    for run in runs:
        assert run["notebook"] == "scored.ipynb"
        assert run["executed_path"] == f".nbprod/runs/{run['id']}/executed.ipynb"
        assert (tmp_path / run["executed_path"]).is_file()
    assert shown["error"] is None and shown["result"]["ok"] is True
    # The same job, read by a manager that never saw it (a restarted server).
    again = JobManager(tmp_path).get(job.id)
    assert again.to_json(tmp_path) == shown
    assert JobManager().list(notebook)[0].id == job.id  # by notebook, without a root
    assert not [p for p in job.folder.iterdir() if p.name.startswith(".")]  # no temp files


def test_a_job_outlives_its_manager_and_is_finished_by_the_next(tmp_path: Path) -> None:
    notebook = write_notebook(
        tmp_path / "nap.ipynb",
        ("parameters", "a = 2"),
        ("train", "import time\ntime.sleep(3)\nw = a"),
        ("inference", "def predict(x):\n    return x * w"),
    )
    job_id = submit_elsewhere(tmp_path, notebook, {"a": 5})  # a scalar: one value
    manager = JobManager(tmp_path)
    assert manager.get(job_id).status == "running"
    done = manager.wait(job_id, timeout=300)
    assert done.status == "succeeded", done.to_json()
    assert done.exit_code is None  # not this process's child: judged by its --json result
    shown = done.to_json(tmp_path)
    assert shown["progress"] == {"total": 1, "done": 1, "failed": 0, "running": 0}
    assert [r["parameters"] for r in shown["result"]["runs"]] == [{"a": 5}]


def test_a_job_whose_process_vanished_is_reported_failed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    notebook = slow(tmp_path, pids)
    job_id = submit_elsewhere(tmp_path, notebook, {"x": [1, 2]})
    wait_for(lambda: len(list(pids.iterdir())) == 2, 120, "two kernels in their train cell")
    manager = JobManager(tmp_path)
    pid = manager.get(job_id).pid
    assert pid is not None
    for process in descendants(pid):  # SIGKILL: nothing of nbprod gets to clean up
        with contextlib.suppress(ProcessLookupError):
            os.kill(process, signal.SIGKILL)
    wait_for(lambda: group_gone(pid), 30, "the killed job's processes to go")
    job = manager.wait(job_id, timeout=30)
    assert job.status == "failed"
    error = job.to_json(tmp_path)["error"]
    assert error["message"] == f"the job's process ({pid}) ended without reporting a result"
    assert "killed" in error["hint"]
    records = RunStore(tmp_path / ".nbprod" / "runs.db").runs(sweep_id=job.sweep_id)
    assert {r.status for r in records} == {"failed"}  # never left "running"


def test_cancel_stops_the_sweep_its_kernels_and_marks_its_runs(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    notebook = slow(tmp_path, pids)
    manager = JobManager(tmp_path, grace=20)
    job = manager.sweep(notebook, {"x": [1, 2, 3]}, workers=2)
    wait_for(lambda: len(list(pids.iterdir())) == 2, 120, "two kernels in their train cell")
    kernels = [int(p.name) for p in pids.iterdir()]
    pid = job.pid
    assert pid is not None
    family = descendants(pid)
    asked = manager.cancel(job.id)
    assert asked.cancel_requested is not None
    done = manager.wait(job.id, timeout=60)
    assert done.status == "cancelled", done.to_json()
    assert done.exit_code == 130  # the CLI's own answer to SIGINT: it cleaned up
    assert done.to_json()["error"] is None
    records = RunStore(tmp_path / ".nbprod" / "runs.db").runs(sweep_id=job.sweep_id)
    assert [r.status for r in records] == ["cancelled"] * 3
    wait_for(lambda: not any(alive(p) for p in family + kernels), 15, "no process left")
    wait_for(lambda: group_gone(pid), 15, "the job's process group to go")
    assert manager.cancel(job.id).status == "cancelled"  # cancelling again changes nothing


def test_requests_are_refused_before_any_process_starts(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "scored.ipynb", *SCORED)
    manager = JobManager(tmp_path)
    with pytest.raises(UsageError, match="unknown parameter b"):
        manager.sweep(notebook, {"b": [1, 2]})
    with pytest.raises(UsageError, match="parameters must be an object"):
        # deliberately the wrong type: what a bad JSON body from a front end passes on
        manager.sweep(notebook, [1, 2])  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="workers must be a positive integer"):
        manager.sweep(notebook, {}, workers=True)
    with pytest.raises(UsageError, match="unknown job kind 'train'"):
        manager.submit("train", notebook)
    with pytest.raises(NotebookFileError, match="no such file"):
        manager.sweep(tmp_path / "missing.ipynb", {})
    with pytest.raises(RunNotFound):
        manager.publish(notebook, "best:score")  # it never ran
    with pytest.raises(UsageError, match="onnx must be true or false"):
        manager.publish(notebook, "latest", onnx="yes")  # type: ignore[arg-type]
    with pytest.raises(JobNotFound):
        manager.get("20260101-000000-abcdef")
    with pytest.raises(JobNotFound):
        manager.get("../../etc/passwd")
    assert not (tmp_path / ".nbprod" / "jobs").exists()
    assert manager.list() == []


def test_a_publish_job_records_onnx_and_its_process_is_asked_for_it(tmp_path: Path) -> None:
    """``onnx=True`` is kept in the job's options and reaches the publish flow in the job's
    process (``--onnx``), which names it in its first step. The job is cancelled there:
    what the conversion makes is ``extract``'s to test."""
    notebook = write_notebook(tmp_path / "scored.ipynb", *SCORED)
    ran = nbprod("run", notebook, "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    manager = JobManager(tmp_path)
    job = manager.publish(notebook, "latest", dist=tmp_path / "dist", onnx=True)
    try:
        assert job.options["onnx"] is True
        assert json.loads(job.state_file.read_text())["options"]["onnx"] is True
        wait_for(lambda: bool(job.steps()), 120, "the job's first step")
        assert job.steps()[0] == "generate the package, with ONNX models", job.output()
    finally:
        manager.cancel(job.id)
        assert manager.wait(job.id, timeout=120).done
