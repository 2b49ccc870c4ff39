"""Parameter sweeps: from ``-p a=1,2 -p b=x,y`` or a grid file to the list of runs, then
to an executor, collecting every outcome. One failing run never stops the others.

A sweep is a list of ``RunSpec``; executors (``executors.py``) run them and report
``RunEvent``s; ``sweep()`` records queued/cancelled runs in the store and returns the
records of all runs, succeeded or not.
"""

from __future__ import annotations

import ast
import itertools
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nbprod.analysis.analyzer import Analysis, analyze
from nbprod.exceptions import Cancelled, UsageError
from nbprod.execution.execute import resolve_parameters
from nbprod.notebook import Notebook, load_notebook
from nbprod.runs.records import RunRecord, new_run_id
from nbprod.runs.store import RunStore, store_path
from nbprod.runtime.artifacts import sha256

Grid = list[dict[str, Any]]


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep, as sent to a worker (plain data: it is pickled to processes)."""

    notebook: str
    parameters: dict[str, Any]
    run_id: str
    sweep_id: str
    kernel: str | None = None
    timeout: float | None = None
    store: str | None = None
    # papermill's options for each run (execution_timeout, start_timeout, cwd, ...): the
    # fields of ``RunOptions`` of the same names
    papermill: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunEvent:
    """Progress of one run, as an executor reports it."""

    run_id: str
    status: str  # "running", "succeeded", "failed", "cancelled"
    record: RunRecord | None = None
    error: str | None = None


@dataclass
class SweepResult:
    sweep_id: str
    records: list[RunRecord] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.records) and all(r.status == "succeeded" for r in self.records)


def parse_axis(text: str) -> tuple[str, list[Any]]:
    """``NAME=V1,V2,...`` → (NAME, [values]); a single value is a one-value axis.

    Values are Python literals; ``[1, 2]`` is one list value, ``1,2`` two values, and
    words that are not literals stay strings (``solver=lbfgs,saga``).
    """
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise UsageError(
            f"bad parameter {text!r}", "write parameters as NAME=VALUE or NAME=V1,V2,..."
        )
    value = value.strip()
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return name, [_literal_or_text(part) for part in value.split(",")]
    if isinstance(parsed, tuple) and not value.startswith("("):
        return name, list(parsed)
    return name, [parsed]


def _literal_or_text(text: str) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text.strip()


def expand(axes: Iterable[tuple[str, list[Any]]]) -> Grid:
    """The cartesian product of the axes, in the order given."""
    listed = list(axes)
    names = [name for name, _ in listed]
    if len(set(names)) != len(names):
        raise UsageError("a parameter is given twice", "give each parameter once: -p a=1,2,3")
    return [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(v for _, v in listed))
    ]


def read_grid(path: Path) -> Grid:
    """A grid file: ``{name: [values]}`` (a grid) or ``[{name: value}, ...]`` (explicit sets)."""
    if not path.is_file():
        raise UsageError(f"{path}: no such grid file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as error:
        raise UsageError(f"{path} cannot be read: {error}") from error
    if isinstance(data, dict):
        return expand((k, v if isinstance(v, list) else [v]) for k, v in data.items())
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        return [dict(item) for item in data]
    raise UsageError(
        f"{path} is neither a grid nor a list of parameter sets",
        "write {name: [v1, v2]} for a grid, or [{name: v}, {name: v}] for explicit runs",
    )


def new_sweep_id() -> str:
    return f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def plan(
    notebook: str | Path | Notebook,
    grid: Grid,
    *,
    analysis: Analysis | None = None,
    base: dict[str, Any] | None = None,
    kernel: str | None = None,
    timeout: float | None = None,
    store: str | None = None,
    sweep_id: str | None = None,
    papermill: dict[str, Any] | None = None,
) -> list[RunSpec]:
    """Analyse the notebook once and turn each parameter set into a run spec.

    Unknown parameter names are refused here, before any kernel starts. ``sweep_id``
    lets a caller that watches the store (a background job) know the sweep's id first.
    A caller that already loaded (and analysed) the notebook hands it down.
    """
    notebook = notebook if isinstance(notebook, Notebook) else load_notebook(notebook)
    analysis = analysis or analyze(notebook)  # problems only make its runs not extractable
    sweep_id = sweep_id or new_sweep_id()
    specs = []
    for values in grid or [{}]:
        merged = {**(base or {}), **values}
        resolve_parameters(analysis, merged)  # validates the names
        specs.append(
            RunSpec(
                notebook=str(notebook.path),
                parameters=merged,
                run_id=new_run_id(),
                sweep_id=sweep_id,
                kernel=kernel,
                timeout=timeout,
                store=store,
                papermill=dict(papermill or {}),
            )
        )
    return specs


# What nbprod's own recording cells import in every run (skops.io loads most of sklearn).
RUNTIME_MODULES = (
    "nbprod.runtime.capture",
    "nbprod.runtime.values",
    "nbprod.runtime._formats",
    "nbprod.runtime.artifacts",
    "nbprod.runtime.schema",
    "skops.io",
)


def preload_modules(notebook: str | Path | Analysis) -> list[str]:
    """The modules the notebook and nbprod's recorder import, imported once by the fork
    server so that no forked kernel pays for them."""
    return list(dict.fromkeys([*RUNTIME_MODULES, *notebook_imports(notebook)]))


def notebook_imports(notebook: str | Path | Analysis) -> list[str]:
    """The absolute modules the notebook's cells import, in the order they first appear."""
    analysis = notebook if isinstance(notebook, Analysis) else analyze(load_notebook(notebook))
    modules = []
    for imported in analysis.imports.values():
        text = imported.statement.split()
        if text[0] == "import" or not text[1].startswith("."):
            modules.append(text[1])
    return list(dict.fromkeys(modules))


