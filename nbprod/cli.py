"""The ``nbprod`` command line: parses arguments, calls the library, prints results.

The one place where errors become exit codes: 0 success, 1 problems found or a run
failed, 2 usage or file errors. Tracebacks are shown only with ``--debug``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from . import __version__
from .analysis import Analysis, Problem, analyze
from .exceptions import ExecutionFailed, NbprodError
from .notebook import load_notebook

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class NbprodGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NbprodError as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            err.print(f"[bold red]error:[/] {escape(str(error))}")
            ctx.exit(error.exit_code)


@click.group(cls=NbprodGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nbprod")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """From a tagged Jupyter notebook to a tested package that predicts what it predicted."""
    ctx.obj = {"debug": debug}


@main.command()
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the analysis as JSON.")
def check(notebook: Path, as_json: bool) -> None:
    """Check the tagged cells statically (no code is run)."""
    analysis = analyze(load_notebook(notebook))
    if as_json:
        click.echo(json.dumps(analysis.to_json(), indent=2))
    else:
        _print_check(analysis)
    if not analysis.ok:
        sys.exit(1)


def _print_check(analysis: Analysis) -> None:
    for problem in analysis.errors:
        _print_problem(problem, "")
    for problem in analysis.warnings:
        _print_problem(problem, "warning: ")
    errors, warnings = len(analysis.errors), len(analysis.warnings)
    name = escape(analysis.notebook.path.name)
    if errors:
        out.print(
            f"[red]{errors} problem{'s' * (errors != 1)}[/], {warnings} warning"
            f"{'s' * (warnings != 1)}: {name} cannot be extracted yet"
        )
        return
    entry = analysis.entry
    artifacts = ", ".join(analysis.artifacts) or "none"
    out.print(
        f"[green]ok[/]: {name} can be extracted as package "
        f"[bold]{analysis.notebook.package_name}[/]; entry point "
        f"{escape(entry.signature) if entry else '?'}; artifacts: {escape(artifacts)}"
        + (f"; {warnings} warning{'s' * (warnings != 1)}" if warnings else "")
    )


def _print_problem(problem: Problem, prefix: str) -> None:
    where = f"cell {problem.cell} ({problem.role or 'untagged'})"
    where += f", line {problem.line}" if problem.line else ""
    out.print(f"{where}: {prefix}{problem.message}", markup=False)
    if problem.hint:
        out.print(f"  fix: {problem.hint}", markup=False)


@main.command()
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set a parameter (VALUE is a Python literal). Repeatable.",
)
@click.option("--smoke", is_flag=True, help="Use the smoke parameters of metadata.nbprod.")
@click.option("--kernel", help="Kernel name (default: this Python).")
@click.option("--timeout", type=float, help="Seconds one cell may run.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the run's id, status and folder as JSON."
)
def run(
    notebook: Path,
    params: tuple[str, ...],
    smoke: bool,
    kernel: str | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Execute the notebook once with papermill and record the run."""
    from .execute import parse_parameter, run_notebook

    overrides: dict[str, Any] = {}
    if smoke:
        overrides.update(load_notebook(notebook).settings.smoke)
    overrides.update(dict(parse_parameter(text) for text in params))
    try:
        record = run_notebook(notebook, overrides, kernel=kernel, timeout=timeout)
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


@main.command()
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option("--run", "run_id", required=True, help="Run id (or 'latest').")
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
    from .extract import extract as extract_package

    result = extract_package(notebook, run_id, output, force=force, version=version)
    for warning in result.warnings:
        err.print(f"warning: {warning}", markup=False)
    out.print(
        f"[green]extracted[/] package [bold]{result.package}[/] from run {result.run_id} "
        f"into {escape(str(result.path))}"
    )
    out.print(f"  install: pip install '{result.path}[test]'", markup=False)
    out.print(f"  test:    cd {result.path} && pytest", markup=False)


if __name__ == "__main__":
    main()
