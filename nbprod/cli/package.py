"""``nbprod extract`` and ``nbprod publish``: a run's package, written out or published."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape

from nbprod.cli.common import err, json_flag, out

onnx_flag = click.option(
    "--onnx/--no-onnx",
    default=False,
    help="Also ship each model converted to ONNX, used when it predicts what the notebook "
    "did (needs nbprod[onnx]).",
)


@click.command()
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
@onnx_flag
def extract(
    notebook: Path, run_id: str, output: Path, force: bool, version: str | None, onnx: bool
) -> None:
    """Write the package source of a run, with its artifacts and tests."""
    from nbprod.extract import extract as extract_package

    result = extract_package(notebook, run_id, output, force=force, version=version, onnx=onnx)
    for warning in result.warnings:
        err.print(f"warning: {warning}", markup=False)
    out.print(
        f"[green]extracted[/] package [bold]{result.package}[/] from run {result.run_id} "
        f"into {escape(str(result.path))}"
    )
    out.print(f"  install: pip install '{result.path}[test]'", markup=False)
    out.print(f"  test:    cd {result.path} && pytest", markup=False)


@click.command()
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
@onnx_flag
@json_flag("Print the result as JSON (the steps still go to stderr).")
def publish(
    notebook: Path,
    run_id: str,
    version: str | None,
    dist: Path,
    repository: str | None,
    index_url: str | None,
    onnx: bool,
    as_json: bool,
) -> None:
    """Build the run's package, verify it in a clean venv, upload it, then place it in DIST.

    Credentials for the upload are twine's: TWINE_USERNAME / TWINE_PASSWORD, ~/.pypirc
    or keyring. A version already in DIST or on the index is refused.
    """
    from dataclasses import asdict

    from nbprod.exceptions import UsageError
    from nbprod.publish.flow import publish as publish_run
    from nbprod.publish.targets import target

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
        onnx=onnx,
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
