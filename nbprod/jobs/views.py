"""Runs as front ends show them: ``run_json`` (a record with paths relative to the
server root, never an absolute path under it), ``ranked_runs`` (best first by a
metric) and the path helpers both use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nbprod.exceptions import RunNotFound
from nbprod.runs.records import RunRecord, run_dir
from nbprod.runs.store import RunStore, existing_store, first_metric, sort_runs


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
    from nbprod.runs.records import EXECUTED

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


def scrub_paths(value: Any, root: Path | None) -> Any:
    """Text shown to a front end names files relative to the root, as everything else."""
    if root is None or not isinstance(value, str):
        return value
    return value.replace(f"{root.resolve()}/", "").replace(f"{root}/", "")
