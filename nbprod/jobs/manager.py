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
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from nbprod.exceptions import JobNotFound, NbprodError, RunNotFound, UsageError
from nbprod.jobs.processes import Family, alive, group_alive, process_tree, signal_group, start_time
from nbprod.runs.records import STORE_DIR, RunRecord, run_dir
from nbprod.runs.store import RunStore, existing_store, first_metric, sort_runs, store_path

KINDS = ("sweep", "publish")
FINISHED = ("succeeded", "failed", "cancelled")
OUTPUT_LINES = 100
STEP_MARK = "• "  # how `nbprod publish` announces a step on stderr
_JOB_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,80}$")
_INDEX = "job-index"
_NEVER_STARTED = 60.0  # seconds a job may stay queued without a process


@dataclass
class Job:
    """What is kept of a job between requests and restarts (``<id>.json``)."""

    id: str
    kind: str
    notebook: str  # absolute
    options: dict[str, Any]  # as asked: parameters, workers, smoke / run, version, dist, ...
    created: float
    status: str = "queued"  # "running", "succeeded", "failed", "cancelled"
    started: float | None = None
    finished: float | None = None
    pid: int | None = None  # also the process group id
    pid_started: int | None = None  # the process's start time: a reused pid is not the job
    sweep_id: str | None = None
    planned: int | None = None  # runs in the sweep
    cancel_requested: float | None = None
    exit_code: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def folder(self) -> Path:
        return jobs_folder(Path(self.notebook))

    @property
    def state_file(self) -> Path:
        return self.folder / f"{self.id}.json"

    @property
    def log_file(self) -> Path:
        return self.folder / f"{self.id}.log"

    @property
    def out_file(self) -> Path:
        return self.folder / f"{self.id}.out"

    @property
    def done(self) -> bool:
        return self.status in FINISHED

    def store(self) -> RunStore | None:
        database = store_path(Path(self.notebook))
        return RunStore(database) if database.is_file() else None

    def records(self, store: RunStore | None = None) -> list[RunRecord]:
        """The sweep's runs as the store holds them now."""
        if self.sweep_id is None:
            return []
        store = store or self.store()
        return store.runs(sweep_id=self.sweep_id) if store is not None else []

    def steps(self) -> list[str]:
        return [
            line.removeprefix(STEP_MARK).strip()
            for line in _read(self.log_file).splitlines()
            if line.startswith(STEP_MARK)
        ]

    def output(self, lines: int = OUTPUT_LINES) -> str:
        return "\n".join(_read(self.log_file, tail=64_000).splitlines()[-lines:])

    def progress(self, records: list[RunRecord] | None = None) -> dict[str, Any]:
        if self.kind == "publish":
            steps = self.steps()
            current = steps[-1] if steps and not self.done else None
            return {"steps": steps, "current": current}
        records = self.records() if records is None else records
        ended = [r for r in records if r.status in FINISHED]
        return {
            "total": max(self.planned or 0, len(records)),
            "done": len(ended),
            "failed": sum(r.status != "succeeded" for r in ended),
            "running": sum(r.status == "running" for r in records),
        }

    def to_json(self, root: Path | None = None) -> dict[str, Any]:
        """The job as front ends show it; with ``root``, every path is relative to it."""
        store = self.store() if self.kind == "sweep" else None
        records = self.records(store)
        result = self.result
        if result is not None and self.kind == "sweep":
            result = {**result, "runs": [run_json(r, root, store) for r in records]}
        elif result is not None and self.kind == "publish":
            files = [shown_path(f, root) for f in result.get("files", [])]
            result = {**result, "files": files}
        progress = self.progress(records)
        if self.kind == "publish":  # "place the files in DIST" names a folder
            progress["steps"] = [scrub_paths(step, root) for step in progress["steps"]]
            progress["current"] = scrub_paths(progress["current"], root)
        error = None
        if self.error is not None:
            error = {k: scrub_paths(v, root) for k, v in self.error.items()}
        return {
            "id": self.id,
            "kind": self.kind,
            "path": shown_path(self.notebook, root),
            "status": self.status,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "progress": progress,
            "runs": [r.id for r in records],
            "result": result,
            "error": error,
            "output": scrub_paths(self.output(), root),
        }


def jobs_folder(notebook: Path) -> Path:
    return notebook.parent / STORE_DIR / "jobs"


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def shown_path(path: str | os.PathLike[str] | None, root: Path | None) -> str | None:
    """``path`` relative to ``root`` ('/'-separated), None if it lies outside; as is
    without a root."""
    if path is None:
        return None
    if root is None:
        return str(path)
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def run_json(
    record: RunRecord, root: Path | None = None, store: RunStore | None = None
) -> dict[str, Any]:
    """A run as front ends show it: its record, the folder and executed notebook of the
    run (relative to ``root`` when given), never an absolute path under a root."""
    from nbprod.execution.execute import EXECUTED

    notebook = Path(record.notebook)
    folder = store.folder(record.id) if store is not None else None
    folder = folder or run_dir(notebook, record.id)
    executed = folder / EXECUTED
    data = record.to_json()
    data["notebook"] = shown_path(notebook, root)
    data["folder"] = shown_path(folder, root)
    data["executed_path"] = shown_path(executed, root) if executed.is_file() else None
    if data["error"]:
        data["error"] = {k: scrub_paths(v, root) for k, v in data["error"].items()}
    return data


