"""The ``nbprod`` command line: parses arguments, calls the library, prints results.

The one place where errors become exit codes: 0 success, 1 problems found or a run
failed, 2 usage or file errors. Tracebacks are shown only with ``--debug``. With
``--json`` an error is also printed on stdout as ``{"error": {...}}`` for programs
(background jobs read it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from nbprod import __version__
from nbprod.exceptions import Cancelled, ExecutionFailed, NbprodError

# Piped output is read by people and scripts alike: do not cut tables at 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class NbprodGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NbprodError as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if ctx.obj and ctx.obj.get("json"):
                click.echo(json.dumps({"error": error.to_json()}, default=str))
            err.print(f"[bold red]error:[/] {escape(str(error))}")
            ctx.exit(error.exit_code)


def _remember_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.ensure_object(dict)["json"] = True
    return value


Decorated = TypeVar("Decorated", bound=Callable[..., Any])


def json_flag(help: str) -> Callable[[Decorated], Decorated]:
    """``--json``: the result as JSON on stdout, and errors too (see NbprodGroup)."""
    return click.option("--json", "as_json", is_flag=True, help=help, callback=_remember_json)


@click.group(cls=NbprodGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nbprod")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """From a tagged Jupyter notebook to a tested package that predicts what it predicted."""
    ctx.obj = {"debug": debug}


@main.command()
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
    from nbprod.notebook import load_notebook
    from nbprod.sweep import expand, parse_axis, read_grid

    base: dict[str, Any] = dict(load_notebook(notebook).settings.smoke) if smoke else {}
    axes = [parse_axis(text) for text in params]
    single = {name: values[0] for name, values in axes if len(values) == 1}
    sweep_axes = [(name, values) for name, values in axes if len(values) > 1]
    sets = read_grid(grid) if grid else [{}]
    sets = [{**s, **g} for s in sets for g in (expand(sweep_axes) if sweep_axes else [{}])]
    is_sweep = len(sets) > 1 or grid is not None or executor_name != "local" or workers or sweep_id
    if not is_sweep:
        _single_run(notebook, {**base, **single, **sets[0]}, kernel, timeout, store, as_json)
        return
    options: dict[str, Any] = {"workers": workers}
    if executor_name == "local":
        options["fork"] = not no_fork and kernel in (None, "python3")
    elif executor_name == "dask":
        options["scheduler"] = scheduler or _configured_scheduler(notebook)
    _sweep(
        notebook,
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
    notebook: Path,
    overrides: dict[str, Any],
    kernel: str | None,
    timeout: float | None,
    store: str | None,
    as_json: bool,
) -> None:
    from nbprod.execute import RunOptions, run_notebook

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
    notebook: Path,
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
    from nbprod.display import SweepProgress, runs_table
    from nbprod.executors import executor
    from nbprod.runs import run_dir
    from nbprod.store import first_metric
    from nbprod.sweep import plan, run_sweep

    specs = plan(
        notebook, sets, base=base, kernel=kernel, timeout=timeout, store=store, sweep_id=sweep_id
    )
    chosen = executor(executor_name, **options)
    show = not as_json and err.is_terminal
    progress = SweepProgress(err, len(specs))
    try:
        if show:
            with progress.shown():
                result = run_sweep(specs, chosen, progress.update)
        else:
            result = run_sweep(specs, chosen)
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


@main.command()
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option("--run", "run_id", required=True, help="Run id, latest, best:METRIC or min:METRIC.")
@click.option(
    "--version",
    "version",
    help="Package version, PEP 440 (default: 0.YYYYMMDD.HHMMSS+nb<hash>.r<run> from the run).",
)
@click.option(
    "--dist",
    type=click.Path(path_type=Path),
    default=Path("dist"),
    show_default=True,
    help="Folder to place the sdist and wheel in.",
)
@click.option(
    "--repository",
    metavar="URL_OR_NAME",
    help="Upload to this index with twine after the checks: an upload URL or a ~/.pypirc name.",
)
@click.option(
    "--index-url",
    metavar="URL",
    help="The index's PEP 503 simple URL, when it cannot be derived from --repository.",
)
@json_flag("Print the result as JSON (the steps still go to stderr).")
def publish(
    notebook: Path,
    run_id: str,
    version: str | None,
    dist: Path,
    repository: str | None,
    index_url: str | None,
    as_json: bool,
) -> None:
    """Build the run's package, verify it in a clean venv, upload it, then place it in DIST.

    Credentials for the upload are twine's: TWINE_USERNAME / TWINE_PASSWORD, ~/.pypirc
    or keyring. A version already in DIST or on the index is refused.
    """
    from dataclasses import asdict

    from nbprod.exceptions import UsageError
    from nbprod.publish import publish as publish_run
    from nbprod.targets import target

    if index_url and not repository:
        raise UsageError("--index-url is only used with --repository", "add --repository")
    targets = [target("folder", dist=dist)]
    if repository:
        targets.append(target("index", repository=repository, index_url=index_url))
    result = publish_run(
        notebook,
        run_id,
        version=version,
        targets=targets,
        on_step=lambda name: err.print(f"[cyan]•[/] {escape(name)}"),
    )
    if as_json:
        click.echo(json.dumps({**asdict(result), "files": [str(f) for f in result.files]}))
        return
    out.print(
        f"[green]published[/] {result.package} {result.version} (run {result.run_id}); "
        f"tests in a clean venv: {escape(result.tests)}"
    )
    for where in result.uploaded_to:
        out.print(f"  uploaded to {where}", markup=False)
    for file in result.files:
        out.print(f"  {file}", markup=False)


class RunsGroup(click.Group):
    """``nbprod runs [NOTEBOOK]`` lists; ``nbprod runs show|compare ...`` are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@main.group(cls=RunsGroup)
