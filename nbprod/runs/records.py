"""Where runs live: one folder per run beside the notebook, with a ``run.json`` record.

``.nbprod/runs/<run id>/`` holds the executed notebook, parameters, metrics,
artifacts, the parity record and the test fixtures of one execution.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STORE_DIR = ".nbprod"
SOURCE = "notebook.ipynb"  # in a run's folder: the notebook as it was when the run started
EXECUTED = "executed.ipynb"  # in a run's folder: the notebook with its outputs


@dataclass
class RunRecord:
    id: str
    notebook: str
    notebook_sha256: str
    package: str
    status: str  # "queued", "running", "succeeded", "failed", "cancelled"
    parameters: dict[str, Any]
    started: float
    kernel: str
    finished: float | None = None
    error: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # name → sha256
    notes: list[str] = field(default_factory=list)
    sweep_id: str | None = None
    kernel_start: str | None = None  # "fork", "fallback: <why>" or "process"
    # Why this run cannot become a package (the notebook's check problems: no roles, no
    # inference cell, ...); empty for a run of a notebook that can be extracted.
    not_extractable: list[str] = field(default_factory=list)

    @property
    def extractable(self) -> bool:
        return not self.not_extractable

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else self.finished - self.started

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration"] = self.duration
        data["extractable"] = self.extractable
        return data


def runs_root(notebook: Path) -> Path:
    return notebook.parent / STORE_DIR / "runs"


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def run_dir(notebook: Path, run_id: str) -> Path:
    return runs_root(notebook) / run_id


def save_record(folder: Path, record: RunRecord) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".run.")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(record.to_json(), out, indent=2, sort_keys=True, default=str)
    os.replace(temporary, folder / "run.json")
