"""A job as it is kept between requests and restarts: ``Job`` (``<id>.json`` beside the
process's ``<id>.log`` and ``<id>.out``), what its process reported (``steps``,
``records``, ``output``), and the atomic file writes every reader can rely on.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbprod.jobs.views import run_json, scrub_paths, shown_path
from nbprod.runs.records import STORE_DIR, RunRecord
from nbprod.runs.store import RunStore, store_path

KINDS = ("sweep", "publish")
FINISHED = ("succeeded", "failed", "cancelled")
OUTPUT_LINES = 100
STEP_MARK = "• "  # how `nbprod publish` announces a step on stderr
JOB_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,80}$")
INDEX = "job-index"
NEVER_STARTED = 60.0  # seconds a job may stay queued without a process


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
            for line in read_text(self.log_file).splitlines()
            if line.startswith(STEP_MARK)
        ]

    def output(self, lines: int = OUTPUT_LINES) -> str:
        return "\n".join(read_text(self.log_file, tail=64_000).splitlines()[-lines:])

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


# -- files -------------------------------------------------------------------------------


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, default=str))


def write_text(path: Path, text: str) -> None:
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


def read_text(path: Path, tail: int | None = None) -> str:
    try:
        with path.open("rb") as file:
            if tail is not None:
                file.seek(max(0, path.stat().st_size - tail))
            return file.read().decode("utf-8", "replace")
    except OSError:
        return ""


def last_json(text: str) -> dict[str, Any]:
    """The last line of stdout that is a JSON object (the ``--json`` result or error)."""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                if isinstance(data, dict):
                    return data
    return {}
