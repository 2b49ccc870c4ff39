"""``nbprod run``: one run of a notebook, or a sweep over a parameter grid."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from nbprod.cli.common import err, json_flag, out
from nbprod.exceptions import Cancelled, ExecutionFailed

if TYPE_CHECKING:
    from nbprod.notebook import Notebook


@click.command()
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE[,VALUE...]",
    help="Set a parameter (Python literals); several values make a sweep axis.",
)
@click.option(
    "--grid",
    type=click.Path(path_type=Path),
    help="YAML/JSON grid {name: [values]} or list of parameter sets.",
)
@click.option("--smoke", is_flag=True, help="Use the smoke parameters of metadata.nbprod.")
@click.option("--workers", type=int, help="Parallel runs (default: one per core).")
@click.option(
    "--no-fork",
    is_flag=True,
    help="Start every kernel as a new process instead of forking warm ones.",
)
@click.option(
    "--executor",
    "executor_name",
    default="local",
    show_default=True,
    help="Where runs execute: local, dask, or a plugin.",
)
@click.option("--scheduler", help="Dask scheduler address (tcp://HOST:PORT).")
@click.option("--kernel", help="Kernel name (default: this Python).")
@click.option("--timeout", type=float, help="Seconds a run may take.")
@click.option("--store", help="Run store path (default: .nbprod/runs.db beside the notebook).")
@click.option(
    "--sweep-id",
    help="Record the runs under this sweep id (makes it a sweep, even of one run).",
)
@json_flag("Print the runs as JSON.")
def run(
    notebook: Path,
    params: tuple[str, ...],
    grid: Path | None,
    smoke: bool,
    workers: int | None,
    no_fork: bool,
    executor_name: str,
    scheduler: str | None,
    kernel: str | None,
    timeout: float | None,
    store: str | None,
    sweep_id: str | None,
    as_json: bool,
) -> None:
    """Execute the notebook with papermill: once, or as a sweep over parameter values."""
    from nbprod.execution.sweep import expand, parse_axis, read_grid
    from nbprod.notebook import load_notebook

    loaded = load_notebook(notebook)  # loaded (and below analysed) once, then handed down
    base: dict[str, Any] = dict(loaded.settings.smoke) if smoke else {}
    axes = [parse_axis(text) for text in params]
    single = {name: values[0] for name, values in axes if len(values) == 1}
    sweep_axes = [(name, values) for name, values in axes if len(values) > 1]
    sets = read_grid(grid) if grid else [{}]
    sets = [{**s, **g} for s in sets for g in (expand(sweep_axes) if sweep_axes else [{}])]
    is_sweep = len(sets) > 1 or grid is not None or executor_name != "local" or workers or sweep_id
    if not is_sweep:
        _single_run(loaded, {**base, **single, **sets[0]}, kernel, timeout, store, as_json)
        return
    options: dict[str, Any] = {"workers": workers}
    if executor_name == "local":
        options["fork"] = not no_fork and kernel in (None, "python3")
    elif executor_name == "dask":
        options["scheduler"] = scheduler or _configured_scheduler(notebook)
    _sweep(
        loaded,
        sets,
        {**base, **single},
        kernel,
        timeout,
        store,
        as_json,
        executor_name,
        options,
        sweep_id,
    )


def _single_run(
    notebook: Notebook,
    overrides: dict[str, Any],
    kernel: str | None,
    timeout: float | None,
    store: str | None,
    as_json: bool,
) -> None:
    from nbprod.execution.execute import RunOptions, run_notebook

    options = RunOptions(kernel=kernel, timeout=timeout, store=store)
    try:
        record = run_notebook(notebook, overrides, options)
    except Cancelled as error:
        err.print(f"[yellow]{escape(str(error))}[/]")
        sys.exit(130)
    except ExecutionFailed as error:
        if as_json:
            click.echo(
                json.dumps(
                    _run_summary(error.run_id, "failed", error.run_folder, {"error": str(error)})
                )
            )
        else:
            err.print(f"[bold red]run {error.run_id} failed:[/] {escape(str(error))}")
            err.print(f"executed notebook: {error.run_folder}/executed.ipynb", markup=False)
        sys.exit(1)
    folder = Path(record.notebook).parent / ".nbprod" / "runs" / record.id
    if as_json:
        click.echo(
            json.dumps(
                _run_summary(
                    record.id,
                    record.status,
                    folder,
                    {
                        "metrics": record.metrics,
                        "artifacts": record.artifacts,
                        "duration": record.duration,
                    },
                )
            )
        )
        return
    out.print(
        f"[green]run {record.id} succeeded[/] in {record.duration or 0:.1f} s: "
        f"{escape(str(folder))}"
    )
    for name, value in record.metrics.items():
        out.print(f"  {name} = {value:.6g}", markup=False)
    for note in record.notes:
        out.print(f"  note: {note}", markup=False)


def _run_summary(
    run_id: str | None, status: str, folder: Any, extra: dict[str, Any]
) -> dict[str, Any]:
    return {"id": run_id, "status": status, "folder": str(folder), **extra}


def _sweep(
    notebook: Notebook,
    sets: list[dict[str, Any]],
    base: dict[str, Any],
    kernel: str | None,
    timeout: float | None,
    store: str | None,
    as_json: bool,
    executor_name: str,
    options: dict[str, Any],
    sweep_id: str | None,
) -> None:
    from nbprod.analysis.analyzer import analyze
    from nbprod.cli.display import SweepProgress, runs_table
    from nbprod.execution.executors import executor
    from nbprod.execution.sweep import plan, preload_modules, run_sweep
    from nbprod.runs.records import run_dir
    from nbprod.runs.store import first_metric

    analysis = analyze(notebook)
    specs = plan(
        notebook,
        sets,
        analysis=analysis,
        base=base,
        kernel=kernel,
        timeout=timeout,
        store=store,
        sweep_id=sweep_id,
    )
    if executor_name == "local" and options.get("fork"):
        options["preload"] = preload_modules(analysis)
    chosen = executor(executor_name, **options)
    show = not as_json and err.is_terminal
    progress = SweepProgress(err, len(specs))
    try:
        if show:
            with progress.shown():
                result = run_sweep(specs, chosen, progress.update, package=analysis.package)
        else:
            result = run_sweep(specs, chosen, package=analysis.package)
    except Cancelled as error:
        err.print(f"[yellow]{escape(str(error))}[/]: unfinished runs are marked cancelled")
        sys.exit(130)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "sweep_id": result.sweep_id,
                    "ok": result.ok,
                    "runs": [
                        {**r.to_json(), "folder": str(run_dir(Path(r.notebook), r.id))}
                        for r in result.records
                    ],
                },
                default=str,
            )
        )
    else:
        metric = first_metric(result.records)
        failed = sum(r.status != "succeeded" for r in result.records)
        out.print(
            runs_table(
                result.records,
                metric,
                title=f"{result.sweep_id}: {len(result.records)} runs, {failed} failed",
            )
        )
    if not result.ok:
        sys.exit(1)


def _configured_scheduler(notebook: Path) -> str | None:
    from nbprod.config import configured

    address = configured(notebook, "dask.address")
    return str(address) if address else None