def runs() -> None:
    """List, show and compare recorded runs."""


def _store_for(notebook: Path | None, store: str | None) -> Any:
    from nbprod.store import existing_store

    return existing_store(notebook, store)


@runs.command("list")
@click.argument("notebook", type=click.Path(path_type=Path), required=False)
@click.option("--sort", "metric", help="Sort by this metric (best first).")
@click.option("--sweep", "sweep_id", help="Only the runs of this sweep.")
@click.option("--store", help="Run store path.")
@json_flag("Print the runs as JSON.")
def runs_list(
    notebook: Path | None,
    metric: str | None,
    sweep_id: str | None,
    store: str | None,
    as_json: bool,
) -> None:
    """List the runs (of NOTEBOOK, or every run in the store)."""
    from nbprod.display import runs_table
    from nbprod.store import first_metric, sort_runs

    path = notebook.resolve() if notebook else None
    records = _store_for(notebook, store).runs(path, sweep_id=sweep_id)
    metric = metric or first_metric(records)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in sort_runs(records, metric)], default=str))
        return
    out.print(runs_table(records, metric, title=f"{len(records)} runs"))


@runs.command("show")
@click.argument("run_id")
@click.option("--notebook", type=click.Path(path_type=Path), help="Notebook whose store to read.")
@click.option("--store", help="Run store path.")
@json_flag("Print the run as JSON.")
def runs_show(run_id: str, notebook: Path | None, store: str | None, as_json: bool) -> None:
    """Show one run (an id, latest, best:METRIC or min:METRIC)."""
    run_store = _store_for(notebook, store)
    record = run_store.select(run_id, notebook.resolve() if notebook else None)
    data = {**record.to_json(), "folder": str(run_store.folder(record.id))}
    if as_json:
        click.echo(json.dumps(data, default=str))
        return
    for key in ("id", "status", "notebook", "sweep_id", "folder", "duration"):
        out.print(f"{key:>10}: {data[key]}", markup=False)
    for title in ("parameters", "metrics", "artifacts", "error"):
        if data[title]:
            out.print(f"{title:>10}: {json.dumps(data[title])}", markup=False)


@runs.command("compare")
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--notebook", type=click.Path(path_type=Path), help="Notebook whose store to read.")
@click.option("--store", help="Run store path.")
@json_flag("Print the runs as JSON.")
def runs_compare(
    run_ids: tuple[str, ...], notebook: Path | None, store: str | None, as_json: bool
) -> None:
    """Parameters and metrics of several runs side by side."""
    from nbprod.display import comparison_table

    run_store = _store_for(notebook, store)
    path = notebook.resolve() if notebook else None
    records = run_store.compare(list(run_ids), path)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in records], default=str))
        return
    out.print(comparison_table(records))


@main.command()
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option("--run", "run_id", required=True, help="Run id, latest, best:METRIC or min:METRIC.")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder to write the package project into.",
)
@click.option("--force", is_flag=True, help="Replace the output folder if it exists.")
@click.option("--version", "version", help="Package version (default from the run's time).")
def extract(notebook: Path, run_id: str, output: Path, force: bool, version: str | None) -> None:
    """Write the package source of a run, with its artifacts and tests."""
    from nbprod.extract import extract as extract_package

    result = extract_package(notebook, run_id, output, force=force, version=version)
    for warning in result.warnings:
        err.print(f"warning: {warning}", markup=False)
    out.print(
        f"[green]extracted[/] package [bold]{result.package}[/] from run {result.run_id} "
        f"into {escape(str(result.path))}"
    )
    out.print(f"  install: pip install '{result.path}[test]'", markup=False)
    out.print(f"  test:    cd {result.path} && pytest", markup=False)


# Command groups kept in modules of their own; imported last, as they use this module.
from nbprod.cli_check import check  # noqa: E402
from nbprod.cli_ci import ci  # noqa: E402
from nbprod.cli_nbtest import test  # noqa: E402

main.add_command(check)
main.add_command(ci)
main.add_command(test)

if __name__ == "__main__":
    main()
