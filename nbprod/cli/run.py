"""``nbprod run``: one run of a notebook, or a sweep over a parameter grid."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from nbprod.cli.common import err, json_flag, out
from nbprod.exceptions import Cancelled, ExecutionFailed, UsageError

if TYPE_CHECKING:
    from nbprod.execution.mlflow import MlflowTracker
    from nbprod.notebook import Notebook
    from nbprod.runs.records import RunRecord


class RunCommand(click.Command):
    """``run`` also takes papermill's spelling of a parameter, ``-p NAME VALUE`` (two
    words), beside nbprod's ``-p NAME=VALUE``: the two-word form is rewritten to the
    hidden ``--parameter-pair`` before click parses the line."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rewritten: list[str] = []
        position = 0
        while position < len(args):
            word = args[position]
            following = args[position + 1 : position + 3]
            if word in ("-p", "--param", "--parameters") and len(following) == 2:
                name = following[0]
                if "=" not in name and name.isidentifier():
                    rewritten += ["--parameter-pair", *following]
                    position += 3
                    continue
            if word == "--":
                rewritten += args[position:]
                break
            rewritten.append(word)
            position += 1
        return super().parse_args(ctx, rewritten)


@click.command(cls=RunCommand)
@click.argument("notebook", type=click.Path(path_type=Path))
@click.argument("output", required=False)
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE[,VALUE...] | NAME VALUE",
    help="Set a parameter (Python literals); several values make a sweep axis. "
    "papermill's -p NAME VALUE sets one value.",
)
@click.option("--parameter-pair", "pairs", nargs=2, multiple=True, hidden=True)
@click.option(
    "-r",
    "--parameters-raw",
    "raw",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="Set a parameter to VALUE as a string, as papermill's -r does.",
)
@click.option(
    "-f",
    "--parameters-file",
    "yaml_files",
    multiple=True,
    metavar="FILE",
    help="Parameters from a YAML file (papermill's -f; any path papermill reads).",
)
@click.option(
    "-y",
    "--parameters-yaml",
    "yaml_texts",
    multiple=True,
    metavar="YAML",
    help="Parameters as YAML.",
)
@click.option(
    "-b",
    "--parameters-base64",
    "yaml_base64",
    multiple=True,
    metavar="BASE64",
    help="Parameters as base64-encoded YAML.",
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
@click.option("-k", "--kernel", help="Kernel name (default: this Python).")
@click.option("--timeout", type=float, help="Seconds a run may take (all cells together).")
@click.option("--execution-timeout", type=float, help="Seconds any one cell may take.")
@click.option(
    "--start-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to start a kernel.",
)
@click.option("--cwd", help="The kernel's working folder (default: the notebook's).")
@click.option("--log-output", is_flag=True, help="Print the cells' output as they run (stderr).")
@click.option("--report-mode", is_flag=True, help="Hide the input cells of the executed notebook.")
@click.option(
    "--prepare-only",
    is_flag=True,
    help="Write OUTPUT with the parameters injected, without running it (nothing recorded).",
)
@click.option("--store", help="Run store path (default: .nbprod/runs.db beside the notebook).")
@click.option(
    "--sweep-id",
    help="Record the runs under this sweep id (makes it a sweep, even of one run).",
)
@click.option(
    "--mlflow/--no-mlflow",
    "mlflow",
    default=None,
    help="Also log the runs to MLflow (default: on when [tool.nbprod] mlflow or "
    "$MLFLOW_TRACKING_URI is set; --no-mlflow turns it off).",
)
@click.option("--mlflow-uri", metavar="URI", help="MLflow tracking URI (implies --mlflow).")
@click.option(
    "--mlflow-experiment",
    metavar="NAME",
    help="MLflow experiment (default: the notebook's stem; implies --mlflow).",
)
@json_flag("Print the runs as JSON.")
def run(
    notebook: Path,
    output: str | None,
    params: tuple[str, ...],
    pairs: tuple[tuple[str, str], ...],
    raw: tuple[tuple[str, str], ...],
    yaml_files: tuple[str, ...],
    yaml_texts: tuple[str, ...],
    yaml_base64: tuple[str, ...],
    grid: Path | None,
    smoke: bool,
    workers: int | None,
    no_fork: bool,
    executor_name: str,
    scheduler: str | None,
    kernel: str | None,
    timeout: float | None,
    execution_timeout: float | None,
    start_timeout: float,
    cwd: str | None,
    log_output: bool,
    report_mode: bool,
    prepare_only: bool,
    store: str | None,
    sweep_id: str | None,
    mlflow: bool | None,
    mlflow_uri: str | None,
    mlflow_experiment: str | None,
    as_json: bool,
) -> None:
    """Execute the notebook with papermill, once or as a sweep over parameter values, and
    record the run; OUTPUT (a path or any URL papermill writes) gets a copy of the
    executed notebook. Any notebook runs: one nbprod cannot make a package of (no roles,
    check problems) is recorded as not extractable, with the reasons."""
    from nbprod.execution.sweep import expand, parse_axis, read_grid
    from nbprod.notebook import load_notebook

    loaded = load_notebook(notebook)  # loaded (and below analysed) once, then handed down
    base: dict[str, Any] = dict(loaded.settings.smoke) if smoke else {}
    base.update(papermill_parameters(pairs, raw, yaml_files, yaml_texts, yaml_base64))
    axes = [parse_axis(text) for text in params]
    single = {name: values[0] for name, values in axes if len(values) == 1}
    sweep_axes = [(name, values) for name, values in axes if len(values) > 1]
    sets = read_grid(grid) if grid else [{}]
    sets = [{**s, **g} for s in sets for g in (expand(sweep_axes) if sweep_axes else [{}])]
    is_sweep = bool(
        len(sets) > 1 or grid is not None or executor_name != "local" or workers or sweep_id
    )
    papermill = {
        "execution_timeout": execution_timeout,
        "start_timeout": start_timeout,
        "cwd": cwd,
        "log_output": log_output,
        "report_mode": report_mode,
    }
    if prepare_only:
        parameters = {**base, **single, **sets[0]}
        _prepare_only(loaded, output, parameters, kernel, report_mode, is_sweep)
        return
    tracker = _mlflow_tracker(loaded.path, store, mlflow, mlflow_uri, mlflow_experiment)
    if not is_sweep:
        overrides = {**base, **single, **sets[0]}
        _single_run(loaded, overrides, kernel, timeout, store, as_json, output, papermill, tracker)
        return
    if output:
        raise UsageError(
            "OUTPUT names one executed notebook, and a sweep makes one per run",
            "leave OUTPUT out: each run's executed notebook is in its folder (nbprod runs show)",
        )
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
        papermill,
        tracker,
    )


