"""Where a verified package goes: publish targets, their registry, and the dist folder.

Targets form a registry (``TARGETS``) that other packages extend through the
``nbprod.publish_targets`` entry point group. A target refuses a version it already
holds before anything is built, and takes the files once every check has passed.
This module also holds what every target shares: ``PublishFailed``, and
``run_step``, which runs one step as a subprocess and keeps twine's password out of
its output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

from nbprod.exceptions import NbprodError, OutputExists, UsageError

Step = Callable[[str], None]

UNCHANGED = "the dist folder was not changed"


class PublishTarget(Protocol):
    @property
    def name(self) -> str:
        """The name the target is registered under."""

    def describe(self) -> str:
        """The delivery as steps and messages show it, e.g. ``upload to URL``."""

    def refuse_existing(self, distribution: str, version: str, step: Step) -> None:
        """Raise ``OutputExists`` if ``version`` is already there; runs before anything is
        built. A check that takes time (a network request) announces itself with ``step``."""

    def deliver(self, files: list[Path], version: str) -> str | None:
        """Put the sdist and wheel there; return where they went, to show, or None.
        A failure raises ``PublishFailed`` with ``describe()`` as its step."""


class PublishFailed(NbprodError):
    """A publishing step failed; ``output`` holds what the step printed."""

    def __init__(self, step: str, output: str, hint: str | None = None) -> None:
        self.step = step
        self.output = output
        tail = "\n".join(line.rstrip() for line in output.strip().splitlines()[-40:])
        super().__init__(
            f"publishing stopped at step '{step}':\n{tail}",
            hint or f"fix the cause above; {UNCHANGED}",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.step, self.output, self.hint))

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "step": self.step, "output": self.output}


def run_step(
    step: str,
    command: list[str],
    cwd: Path | None = None,
    *,
    credentials: bool = False,
    secrets: Iterable[str | None] = (),
) -> str:
    """Run one step; only an upload (``credentials``) sees twine's password."""
    env = {**os.environ, "PYTHONNOUSERSITE": "1"}
    if not credentials:
        env.pop("TWINE_PASSWORD", None)
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    hidden = [os.environ.get("TWINE_PASSWORD"), *secrets]
    if result.returncode != 0:
        raise PublishFailed(step, _scrub(result.stdout + result.stderr, hidden))
    return _scrub(result.stdout, hidden)


def _scrub(text: str, secrets: Iterable[str | None]) -> str:
    """Twine never prints a password; make sure no output nbprod shows can either."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    return text


def releases(files: Iterable[str], distribution: str) -> set[Version]:
    """The versions of ``distribution`` among wheel and sdist file names."""
    wanted = canonicalize_name(distribution)
    found: set[Version] = set()
    for file in files:
        try:
            if file.endswith(".whl"):
                name, version, _, _ = parse_wheel_filename(file)
            elif file.endswith((".tar.gz", ".zip")):
                name, version = parse_sdist_filename(file)
            else:
                continue
        except ValueError:  # not a distribution file name
            continue
        if name == wanted:
            found.add(version)
    return found


def already_published(distribution: str, version: str, where: str) -> OutputExists:
    """The one answer to a version that is already published, wherever it is."""
    return OutputExists(
        f"{distribution} {version} is already {where}",
        "a published version is never overwritten: pass --version with a new version",
    )


class Folder:
    """The dist folder: it receives the files last, so it only holds versions that
    reached every other target (``publish`` orders the deliveries)."""

    name = "folder"

    def __init__(self, dist: str | Path = "dist") -> None:
        self.path = Path(dist).resolve()

    def describe(self) -> str:
        return f"place the files in {self.path}"

    def refuse_existing(self, distribution: str, version: str, step: Step) -> None:
        if self.path.is_dir() and Version(version) in releases(
            (p.name for p in self.path.iterdir()), distribution
        ):
            raise already_published(distribution, version, f"in {self.path}")

    def deliver(self, files: list[Path], version: str) -> str:
        """Copy under temporary names, then rename: no half-written files."""
        self.path.mkdir(parents=True, exist_ok=True)
        for file in files:
            partial = self.path / f".{file.name}.partial"
            shutil.copyfile(file, partial)
            os.replace(partial, self.path / file.name)
        return str(self.path)


def _index(**options: Any) -> PublishTarget:
    # nbprod.publish.index builds on this module; imported on use, which also keeps twine's
    # imports off the path of a publish without an index.
    from nbprod.publish.index import resolve_index

    return resolve_index(**options)


TargetFactory = Callable[..., PublishTarget]
TARGETS: dict[str, TargetFactory] = {"folder": Folder, "index": _index}


def target(name: str, **options: Any) -> PublishTarget:
    """The target registered under ``name`` (built in, or an ``nbprod.publish_targets``
    plugin), made with ``options``."""
    plugins = {point.name: point for point in entry_points(group="nbprod.publish_targets")}
    if name in TARGETS:
        factory = TARGETS[name]
    elif name in plugins:
        factory = plugins[name].load()
    else:
        known = ", ".join([*TARGETS, *sorted(plugins.keys() - TARGETS.keys())])
        raise UsageError(f"unknown publish target {name!r}", f"choose one of: {known}")
    return factory(**options)


__all__ = ["TARGETS", "Folder", "PublishFailed", "PublishTarget", "Step", "run_step", "target"]
