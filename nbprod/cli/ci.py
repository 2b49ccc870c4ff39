"""``nbprod ci``: set a repository up to test its notebooks (see nbprod.testing.ci).

Registered on the main command group at the end of nbprod.cli, which also turns the
errors raised here into messages and exit codes.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from nbprod.testing.ci import PROVIDERS, plan, write


@click.group()
def ci() -> None:
    """Continuous integration for the repository's notebooks."""


@ci.command("init")
@click.option(
    "--provider",
    "provider_name",
    default="github",
    show_default=True,
    help=f"CI service to write a workflow for: {', '.join(PROVIDERS)}.",
)
@click.option(
    "--repo",
    type=click.Path(path_type=Path),
    help="Repository to write into (default: the git repository of the current folder).",
)
@click.option(
    "--notebooks",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Folder or notebook for CI to test; repeatable (default: the folders holding "
    "notebooks with nbprod roles).",
)
@click.option(
    "--strip-outputs", is_flag=True, help="Also a pre-commit hook that strips outputs first."
)
@click.option("--force", is_flag=True, help="Replace files that exist.")
@click.option("--dry-run", is_flag=True, help="Print the files instead of writing them.")
def init(
    provider_name: str,
    repo: Path | None,
    notebooks: tuple[Path, ...],
    strip_outputs: bool,
    force: bool,
    dry_run: bool,
) -> None:
    """Write a CI workflow that runs `nbprod test`, and a pre-commit configuration that
    runs `nbprod check` on the notebooks being committed. Existing files are left alone
    unless --force is given."""
    # Imported here: nbprod.cli imports this module while it is being imported itself.
    from nbprod.cli.common import out

    setup = plan(repo, provider_name, list(notebooks), strip_outputs)
    if dry_run:
        for file in setup.files:
            state = "exists: --force replaces it" if file.exists else "would be written"
            click.echo(f"# ---- {file.relative} ({state}) ----")
            click.echo(file.text, nl=False)
        return
    write(setup, force)
    out.print(f"in {escape(str(setup.repo))}:")
    for file in setup.files:
        out.print(f"  [green]wrote[/] {escape(file.relative)}")
    out.print(
        f"{setup.provider.title} runs `{escape(setup.test_command)}` on "
        f"pushes to {escape(setup.branch)} and on pull requests."
    )
    out.print("next steps:")
    for number, step in enumerate(setup.next_steps, 1):
        out.print(f"  {number}. {step}", markup=False)