def _mlflow_tracker(
    notebook: Path,
    store: str | None,
    enabled: bool | None,
    tracking_uri: str | None,
    experiment: str | None,
) -> MlflowTracker | None:
    """The MLflow tracker of this command, or None when MLflow logging is off."""
    from nbprod.execution.mlflow import MlflowTracker, destination

    where = destination(notebook, enabled=enabled, tracking_uri=tracking_uri, experiment=experiment)
    return None if where is None else MlflowTracker(notebook, where, store)


def _mlflow_warning(tracker: MlflowTracker | None) -> None:
    if tracker is not None and tracker.failure is not None:
        err.print(
            f"warning: {tracker.failure} (the runs are in nbprod's store: "
            "nbprod runs export --mlflow logs them later)",
            markup=False,
        )


def papermill_parameters(
    pairs: tuple[tuple[str, str], ...],
    raw: tuple[tuple[str, str], ...],
    yaml_files: tuple[str, ...],
    yaml_texts: tuple[str, ...],
    yaml_base64: tuple[str, ...],
) -> dict[str, Any]:
    """Parameters given as papermill gives them, merged in papermill's order: base64,
    files, YAML, ``-p NAME VALUE`` (typed as papermill types them), ``-r`` (strings)."""
    import base64

    merged: dict[str, Any] = {}
    sources: list[tuple[str, Any]] = [
        *(("-b", lambda text=text: base64.b64decode(text, validate=True)) for text in yaml_base64),
        *(("-f " + path, lambda path=path: _read_yaml_file(path)) for path in yaml_files),
        *(("-y", lambda text=text: text) for text in yaml_texts),
    ]
    for where, read in sources:
        try:
            loaded = read()
            values = _safe_yaml(loaded) if isinstance(loaded, str | bytes) else loaded
        except Exception as error:  # YAML, base64, or the storage papermill reads from
            raise UsageError(
                f"the parameters of {where} cannot be read: {type(error).__name__}: {error}",
                "give a mapping of names to values, e.g. alpha: 0.5",
            ) from error
        if values is None:
            continue
        if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
            raise UsageError(
                f"the parameters of {where} are not a mapping of names to values",
                "e.g. alpha: 0.5",
            )
        merged.update(values)
    if pairs:
        from papermill.cli import _resolve_type  # papermill takes half a second to import

        merged.update({name: _resolve_type(value) for name, value in pairs})
    merged.update(dict(raw))
    return merged


