"""Terminal rendering for the CLI: sweep progress and run tables (rich)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nbprod.execution.sweep import RunEvent
from nbprod.runs.records import RunRecord
from nbprod.runs.store import sort_runs


def runs_table(records: list[RunRecord], metric: str | None = None, title: str = "") -> Table:
    parameters = list(dict.fromkeys(name for r in records for name in r.parameters))
    metrics = list(dict.fromkeys(name for r in records for name in r.metrics))
    varying = [p for p in parameters if len({repr(r.parameters.get(p)) for r in records}) > 1]
    shown = varying or parameters
    table = Table(title=title or None, title_justify="left")
    table.add_column("run", no_wrap=True)
    table.add_column("status")
    for name in shown:
        table.add_column(name, justify="right")
    for name in metrics:
        table.add_column(name + (" ▼" if name == metric else ""), justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("error")
    for record in sort_runs(records, metric):
        status = {"succeeded": "[green]ok[/]", "failed": "[red]failed[/]"}.get(
            record.status, record.status
        )
        error = record.error or {}
        where = f"cell {error['cell']}: " if error.get("cell") else ""
        table.add_row(
            record.id,
            status,
            *(_cell(record.parameters.get(p, "")) for p in shown),
            *(_cell(record.metrics.get(m, "")) for m in metrics),
            f"{record.duration:.1f}" if record.duration is not None else "",
            (where + str(error.get("message", "")))[:80] if error else "",
        )
    return table


def comparison_table(records: list[RunRecord]) -> Table:
    table = Table()
    table.add_column("")
    for record in records:
        table.add_column(record.id, justify="right")
    table.add_row("status", *(r.status for r in records))
    for name in dict.fromkeys(n for r in records for n in r.parameters):
        values = [_cell(r.parameters.get(name, "")) for r in records]
        style = "bold" if len(set(values)) > 1 else ""
        table.add_row(f"[{style}]{name}[/]" if style else name, *values)
    for name in dict.fromkeys(n for r in records for n in r.metrics):
        table.add_row(f"[cyan]{name}[/]", *(_cell(r.metrics.get(name, "")) for r in records))
    table.add_row("seconds", *(f"{r.duration:.1f}" if r.duration else "" for r in records))
    return table


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class SweepProgress:
    """A live bar: runs done / failed / running, elapsed time."""

    def __init__(self, console: Console, total: int) -> None:
        self.total = total
        self.done = self.failed = self.running = 0
        self.started = time.monotonic()
        self.progress = Progress(
            TextColumn("[bold]sweep"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} done"),
            TextColumn("[red]{task.fields[failed]} failed"),
            TextColumn("{task.fields[running]} running"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("sweep", total=total, failed=0, running=0)

    def update(self, event: RunEvent) -> None:
        if event.status == "running":
            self.running += 1
        else:
            self.running = max(0, self.running - 1)
            self.done += 1
            self.failed += event.status != "succeeded"
        self.progress.update(
            self.task, completed=self.done, failed=self.failed, running=self.running
        )

    @contextmanager
    def shown(self) -> Iterator[SweepProgress]:
        with self.progress:
            yield self
