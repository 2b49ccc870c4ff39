"""The run store: every run's parameters, metrics, status, timings, error and artifact
hashes in one SQLite database (``.nbprod/runs.db`` beside the notebook by default).

SQLite in WAL mode with a busy timeout lets two sweeps write and a Jupyter server read
at the same time. Files (executed notebook, artifacts, parity) stay in each run's
folder; the store is the index that ``nbprod runs`` and run selectors query.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nbprod.config import project_config
from nbprod.exceptions import RunNotFound, UsageError
from nbprod.runs.records import STORE_DIR, RunRecord, run_dir, runs_root

DATABASE = "runs.db"
STORE_ENV = "NBPROD_STORE"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    notebook TEXT NOT NULL,
    notebook_sha256 TEXT NOT NULL,
    package TEXT NOT NULL,
    status TEXT NOT NULL,
    parameters TEXT NOT NULL,
    metrics TEXT NOT NULL,
    artifacts TEXT NOT NULL,
    error TEXT,
    notes TEXT NOT NULL,
    kernel TEXT NOT NULL,
    sweep_id TEXT,
    kernel_start TEXT,
    not_extractable TEXT,
    folder TEXT,
    started REAL NOT NULL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS runs_by_notebook ON runs (notebook, started);
CREATE INDEX IF NOT EXISTS runs_by_sweep ON runs (sweep_id);
"""
_ADDED_COLUMNS = ("kernel_start", "not_extractable")
_LOWER_IS_BETTER = ("loss", "error", "rmse", "mae", "mse", "logloss")
_SELECTOR = re.compile(r"^(best|max|min):([A-Za-z_][A-Za-z0-9_.\-]*)$")
_JSON_FIELDS = ("parameters", "metrics", "artifacts", "error", "notes", "not_extractable")


def store_path(notebook: Path, configured: str | os.PathLike[str] | None = None) -> Path:
    """``configured``, $NBPROD_STORE, ``[tool.nbprod] store``, else ``.nbprod/runs.db``
    beside the notebook."""
    chosen = configured or os.environ.get(STORE_ENV)
    if not chosen:
        table, root = project_config(notebook)
        if table.get("store") and root is not None:
            chosen = str(root / str(table["store"]))
    if chosen:
        text = str(chosen)
        return Path(text.removeprefix("sqlite:///")) if text.startswith("sqlite:") else Path(text)
    return notebook.parent / STORE_DIR / DATABASE


def existing_store(notebook: Path | None, configured: str | None = None) -> RunStore:
    """The store of ``notebook`` (or of the current folder); RunNotFound if none exists yet."""
    path = store_path(notebook if notebook else Path.cwd() / "notebook.ipynb", configured)
    if not path.is_file():
        raise RunNotFound(f"no run store at {path}", "run a notebook first: nbprod run NOTEBOOK")
    return RunStore(path)