EventHandler = Callable[[RunEvent], None]


class SweepExecutor(Protocol):
    def run(self, specs: list[RunSpec], report: EventHandler) -> None: ...


def run_sweep(
    specs: list[RunSpec],
    executor: SweepExecutor,
    on_event: EventHandler | None = None,
    *,
    package: str | None = None,
    on_recorded: Callable[[RunRecord], None] | None = None,
) -> SweepResult:
    """Run every spec; record queued and cancelled runs; return all the runs' records.

    Ctrl-C (KeyboardInterrupt) or Cancelled stops the executor, marks the runs that had
    not finished as cancelled, and is raised again as Cancelled. ``package``, the
    notebook's package name, is read from the notebook when the caller does not hand it.
    ``on_recorded`` gets each run's stored record as soon as the run has ended (an
    observer such as the MLflow tracker; it must not raise).
    """
    if not specs:
        raise UsageError("the sweep has no runs")
    notebook = Path(specs[0].notebook)
    store = RunStore(store_path(notebook, specs[0].store))
    package = package or analyze(load_notebook(notebook)).package
    digest = sha256(notebook)
    for spec in specs:
        store.save(
            RunRecord(
                id=spec.run_id,
                notebook=spec.notebook,
                notebook_sha256=digest,
                package=package,
                status="queued",
                parameters=spec.parameters,
                started=time.time(),
                kernel=spec.kernel or "python3",
                sweep_id=spec.sweep_id,
            )
        )
    ids = [spec.run_id for spec in specs]

    def report(event: RunEvent) -> None:
        if event.status == "failed" and event.record is None:
            store.mark([event.run_id], "failed", event.error or "the run failed")
        if on_recorded is not None and event.status in ("succeeded", "failed", "cancelled"):
            on_recorded(store.get(event.run_id))
        if on_event is not None:
            on_event(event)

    try:
        executor.run(specs, report)
    except (KeyboardInterrupt, Cancelled) as error:
        store.mark(ids, "cancelled", "the sweep was cancelled")
        raise Cancelled(f"sweep {specs[0].sweep_id} was cancelled") from error
    store.mark(ids, "failed", "the run never reported back")
    return SweepResult(specs[0].sweep_id, [store.get(run_id) for run_id in ids])
