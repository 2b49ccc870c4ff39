"""``nbprod runs list|show|compare|export``: the run store of a notebook."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from nbprod.cli.common import json_flag, out


class RunsGroup(click.Group):
    """``nbprod runs [NOTEBOOK]`` lists; ``nbprod runs show|compare ...`` are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group(cls=RunsGroup)
def runs() -> None:
    """List, show and compare recorded runs."""


def _store_for(notebook: Path | None, store: str | None) -> Any:
    from nbprod.runs.store import existing_store

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
    from nbprod.cli.display import runs_table
    from nbprod.runs.store import first_metric, sort_runs

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
    for reason in record.not_extractable:  # why no package can be made of this run
        out.print(f"not extractable: {reason}", markup=False)


@runs.command("compare")
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--notebook", type=click.Path(path_type=Path), help="Notebook whose store to read.")
@click.option("--store", help="Run store path.")
@json_flag("Print the runs as JSON.")
def runs_compare(
    run_ids: tuple[str, ...], notebook: Path | None, store: str | None, as_json: bool
) -> None:
    """Parameters and metrics of several runs side by side."""
    from nbprod.cli.display import comparison_table

    run_store = _store_for(notebook, store)
    path = notebook.resolve() if notebook else None
    records = run_store.compare(list(run_ids), path)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in records], default=str))
        return
    out.print(comparison_table(records))


@runs.command("export")
@click.argument("run_ids", nargs=-1)
@click.option("--mlflow", "to_mlflow", is_flag=True, help="Log the runs to MLflow.")
@click.option("--mlflow-uri", metavar="URI", help="MLflow tracking URI.")
@click.option(
    "--mlflow-experiment", metavar="NAME", help="MLflow experiment (default: the notebook's stem)."
)
@click.option("--sweep", "sweep_id", help="The runs of this sweep.")
@click.option("--notebook", type=click.Path(path_type=Path), help="Notebook whose runs to export.")
@click.option("--store", help="Run store path.")
@json_flag("Print what became of each run as JSON.")
def runs_export(
    run_ids: tuple[str, ...],
    to_mlflow: bool,
    mlflow_uri: str | None,
    mlflow_experiment: str | None,
    sweep_id: str | None,
    notebook: Path | None,
    store: str | None,
    as_json: bool,
) -> None:
    """Log recorded runs to MLflow: RUN_IDS (ids, latest, best:METRIC), the runs of
    --sweep, or every run (of --notebook). Runs the experiment holds already are
    skipped, so exporting twice logs nothing twice."""
    from nbprod.exceptions import RunNotFound, UsageError
    from nbprod.execution.mlflow import export_runs

    if not to_mlflow:
        raise UsageError("say where to export the runs", "nbprod runs export --mlflow ...")
    if run_ids and sweep_id:
        raise UsageError("give RUN_IDS or --sweep, not both")
    run_store = _store_for(notebook, store)
    path = notebook.resolve() if notebook else None
    if run_ids:
        records = run_store.compare(list(run_ids), path)
    else:
        records = run_store.runs(path, sweep_id=sweep_id)
    if not records:
        raise RunNotFound("no runs to export", "nbprod runs --sweep ID lists a sweep's runs")
    trackers = export_runs(
        records, run_store, tracking_uri=mlflow_uri, experiment=mlflow_experiment
    )
    rows = [
        {**vars(outcome), "experiment": tracker.experiment, "tracking_uri": tracker.tracking_uri}
        for tracker in trackers
        for outcome in tracker.outcomes
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        into = f"MLflow run {row['mlflow_run_id']}" if row["mlflow_run_id"] else ""
        out.print(f"{row['run_id']}: {row['outcome']} {into}".rstrip(), markup=False)
    for tracker in trackers:
        counts = [o.outcome for o in tracker.outcomes]
        out.print(
            f"{counts.count('logged')} logged, {counts.count('already logged')} already logged, "
            f"{counts.count('not finished')} not finished: experiment {tracker.experiment!r} "
            f"at {tracker.tracking_uri}",
            markup=False,
        )