def _write_ahead_log(db: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch the file to WAL. The switch needs the file to itself and SQLite does not
    wait for it as it waits for ordinary locks (busy_timeout): a store opened while
    other threads or processes read it got "database is locked". Retry briefly."""
    for attempt in range(attempts):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


class RunStore:
    """One SQLite file; each call opens its own short transaction (process and thread safe)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            _write_ahead_log(db)
            db.executescript(_SCHEMA)
            columns = {row["name"] for row in db.execute("PRAGMA table_info(runs)")}
            for column in _ADDED_COLUMNS:  # stores written by an older nbprod
                if column not in columns:
                    db.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA busy_timeout=60000")
            yield db
        finally:
            db.close()

    def save(self, record: RunRecord, folder: Path | None = None) -> None:
        row = record.to_json()
        values = {
            "id": record.id,
            "notebook": record.notebook,
            "notebook_sha256": record.notebook_sha256,
            "package": record.package,
            "status": record.status,
            "kernel": record.kernel,
            "sweep_id": record.sweep_id,
            "kernel_start": record.kernel_start,
            "folder": str(folder) if folder is not None else None,
            "started": record.started,
            "finished": record.finished,
            **{name: json.dumps(row[name]) for name in _JSON_FIELDS},
        }
        columns = ", ".join(values)
        marks = ", ".join(f":{name}" for name in values)
        updates = ", ".join(f"{name}=excluded.{name}" for name in values if name != "id")
        with self._connect() as db:
            db.execute(
                f"INSERT INTO runs ({columns}) VALUES ({marks}) "
                f"ON CONFLICT(id) DO UPDATE SET {updates}",
                values,
            )

    def get(self, run_id: str) -> RunRecord:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"no run {run_id!r} in {self.path}")
        return _record(row)

    def folder(self, run_id: str) -> Path | None:
        with self._connect() as db:
            row = db.execute("SELECT folder FROM runs WHERE id = ?", (run_id,)).fetchone()
        return Path(row["folder"]) if row is not None and row["folder"] else None

    def runs(
        self,
        notebook: Path | None = None,
        *,
        sweep_id: str | None = None,
        status: str | None = None,
    ) -> list[RunRecord]:
        clauses, args = [], []
        if notebook is not None:
            clauses.append("notebook = ?")
            args.append(str(notebook))
        if sweep_id is not None:
            clauses.append("sweep_id = ?")
            args.append(sweep_id)
        if status is not None:
            clauses.append("status = ?")
            args.append(status)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect() as db:
            rows = db.execute(f"SELECT * FROM runs {where} ORDER BY started, id", args).fetchall()
        return [_record(row) for row in rows]

    def mark(self, run_ids: list[str], status: str, message: str) -> None:
        """Set the status of unfinished runs (e.g. cancelled) in one transaction."""
        error = json.dumps({"cell": None, "role": None, "line": None, "message": message})
        with self._connect() as db:
            db.executemany(
                "UPDATE runs SET status = ?, error = ?, finished = COALESCE(finished, "
                "strftime('%s','now')) WHERE id = ? AND status IN ('queued', 'running')",
                [(status, error, run_id) for run_id in run_ids],
            )

    def select(self, selector: str, notebook: Path | None = None) -> RunRecord:
        """A run id, ``latest``, or ``best:METRIC`` / ``max:METRIC`` / ``min:METRIC``."""
        match = _SELECTOR.match(selector)
        if selector == "latest" or match:
            runs = [r for r in self.runs(notebook) if r.status == "succeeded"]
            if not runs:
                raise RunNotFound(
                    f"no successful run{' of ' + notebook.name if notebook else ''} yet",
                    "run the notebook first: nbprod run NOTEBOOK",
                )
            if selector == "latest":
                return runs[-1]
            assert match is not None
            kind, metric = match.groups()
            scored = [r for r in runs if metric in r.metrics]
            if not scored:
                known = sorted({m for r in runs for m in r.metrics})
                raise RunNotFound(
                    f"no successful run recorded the metric {metric!r}",
                    f"known metrics: {', '.join(known)}" if known else "no run recorded metrics",
                )
            lowest = kind == "min" or (kind == "best" and lower_is_better(metric))
            # among equal scores, the newest run wins (the notebook as it is now)
            if lowest:
                return min(scored, key=lambda r: (r.metrics[metric], -r.started))
            return max(scored, key=lambda r: (r.metrics[metric], r.started))
        if ":" in selector:
            raise UsageError(
                f"bad run selector {selector!r}", "use a run id, latest, best:METRIC or min:METRIC"
            )
        return self.get(selector)

    def compare(self, selectors: list[str], notebook: Path | None = None) -> list[RunRecord]:
        """The runs ``selectors`` name, in that order (``nbprod runs compare``)."""
        return [self.select(selector, notebook) for selector in selectors]


def lower_is_better(metric: str) -> bool:
    return any(word in metric.lower() for word in _LOWER_IS_BETTER)


def sort_runs(records: list[RunRecord], metric: str | None) -> list[RunRecord]:
    """Runs with the metric first, best first; then the rest in start order."""
    if not metric:
        return sorted(records, key=lambda r: r.started)
    scored = [r for r in records if metric in r.metrics]
    rest = sorted((r for r in records if metric not in r.metrics), key=lambda r: r.started)
    scored.sort(key=lambda r: r.metrics[metric], reverse=not lower_is_better(metric))
    return scored + rest


def first_metric(records: list[RunRecord]) -> str | None:
    for record in records:
        if record.metrics:
            return next(iter(record.metrics))
    return None


def _record(row: sqlite3.Row) -> RunRecord:
    data: dict[str, Any] = {key: row[key] for key in row.keys()}  # noqa: SIM118
    for name in _JSON_FIELDS:
        data[name] = json.loads(data[name]) if data[name] is not None else None
    data.pop("folder", None)
    data["notes"] = data["notes"] or []
    data["not_extractable"] = data["not_extractable"] or []
    return RunRecord(**data)


def load_record(
    notebook: Path, selector: str, store: str | os.PathLike[str] | None = None
) -> tuple[RunRecord, Path]:
    """The record and folder of a run: an id, ``latest``, ``best:METRIC`` or ``min:METRIC``."""
    database = store_path(notebook, store)
    if database.is_file():
        try:
            record = RunStore(database).select(selector, notebook)
        except RunNotFound:
            if selector != "latest" and ":" not in selector:
                return _from_folder(notebook, selector)
            raise
        folder = RunStore(database).folder(record.id) or run_dir(notebook, record.id)
        return record, folder
    if selector == "latest" or ":" in selector:
        raise RunNotFound(
            f"{notebook.name} has no runs yet", f"run it first: nbprod run {notebook}"
        )
    return _from_folder(notebook, selector)


def _from_folder(notebook: Path, run_id: str) -> tuple[RunRecord, Path]:
    root = runs_root(notebook)
    folder = root / run_id
    path = folder / "run.json"
    if "/" in run_id or run_id.startswith(".") or not path.is_file():
        known = sorted(p.name for p in root.glob("*") if (p / "run.json").is_file())[-5:]
        raise RunNotFound(
            f"no run {run_id!r} for {notebook.name}",
            f"recent runs: {', '.join(known)}" if known else f"run it first: nbprod run {notebook}",
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    data.pop("duration", None)
    data.pop("extractable", None)
    return RunRecord(**data), folder