def ranked_runs(
    notebook: Path, metric: str | None = None, root: Path | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """The runs of ``notebook`` as front ends show them (``run_json``), best first by
    ``metric`` (default: the first metric recorded), and the metric they are sorted by.
    A notebook that never ran has no runs."""
    try:
        store = existing_store(notebook)
    except RunNotFound:
        return [], metric
    records = store.runs(notebook)
    metric = metric or first_metric(records)
    return [run_json(r, root, store) for r in sort_runs(records, metric)], metric


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
        ``submit("publish", nb, run=..., version=..., dist=..., repository=...)``."""
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
        specs = plan(path, grid, base=base, sweep_id=sweep_id)
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
        _write_json(grid_file, [dict(spec.parameters) for spec in specs])
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
    ) -> Job:
        """Publish ``run`` (an id, latest, best:METRIC or min:METRIC) into ``dist``."""
        from nbprod.notebook import load_notebook
        from nbprod.runs.records import load_record

        for name, value in (("version", version), ("repository", repository)):
            if value is not None and not isinstance(value, str):
                raise UsageError(f"{name} must be a string or null")
        if not isinstance(run, str) or not run:
            raise UsageError("run must be a run id, latest, best:METRIC or min:METRIC")
        path = load_notebook(Path(notebook)).path
        record, _ = load_record(path, run)  # an unknown run is refused now
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
            },
            created=time.time(),
        )
        command = ["publish", str(path), "--run", record.id, "--dist", str(dist), "--json"]
        command += ["--version", version] if version else []
        command += ["--repository", repository] if repository else []
        return self._start(job, command)

    def _start(self, job: Job, arguments: list[str]) -> Job:
        command = [sys.executable, "-m", "nbprod", *arguments]
        job.folder.mkdir(parents=True, exist_ok=True)
        _write_json(job.state_file, asdict(job))
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
                _write_json(job.state_file, asdict(job))
                return job
            job.pid, job.pid_started = process.pid, start_time(process.pid)
            job.status, job.started = "running", time.time()
            _write_json(job.state_file, asdict(job))
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
        index = self.root / STORE_DIR / _INDEX
        index.mkdir(parents=True, exist_ok=True)
        _write_text(index / job.id, where)

    # -- reading -----------------------------------------------------------------------

    def get(self, job_id: str, notebook: str | os.PathLike[str] | None = None) -> Job:
        """The job, its status brought up to date (a vanished process ends it)."""
        return self._refresh(self._load(self._state_file(job_id, notebook)))

    def list(self, notebook: str | os.PathLike[str] | None = None) -> list[Job]:
        """The jobs of ``notebook`` (else every indexed job), newest first."""
        if notebook is not None:
            path = Path(notebook).resolve()
            files = [p for p in jobs_folder(path).glob("*.json") if _JOB_ID.match(p.stem)]
            jobs = [job for job in map(self._try_load, files) if job and job.notebook == str(path)]
        elif self.root is not None:
            index = self.root / STORE_DIR / _INDEX
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
        if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
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
        if self.root is None or not _JOB_ID.match(job_id):
            return None
        ref = self.root / STORE_DIR / _INDEX / job_id
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
            if time.time() - job.created > _NEVER_STARTED:
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
            _write_json(current.state_file, asdict(current))
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
            reported = _last_json(_read(current.out_file))
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
            _write_json(current.state_file, asdict(current))
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


# -- files -------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    _write_text(path, json.dumps(data, indent=2, default=str))


def _write_text(path: Path, text: str) -> None:
    """Write under a temporary name, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _read(path: Path, tail: int | None = None) -> str:
    try:
        with path.open("rb") as file:
            if tail is not None:
                file.seek(max(0, path.stat().st_size - tail))
            return file.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _last_json(text: str) -> dict[str, Any]:
    """The last line of stdout that is a JSON object (the ``--json`` result or error)."""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                if isinstance(data, dict):
                    return data
    return {}


def scrub_paths(value: Any, root: Path | None) -> Any:
    """Text shown to a front end names files relative to the root, as everything else."""
    if root is None or not isinstance(value, str):
        return value
    return value.replace(f"{root.resolve()}/", "").replace(f"{root}/", "")


__all__ = [
    "FINISHED",
    "KINDS",
    "Job",
    "JobManager",
    "ranked_runs",
    "run_json",
    "scrub_paths",
    "shown_path",
]
