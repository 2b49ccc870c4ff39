"""``nbprod check PATH...``: the static check of notebooks, for people and pre-commit.

One notebook: its problems and warnings, then one line saying whether it can be
extracted. Several notebooks or folders: every line starts with the notebook's path
(as ruff and flake8 do, for editors and CI logs), then a summary. Registered on the
main group at the end of nbprod.cli, which turns errors into exit codes.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from nbprod.cli.common import json_flag, out
from nbprod.exceptions import NbprodError

# The analysis is imported by the commands that use it: it imports nbformat (whose
# jsonschema takes a second to import) and IPython, which `nbprod --help` and a
# pre-commit check of notebooks without roles do not need.
if TYPE_CHECKING:
    from nbprod.analysis.analyzer import Analysis, Problem


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--tagged-only",
    is_flag=True,
    help="Skip notebooks without nbprod roles instead of reporting them (pre-commit hooks).",
)
@json_flag("Print the analysis as JSON (for several notebooks, a list of them).")
def check(paths: tuple[Path, ...], tagged_only: bool, as_json: bool) -> None:
    """Check the tagged cells of notebooks statically (no code is run).

    PATHS are notebooks or folders. Folders are searched like pytest collects tests
    (hidden folders, virtual environments, build output and .nbprod are skipped) and
    only the notebooks in them with nbprod roles are checked. With several notebooks
    every line starts with the notebook's path, and a summary ends the report.
    """
    from nbprod.testing.discover import has_roles

    single = paths[0] if len(paths) == 1 and not paths[0].is_dir() else None
    if single is None or (tagged_only and not has_roles(single)):
        _check_many(paths, tagged_only, as_json)
        return
    analysis = _analyze(single)
    if as_json:
        click.echo(json.dumps(analysis.to_json(), indent=2))
    else:
        _print_check(analysis)
    if not analysis.ok:
        sys.exit(1)


def _analyze(path: Path) -> Analysis:
    # Imported here, not at the top: see the note on the imports.
    from nbprod.analysis.analyzer import analyze
    from nbprod.notebook import load_notebook

    return analyze(load_notebook(path))


@dataclass
class _Checked:
    """One notebook of ``nbprod check PATH...``: its analysis, the error that stopped
    reading it, or neither when it was skipped for having no roles."""

    path: Path
    analysis: Analysis | None = None
    error: NbprodError | None = None

    @property
    def outcome(self) -> str:
        if self.error is not None:
            return "could not be read"
        if self.analysis is None:
            return "skipped"
        return "ok" if self.analysis.ok else "with problems"

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return self.error.exit_code
        return 0 if self.analysis is None or self.analysis.ok else 1

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": str(self.path), "error": self.error.to_json()}
        if self.analysis is None:
            return {"path": str(self.path), "skipped": "no cell has an nbprod role"}
        return {"path": str(self.path), **self.analysis.to_json()}


def _check_many(paths: tuple[Path, ...], tagged_only: bool, as_json: bool) -> None:
    results = []
    for checked in _checked(paths, tagged_only):
        results.append(checked)
        if not as_json:
            _print_checked(checked)
    if as_json:
        click.echo(json.dumps([checked.to_json() for checked in results], indent=2))
    else:
        _print_summary(results)
    code = max((checked.exit_code for checked in results), default=0)
    if code:
        sys.exit(code)


def _checked(paths: tuple[Path, ...], tagged_only: bool) -> Iterator[_Checked]:
    """The notebooks PATHS name, each once (paths that do not exist first), checked.

    A notebook without roles is skipped when it was found in a folder or with
    ``--tagged-only``; named itself without the flag it is checked, and its check says
    that no cell has a role. A file that cannot be read is reported, not raised.
    """
    from nbprod.testing.discover import find_notebooks, has_roles

    named: dict[Path, bool] = {}  # notebook -> named itself, not only found in a folder
    for given in paths:
        try:
            found = find_notebooks([given])
        except NbprodError as error:
            yield _Checked(given, error=error)
            continue
        itself = not given.is_dir()
        for notebook in found:
            named[notebook] = named.get(notebook, False) or itself
    for notebook, itself in named.items():
        if (tagged_only or not itself) and not has_roles(notebook):
            yield _Checked(notebook)
            continue
        try:
            analysis = _analyze(notebook)
        except NbprodError as error:
            yield _Checked(notebook, error=error)
        else:
            yield _Checked(notebook, analysis=analysis)


def _print_checked(checked: _Checked) -> None:
    """Every line prefixed by the notebook's path, as ruff and flake8 do for editors."""
    where = f"{checked.path}: "
    if checked.analysis is not None:
        _print_problems(checked.analysis, where)
    elif checked.error is not None:
        message, path = checked.error.message, str(checked.path)
        if message.startswith(path):  # reading errors name the file, as the prefix does
            message = message[len(path) :].lstrip(": ")
        out.print(f"{where}{message}", markup=False)
        if checked.error.hint:
            out.print(f"  fix: {checked.error.hint}", markup=False)


def _print_summary(results: list[_Checked]) -> None:
    counts = Counter(checked.outcome for checked in results)
    parts = [f"{counts['ok']} ok", f"{counts['with problems']} with problems"]
    if counts["could not be read"]:
        parts.append(f"{counts['could not be read']} could not be read")
    parts.append(f"{counts['skipped']} skipped (no roles)")
    total = len(results)
    out.print(f"{total} notebook{'s' * (total != 1)}: {', '.join(parts)}", markup=False)


def _print_check(analysis: Analysis) -> None:
    _print_problems(analysis, "")
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
        f"[bold]{analysis.package}[/]; entry point "
        f"{escape(entry.signature) if entry else '?'}; artifacts: {escape(artifacts)}"
        + (f"; {warnings} warning{'s' * (warnings != 1)}" if warnings else "")
    )


def _print_problems(analysis: Analysis, where: str) -> None:
    for problem in analysis.errors:
        _print_problem(problem, where, "")
    for problem in analysis.warnings:
        _print_problem(problem, where, "warning: ")


def _print_problem(problem: Problem, where: str, prefix: str) -> None:
    cell = f"cell {problem.cell} ({problem.role or 'untagged'})"
    cell += f", line {problem.line}" if problem.line else ""
    out.print(f"{where}{cell}: {prefix}{problem.message}", markup=False)
    if problem.hint:
        out.print(f"  fix: {problem.hint}", markup=False)
