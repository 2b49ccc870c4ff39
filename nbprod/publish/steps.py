"""What every publish target shares: the ``PublishTarget`` protocol, ``PublishFailed``,
``run_step`` (one step as a subprocess, twine's password kept out of its output), and
how a version already published is recognised (``releases``, ``already_published``).

Its own module so that the registry (``targets``) and the targets it lists
(``index``) both import it and not each other.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

from nbprod.exceptions import NbprodError, OutputExists

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
