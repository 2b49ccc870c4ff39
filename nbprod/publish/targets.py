"""Where a verified package goes: publish targets, their registry, and the dist folder.

Targets form a registry (``TARGETS``) that other packages extend through the
``nbprod.publish_targets`` entry point group. A target refuses a version it already
holds before anything is built, and takes the files once every check has passed.
What every target shares is in ``steps``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from packaging.version import Version

from nbprod.exceptions import UsageError
from nbprod.publish.steps import (
    PublishFailed,
    PublishTarget,
    Step,
    already_published,
    releases,
    run_step,
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
