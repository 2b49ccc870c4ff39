"""``nbprod test PATHS...``: notebooks as tests without pytest (see nbprod.testing.nbtest).

Each notebook's stages run in order; a line per notebook on stderr as it finishes,
then a table (notebook, check, execute, parity, seconds) and the failures in full.
Exit code 0 when every notebook passed, 1 when one failed, 2 when there was nothing
to test, 130 on Ctrl-C. Registered on the main group at the end of nbprod.cli.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.table import Table

from nbprod.cli.common import err, json_flag, out
from nbprod.exceptions import Cancelled, UsageError
from nbprod.testing.discover import find_notebooks, has_roles

# nbprod.testing.nbtest imports the analysis (nbformat, IPython): only this command needs it.
if TYPE_CHECKING:
    from nbprod.testing.nbtest import NotebookResult

MARKS = {
    "passed": "[green]passed[/]",
    "failed": "[bold red]FAILED[/]",
    "not run": "[dim]not run[/]",
}


@click.command("test")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--all", "include_all", is_flag=True, help="Also execute notebooks without roles.")
@click.option("-x", "--exitfirst", is_flag=True, help="Stop after the first notebook that fails.")
@click.option(
    "--no-fork",
    is_flag=True,
    help="Start every kernel as a new process instead of forking warm ones.",
)
@click.option(
    "--timeout",
    type=float,
    metavar="SECONDS",
    help="Fail a notebook whose run takes longer (default: no limit).",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the extracted packages and executed copies of notebooks that pass.",
)
@json_flag("Print the results as JSON.")
def test(
    paths: tuple[Path, ...],
    include_all: bool,
    exitfirst: bool,
    no_fork: bool,
    timeout: float | None,
    keep: bool,
    as_json: bool,
) -> None:
    """Check, execute (smoke parameters) and parity-test notebooks; exit 1 if one fails.

    PATHS are notebooks or folders (default: the current folder). Folders are searched
    for notebooks with nbprod roles; notebooks without roles are executed with --all.
    """
    from nbprod.testing.nbtest import Tester

    selected = _select(paths or (Path("."),), include_all)
    results: list[NotebookResult] = []
    started = time.perf_counter()
    try:
        with Tester(fork=not no_fork, keep=keep, timeout=timeout) as tester:
            tester.expect(path for path, _ in selected)
            for path, tagged in selected:
                result = tester.test(path, tagged)
                results.append(result)
                _progress(result)
                if exitfirst and not result.ok:
                    break
    except Cancelled as error:
        err.print(f"[yellow]{escape(str(error))}[/]")
        _report(results, time.perf_counter() - started, as_json, len(selected) - len(results))
        sys.exit(130)
    _report(results, time.perf_counter() - started, as_json, len(selected) - len(results))
    if not all(result.ok for result in results):
        sys.exit(1)


def _select(paths: tuple[Path, ...], include_all: bool) -> list[tuple[Path, bool]]:
    """(notebook, has roles) for each notebook to test.

    A notebook named explicitly is tested even without roles: its check says to tag
    it (or, with --all, it is executed). One found in a folder needs roles or --all.
    """
    explicit = {path for path in paths if path.is_file()}
    selected = []
    for path in find_notebooks(paths):
        tagged = has_roles(path)
        if tagged or include_all:
            selected.append((path, tagged))
        elif path in explicit:
            selected.append((path, True))
    if not selected:
        where = ", ".join(str(path) for path in paths)
        raise UsageError(
            f"no notebook with nbprod roles under {where}",
            "tag cells with their roles, or pass --all to execute notebooks without roles",
        )
    return selected


def _progress(result: NotebookResult) -> None:
    stages = " ".join(f"{name} {MARKS[stage.status]}" for name, stage in result.stages.items())
    err.print(f"{escape(str(result.path))}: {stages} ({result.seconds:.1f} s)")


def _report(results: list[NotebookResult], seconds: float, as_json: bool, not_run: int = 0) -> None:
    from nbprod.testing.nbtest import STAGES

    if as_json:
        click.echo(json.dumps([result.to_json() for result in results], indent=2))
        return
    table = Table("notebook", *STAGES, "seconds")
    for result in results:
        cells = [MARKS[result.stages[s].status] if s in result.stages else "—" for s in STAGES]
        table.add_row(escape(str(result.path)), *cells, f"{result.seconds:.1f}")
    out.print(table)
    for result in results:
        for name, stage in result.stages.items():
            if stage.status == "failed":
                out.rule(f"{escape(str(result.path))}::{name}", style="red")
                out.print(stage.text, markup=False)
    failed = sum(not result.ok for result in results)
    summary = f"{len(results)} notebook{'s' * (len(results) != 1)}: "
    summary += f"{len(results) - failed} passed, {failed} failed in {seconds:.1f} s"
    if not_run:
        summary += f"; stopped there, {not_run} not run"
    out.print(f"[bold red]{summary}[/]" if failed else f"[green]{summary}[/]")
