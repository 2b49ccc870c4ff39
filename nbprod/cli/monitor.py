"""``nbprod monitor``: a package's prediction logs against its training profile, from the
data scientist's side: the package's own ``monitor`` code, run on an extracted package
folder or a built wheel (read as a zip, not installed)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import click

from nbprod.cli.common import err, json_flag
from nbprod.exceptions import UsageError

DRIFTED = 3  # the exit status of drift, as `<pkg> monitor` has it


@click.command()
@click.argument("package", type=click.Path(path_type=Path))
@click.argument("logs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--since", metavar="TIME", help="From: ISO 8601, or back from now (24h, 7d).")
@click.option("--until", metavar="TIME", help="To: ISO 8601, or back from now.")
@click.option(
    "--html", type=click.Path(path_type=Path), help="Also write a self-contained HTML report."
)
@json_flag("Print the report as JSON.")
@click.pass_context
def monitor(
    ctx: click.Context,
    package: Path,
    logs: tuple[Path, ...],
    since: str | None,
    until: str | None,
    html: Path | None,
    as_json: bool,
) -> None:
    """Compare the prediction logs LOGS (files or folders) of PACKAGE (an extracted package
    folder or a wheel) with its training profile. Exit status: 0 no drift, 3 drift."""
    from nbprod.runtime.monitor import drift_report

    profile, thresholds = package_reference(package)
    try:
        report = drift_report(list(logs), profile, thresholds, since=since, until=until)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from error
    if html is not None:
        html.write_text(report.to_html(), encoding="utf-8")
    click.echo(report.to_json() if as_json else str(report))
    if html is not None and not as_json:
        err.print(f"report: {html}", markup=False)
    if report.drifted:
        ctx.exit(DRIFTED)


def package_reference(package: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The training profile and the drift thresholds a package ships (``profile.json``
    and ``monitor.json`` beside its code): from a wheel, a project folder (``src/<pkg>``)
    or the package folder itself."""
    if package.is_file() and package.suffix == ".whl":
        return _from_wheel(package)
    if package.is_dir():
        found = [package / "profile.json"] if (package / "profile.json").is_file() else []
        found = found or sorted(package.glob("src/*/profile.json"))
        if len(found) == 1:
            monitor = found[0].with_name("monitor.json")
            thresholds = monitor.read_bytes() if monitor.is_file() else None
            return _read(found[0].read_bytes(), found[0]), _thresholds(thresholds)
    if not package.exists():
        raise UsageError(f"{package}: no such file or folder")
    raise UsageError(
        f"{package} is not a package nbprod extracted, nor its wheel: it has no profile.json",
        "give the folder `nbprod extract` wrote, or the .whl `nbprod publish` built",
    )


def _from_wheel(wheel: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            profiles = [n for n in names if n.count("/") == 1 and n.endswith("/profile.json")]
            if len(profiles) != 1:
                raise UsageError(f"{wheel} holds no package of nbprod's: it has no profile.json")
            monitor = profiles[0].replace("profile.json", "monitor.json")
            thresholds = archive.read(monitor) if monitor in names else None
            return _read(archive.read(profiles[0]), wheel), _thresholds(thresholds)
    except zipfile.BadZipFile as error:
        raise UsageError(f"{wheel} is not a wheel: {error}") from error


def _read(data: bytes, where: Path) -> dict[str, Any]:
    profile = json.loads(data)
    if profile is None:
        raise UsageError(
            f"{where}: the package carries no training profile (its run recorded none)",
            "extract the package again from a run made with a current nbprod",
        )
    if not isinstance(profile, dict):
        raise UsageError(f"{where}: profile.json is not a training profile")
    return profile


def _thresholds(data: bytes | None) -> dict[str, Any]:
    thresholds = json.loads(data) if data else None
    return thresholds if isinstance(thresholds, dict) else {}
