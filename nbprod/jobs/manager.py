"""Background jobs: sweeps and publishes run as ``python -m nbprod`` processes that outlive
whoever started them (a Jupyter server, a widgets panel's kernel).

Each job is one CLI process in a process group (and session) of its own. Its state is a
JSON file, ``<notebook folder>/.nbprod/jobs/<id>.json``, written atomically, beside what
the process prints (``<id>.log``: stderr, the human output; ``<id>.out``: the ``--json``
result or error). A browser reload or a restarted server finds the job there, and a
job's progress is read when asked: a sweep's from the run store by its sweep id (chosen
here, before the process starts), a publish's from the step lines the CLI prints.

Cancelling is Ctrl-C for the whole group: SIGINT, on which the CLI kills its kernels,
marks unfinished runs cancelled and exits 130; SIGTERM and then SIGKILL follow if the
group outlives a grace period. The manager that started a job waits for its exit code
in a thread; any other manager (after a restart) polls the process, and a job whose
process vanished without a result is reported failed, saying so (``processes.py``
tells a live process from a zombie or a recycled pid).

Nothing here imports Jupyter: the widgets panel uses this module inside a kernel.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from nbprod.exceptions import JobNotFound, NbprodError, NotExtractable, UsageError
from nbprod.jobs.model import (
    INDEX,
    JOB_ID,
    KINDS,
    NEVER_STARTED,
    Job,
    jobs_folder,
    last_json,
    new_job_id,
    read_text,
    write_json,
    write_text,
)
from nbprod.jobs.processes import Family, alive, group_alive, process_tree, signal_group, start_time
from nbprod.jobs.views import shown_path
from nbprod.runs.records import STORE_DIR
from nbprod.runs.store import RunStore, store_path


class JobManager:
    """Submit, list, watch and cancel jobs; safe to share between threads.

    With ``root`` (a Jupyter server's root folder), jobs are also indexed under
    ``<root>/.nbprod/job-index`` so that any of them can be found by id alone, and
    only jobs of notebooks inside ``root`` are found. Without it, pass the notebook.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, grace: float = 10.0) -> None:
        self.root = Path(root).resolve() if root is not None else None
        self.grace = grace
        self._lock = threading.Lock()
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # -- submitting --------------------------------------------------------------------

    def submit(self, kind: str, notebook: str | os.PathLike[str], **options: Any) -> Job:
        """``submit("sweep", nb, parameters=..., workers=..., smoke=...)`` or
        ``submit("publish", nb, run=..., version=..., dist=..., repository=..., onnx=...)``."""
        if kind == "sweep":
            return self.sweep(notebook, **options)
        if kind == "publish":
            return self.publish(notebook, **options)
        raise UsageError(f"unknown job kind {kind!r}", f"choose one of: {', '.join(KINDS)}")

    def sweep(
        self,
        notebook: str | os.PathLike[str],
        parameters: dict[str, Any] | None = None,
        *,
        workers: int | None = None,
        smoke: bool = False,
    ) -> Job:
        """Run the grid ``parameters`` ({name: [values]}; a scalar is one value)."""
        from nbprod.execution.sweep import expand, new_sweep_id, plan
        from nbprod.notebook import load_notebook

        parameters = {} if parameters is None else parameters
        if not isinstance(parameters, dict) or not all(isinstance(k, str) for k in parameters):
            raise UsageError("parameters must be an object of {name: [values]}")
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
        ):
            raise UsageError("workers must be a positive integer or null")
        if not isinstance(smoke, bool):
            raise UsageError("smoke must be true or false")
        loaded = load_notebook(Path(notebook))
        path = loaded.path
        base = dict(loaded.settings.smoke) if smoke else {}
        grid = expand((k, v if isinstance(v, list) else [v]) for k, v in parameters.items())
        sweep_id = new_sweep_id()
        # Checks the notebook and the parameter names now, before any process starts.
        specs = plan(loaded, grid, base=base, sweep_id=sweep_id)
        job = Job(
            id=new_job_id(),
            kind="sweep",
            notebook=str(path),
            options={"parameters": parameters, "workers": workers, "smoke": smoke},
            created=time.time(),
            sweep_id=sweep_id,
            planned=len(specs),
        )
        grid_file = job.folder / f"{job.id}.grid.json"
        write_json(grid_file, [dict(spec.parameters) for spec in specs])
        command = ["run", str(path), "--grid", str(grid_file), "--sweep-id", sweep_id, "--json"]
        command += ["--workers", str(workers)] if workers else []
        command += ["--smoke"] if smoke else []
        return self._start(job, command)

    def publish(
        self,
        notebook: str | os.PathLike[str],
        run: str,
        *,
        version: str | None = None,
        dist: str | os.PathLike[str] = "dist",
        repository: str | None = None,
        onnx: bool = False,
    ) -> Job:
        """Publish ``run`` (an id, latest, best:METRIC or min:METRIC) into ``dist``;
        ``onnx``: the package also ships its models converted to ONNX."""
        from nbprod.notebook import load_notebook
        from nbprod.runs.store import load_record

        for name, value in (("version", version), ("repository", repository)):
            if value is not None and not isinstance(value, str):
                raise UsageError(f"{name} must be a string or null")
        if not isinstance(run, str) or not run:
            raise UsageError("run must be a run id, latest, best:METRIC or min:METRIC")
        if not isinstance(onnx, bool):
            raise UsageError("onnx must be true or false")
        path = load_notebook(Path(notebook)).path
        record, _ = load_record(path, run)  # an unknown run is refused now
        if record.not_extractable:  # and one no package can be made of
            raise NotExtractable(record.id, record.not_extractable, str(path))
        dist = Path(dist).resolve()
        job = Job(
            id=new_job_id(),
            kind="publish",
            notebook=str(path),
            options={
                "run": run,
                "run_id": record.id,
                "version": version,
                "dist": str(dist),
                "repository": repository,
                "onnx": onnx,
            },
            created=time.time(),
        )
        command = ["publish", str(path), "--run", record.id, "--dist", str(dist), "--json"]
        command += ["--version", version] if version else []
        command += ["--repository", repository] if repository else []
        command += ["--onnx"] if onnx else []
        return self._start(job, command)

    def _start(self, job: Job, arguments: list[str]) -> Job:
        command = [sys.executable, "-m", "nbprod", *arguments]
        job.folder.mkdir(parents=True, exist_ok=True)
        write_json(job.state_file, asdict(job))
        self._index(job)
        env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
        # Under the job's lock until its pid is written, so a cancel waits for the process.
        with self._locked(job) as job:
            try:
                with job.log_file.open("wb") as log, job.out_file.open("wb") as out:
                    # A session of its own: the job outlives the server and its terminal's
                    # Ctrl-C, and its process group is the one cancel signals.
                    process = subprocess.Popen(
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=log,
                        cwd=Path(job.notebook).parent,
                        env=env,
                        start_new_session=True,
                    )
            except OSError as error:
                job.status, job.finished = "failed", time.time()
                job.error = {"type": None, "message": f"nbprod could not start: {error}"}
                write_json(job.state_file, asdict(job))
                return job
            job.pid, job.pid_started = process.pid, start_time(process.pid)
            job.status, job.started = "running", time.time()
            write_json(job.state_file, asdict(job))
            with self._lock:
                self._children[job.id] = process
        threading.Thread(
            target=self._watch, args=(job, process), name=f"nbprod-job-{job.id}", daemon=True
        ).start()
        return job

    def _index(self, job: Job) -> None:
        if self.root is None:
            return
        where = shown_path(job.state_file, self.root)
        if where is None:
            raise UsageError(f"{job.notebook} is outside {self.root}")
        index = self.root / STORE_DIR / INDEX
        index.mkdir(parents=True, exist_ok=True)
        write_text(index / job.id, where)

    # -- reading -----------------------------------------------------------------------

    def get(self, job_id: str, notebook: str | os.PathLike[str] | None = None) -> Job:
        """The job, its status brought up to date (a vanished process ends it)."""
        return self._refresh(self._load(self._state_file(job_id, notebook)))

    def list(self, notebook: str | os.PathLike[str] | None = None) -> list[Job]:
        """The jobs of ``notebook`` (else every indexed job), newest first."""
        if notebook is not None:
            path = Path(notebook).resolve()
            files = [p for p in jobs_folder(path).glob("*.json") if JOB_ID.match(p.stem)]
            jobs = [job for job in map(self._try_load, files) if job and job.notebook == str(path)]
        elif self.root is not None:
            index = self.root / STORE_DIR / INDEX
            found = (self._try_state_file(ref.name) for ref in sorted(index.glob("*")))
            jobs = [job for job in map(self._try_load, found) if job]
        else:
            raise UsageError("without a root folder, list the jobs of one notebook")
        return sorted(map(self._refresh, jobs), key=lambda j: (j.created, j.id), reverse=True)

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        notebook: str | os.PathLike[str] | None = None,
    ) -> Job:
        """The job once finished, or as it is when ``timeout`` seconds have passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id, notebook)
            if job.done or (deadline is not None and time.monotonic() >= deadline):
                return job
            time.sleep(0.2)

    def _state_file(self, job_id: str, notebook: str | os.PathLike[str] | None) -> Path:
        if not isinstance(job_id, str) or not JOB_ID.match(job_id):
            raise JobNotFound(f"no job {job_id!r}")
        if notebook is not None:
            state = jobs_folder(Path(notebook).resolve()) / f"{job_id}.json"
        else:
            found = self._try_state_file(job_id)
            if found is None:
                raise JobNotFound(f"no job {job_id!r}")
            state = found
        if not state.is_file():
            raise JobNotFound(f"no job {job_id!r}")
        return state

    def _try_state_file(self, job_id: str) -> Path | None:
        """The state file an index entry points to, if it lies inside the root."""
        if self.root is None or not JOB_ID.match(job_id):
            return None
        ref = self.root / STORE_DIR / INDEX / job_id
        try:
            state = (self.root / ref.read_text(encoding="utf-8").strip()).resolve()
        except OSError:
            return None
        return state if state.is_relative_to(self.root) and state.is_file() else None

    def _load(self, state: Path) -> Job:
        data = json.loads(state.read_text(encoding="utf-8"))
        known = {f.name for f in fields(Job)}
        return Job(**{k: v for k, v in data.items() if k in known})

    def _try_load(self, state: Path | None) -> Job | None:
        if state is None:
            return None
        try:
            return self._load(state)
        except (OSError, ValueError, TypeError, AttributeError):
            return None

    def _refresh(self, job: Job) -> Job:
        """End a running job whose process is gone and that no thread here waits for."""
        if job.done:
            return job
        with self._lock:
            watched = job.id in self._children
        if watched:
            return job
        if job.pid is None:
            if time.time() - job.created > NEVER_STARTED:
                return self._finish(job, None)
            return job
        if alive(job.pid, job.pid_started):
            return job
        return self._finish(job, None)

    # -- ending ------------------------------------------------------------------------

    def cancel(self, job_id: str, notebook: str | os.PathLike[str] | None = None) -> Job:
        """Ask the job to stop (SIGINT to its group, then SIGTERM, then SIGKILL); returns
        at once. A finished job is returned as it is."""
        job = self.get(job_id, notebook)
        if job.done:
            return job
        with self._locked(job) as current:
            if current.done:
                return current
            current.cancel_requested = time.time()
            write_json(current.state_file, asdict(current))
            job = current
        if job.pid is None:
            return self._finish(job, None)
        family = process_tree(job.pid, job.pid_started)
        signal_group(job.pid, signal.SIGINT)
        threading.Thread(
            target=self._escalate, args=(job, family), name=f"nbprod-cancel-{job.id}", daemon=True
        ).start()
        return self._load(job.state_file)

    def _escalate(self, job: Job, family: Family) -> None:
        assert job.pid is not None
        for follow_up in (signal.SIGTERM, signal.SIGKILL):
            deadline = time.monotonic() + self.grace
            while group_alive(job.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not group_alive(job.pid):
                break
            family += process_tree(job.pid, job.pid_started)
            signal_group(job.pid, follow_up)
        # Kernels live in sessions of their own; nbprod stops them on SIGINT, and this
        # makes sure of it should the job have needed SIGKILL.
        for pid, started in family:
            if alive(pid, started):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def _watch(self, job: Job, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        with self._lock:
            self._children.pop(job.id, None)
        with contextlib.suppress(OSError, ValueError, NbprodError):
            self._finish(job, code)

    def _finish(self, job: Job, exit_code: int | None) -> Job:
        """Record how the job ended, from its exit code (when this manager started it),
        its ``--json`` output and whether it was cancelled."""
        with self._locked(job) as current:
            if current.done:
                return current
            reported = last_json(read_text(current.out_file))
            current.exit_code = exit_code
            current.finished = time.time()
            error = reported.get("error") if isinstance(reported.get("error"), dict) else None
            if current.kind == "sweep" and "ok" in reported:
                current.result = {"sweep_id": current.sweep_id, "ok": bool(reported["ok"])}
            elif current.kind == "publish" and "version" in reported:
                current.result = {k: v for k, v in reported.items() if k != "error"}
            succeeded = exit_code == 0 or (
                exit_code is None and current.result is not None and error is None
            )
            if current.kind == "sweep" and current.result and not current.result["ok"]:
                succeeded = False
            if succeeded:
                current.status = "succeeded"
            elif current.cancel_requested is not None and error is None:
                current.status = "cancelled"
            else:
                current.status = "failed"
                current.error = _error(current, error, exit_code)
            if current.kind == "sweep" and current.sweep_id is not None:
                if current.result is None:  # cut short: still show what ran
                    current.result = {"sweep_id": current.sweep_id, "ok": False}
                _close_runs(current)
            write_json(current.state_file, asdict(current))
            return current

    @contextlib.contextmanager
    def _locked(self, job: Job) -> Iterator[Job]:
        """The job's state, re-read under a file lock: managers in other threads and other
        processes (a server, a kernel) may write it too."""
        with (job.folder / f"{job.id}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self._load(job.state_file)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _error(job: Job, reported: dict[str, Any] | None, exit_code: int | None) -> dict[str, Any]:
    """{type, message, hint, step, output}: the CLI's own error when it printed one."""
    steps = job.steps() if job.kind == "publish" else []
    error: dict[str, Any] = {
        "type": None,
        "message": "",
        "hint": None,
        "step": steps[-1] if steps else None,
        "output": None,
    }
    if reported is not None:
        error.update({k: reported.get(k) for k in ("type", "message", "hint")})
        error["step"] = reported.get("step") or error["step"]
        error["output"] = reported.get("output")
        return error
    if job.kind == "sweep" and job.result is not None and not job.result["ok"]:
        failed = [r for r in job.records() if r.status != "succeeded"]
        error["message"] = f"{len(failed)} of {job.planned} runs did not succeed"
        error["hint"] = "each run's error is in its record (runs table, or nbprod runs)"
        return error
    error["output"] = job.output()
    if exit_code is None:
        error["message"] = f"the job's process ({job.pid}) ended without reporting a result"
        error["hint"] = "it was killed, or the machine restarted while it ran; its output is below"
    elif exit_code < 0:
        error["message"] = f"nbprod was killed by {signal.Signals(-exit_code).name}"
    elif exit_code == 130:
        error["message"] = "nbprod was interrupted"
    else:
        error["message"] = f"nbprod exited with code {exit_code}"
        error["hint"] = "see its output below"
    return error


def _close_runs(job: Job) -> None:
    """Runs a killed sweep could not close itself (SIGKILL) are marked, never left running."""
    database = store_path(Path(job.notebook))
    if not database.is_file():
        return
    store = RunStore(database)
    ids = [r.id for r in store.runs(sweep_id=job.sweep_id)]
    if job.status == "cancelled":
        store.mark(ids, "cancelled", "the job was cancelled")
    else:
        store.mark(ids, "failed", "the job's process ended before this run")