def _prepare_only(
    notebook: Notebook,
    output: str | None,
    parameters: dict[str, Any],
    kernel: str | None,
    report_mode: bool,
    is_sweep: bool,
) -> None:
    from nbprod.execution.execute import prepare_only

    if output is None or is_sweep:
        raise UsageError(
            "--prepare-only writes one notebook with its parameters injected to OUTPUT",
            "name OUTPUT, and give one value per parameter",
        )
    prepare_only(notebook, output, parameters, kernel, report_mode)
    out.print(f"prepared {output} (not run)", markup=False)


def _read_yaml_file(path: str) -> Any:
    from papermill.iorw import read_yaml_file  # any storage papermill reads

    return read_yaml_file(path)


def _safe_yaml(text: str | bytes) -> Any:
    import yaml

    return yaml.safe_load(text)


def _single_run(
    notebook: Notebook,
    overrides: dict[str, Any],
    kernel: str | None,
    timeout: float | None,
    store: str | None,
    as_json: bool,
    output: str | None,
    papermill: dict[str, Any],
    tracker: MlflowTracker | None = None,
) -> None:
    from nbprod.execution.execute import RunOptions, run_notebook

    options = RunOptions(kernel=kernel, timeout=timeout, store=store, output=output, **papermill)
    try:
        record = run_notebook(notebook, overrides, options)
    except Cancelled as error:
        err.print(f"[yellow]{escape(str(error))}[/]")
        sys.exit(130)
    except ExecutionFailed as error:
        if tracker is not None and error.run_id:
            tracker.log_stored(error.run_id)
            _mlflow_warning(tracker)
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
    if tracker is not None:
        tracker.log_stored(record.id)
        _mlflow_warning(tracker)
    folder = Path(record.notebook).parent / ".nbprod" / "runs" / record.id
    if not record.extractable:
        err.print(f"warning: {not_extractable_line(record)}", markup=False)
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
                        "extractable": record.extractable,
                        "not_extractable": record.not_extractable,
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


def not_extractable_line(record: RunRecord) -> str:
    """One line saying why a run cannot become a package: its first reason, and how many."""
    first = record.not_extractable[0].splitlines()[0]
    more = len(record.not_extractable) - 1
    also = f" (and {more} more: nbprod check {record.notebook})" if more else ""
    return f"run {record.id} is not extractable: {first}{also}"


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
    papermill: dict[str, Any],
    tracker: MlflowTracker | None = None,
) -> None:
    from nbprod.analysis.analyzer import analyze
    from nbprod.cli.display import SweepProgress, runs_table
    from nbprod.execution.executors import executor
    from nbprod.execution.sweep import new_sweep_id, plan, preload_modules, run_sweep
    from nbprod.runs.records import run_dir
    from nbprod.runs.store import first_metric

    analysis = analyze(notebook)
    if executor_name == "local" and options.get("fork"):
        options["preload"] = preload_modules(analysis)
    chosen = executor(executor_name, **options)
    sweep_id = sweep_id or new_sweep_id()
    start = getattr(chosen, "start", None)
    if callable(start):  # the fork server imports and the workers start meanwhile
        start(str(notebook.path), sweep_id, len(sets) or 1)
    recorded = tracker.log if tracker is not None else None  # each run as it ends
    show = not as_json and err.is_terminal
    progress = SweepProgress(err, len(sets) or 1)
    try:
        specs = plan(
            notebook,
            sets,
            analysis=analysis,
            base=base,
            kernel=kernel,
            timeout=timeout,
            store=store,
            sweep_id=sweep_id,
            papermill=papermill,
        )
        if show:
            with progress.shown():
                result = run_sweep(
                    specs, chosen, progress.update, package=analysis.package, on_recorded=recorded
                )
        else:
            result = run_sweep(specs, chosen, package=analysis.package, on_recorded=recorded)
    except Cancelled as error:
        if tracker is not None:
            tracker.finish_sweep(sweep_id)
            _mlflow_warning(tracker)
        err.print(f"[yellow]{escape(str(error))}[/]: unfinished runs are marked cancelled")
        sys.exit(130)
    finally:
        close = getattr(chosen, "close", None)
        if callable(close):
            close()
    if tracker is not None:
        tracker.finish_sweep(result.sweep_id)
        _mlflow_warning(tracker)
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
