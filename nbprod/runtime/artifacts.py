"""Save and load the artifacts that cross from training to prediction.

Each artifact is saved by the first *format* that handles its value, one file per
artifact: plain values (numbers, strings, lists, dicts) as JSON, numpy arrays as
``.npy``, pandas frames and series as Arrow (Feather), scipy sparse matrices as ``.npz``,
xgboost, lightgbm and catboost models in their own model files, statsmodels results and
everything else with skops. No format pickles.
Distributions add formats through the entry-point group ``nbprod.artifact_formats``;
they are tried after the built-in formats and before skops, which takes the rest. A
format may refuse a value it handles (a statsmodels formula model, a frame Arrow would
change): then no later format tries, and ``UnsupportedArtifact`` names the artifact,
its type, the cell that made it and what to do instead.

``manifest.json`` records, per artifact, its file, SHA-256, type and format, what the
format's loader needs (for skops the exact list of types the file may construct) and
the top-level modules that loader imports, with the versions that saved it. Loading
checks the hash first: a file changed after training is refused. An entry without a
``format`` was written before formats existed and is skops.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._formats import (
    BUILTIN,
    ENTRY_POINTS,
    PLAIN_HINT,
    ArtifactIntegrityError,
    Format,
    UnsupportedArtifact,
    atomic,
    atomic_bytes,
    qualified_name,
    sha256,
)

__all__ = [
    "ArtifactIntegrityError",
    "Format",
    "MissingFormat",
    "UnsupportedArtifact",
    "atomic",
    "distributions",
    "formats",
    "load_artifacts",
    "read_manifest",
    "save_artifacts",
    "sha256",
]

MANIFEST = "manifest.json"


class MissingFormat(ImportError):
    """A manifest names a format that neither nbprod nor an installed distribution provides."""


def save_artifacts(
    values: Mapping[str, Any], folder: Path, origins: Mapping[str, Sequence[int]] | None = None
) -> dict[str, Any]:
    """Save each value with the first format that handles it; write the manifest, return it.

    ``origins`` maps a name to the ``[cell, line]`` that defined it, for the message of a
    value no format can store (``UnsupportedArtifact``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    available = formats()
    entries: dict[str, Any] = {}
    for name, value in values.items():
        chosen = next(f for f in available if f.handles(value))
        path = folder / f"{name}{chosen.suffix}"
        try:
            fields = chosen.save(value, path)
        except Exception as error:
            path.unlink(missing_ok=True)
            raise _unsupported(name, value, (origins or {}).get(name), chosen, error) from error
        # the format's own modules, and those of the types a skops file holds that an
        # installed distribution provides (not the standard library, not the notebook's code)
        own = tuple(getattr(chosen, "requires", ()))
        named = {*own, *fields.pop("requires", ())}
        requires = sorted(m for m in named if m in own or distributions(m))
        entries[name] = {
            **fields,
            "file": path.name,
            "sha256": sha256(path),
            "type": qualified_name(type(value)),
            "format": chosen.name,
            "requires": requires,
            "versions": _versions(requires),
        }
        if getattr(chosen, "distribution", None) is not None:
            entries[name]["distribution"] = chosen.distribution
    manifest = {"format": 2, "artifacts": entries}
    atomic_bytes(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise ArtifactIntegrityError(f"{path} is missing: the artifacts folder is incomplete")
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return manifest


def load_artifacts(folder: Path, names: Iterable[str] | None = None) -> dict[str, Any]:
    """Load artifacts after verifying each file's hash against the manifest."""
    entries = read_manifest(folder)["artifacts"]
    wanted = list(entries) if names is None else list(names)
    loaded: dict[str, Any] = {}
    for name in wanted:
        if name not in entries:
            raise ArtifactIntegrityError(f"artifact {name!r} is not in {folder / MANIFEST}")
        entry = entries[name]
        path = folder / entry["file"]
        if not path.is_file():
            raise ArtifactIntegrityError(f"artifact file {path} is missing")
        actual = sha256(path)
        if actual != entry["sha256"]:
            raise ArtifactIntegrityError(
                f"artifact {name!r} ({path}) has sha256 {actual}, but {entry['sha256']} was "
                "recorded when it was trained: the file was changed or corrupted; refusing to "
                "load it. Reinstall the package or retrain."
            )
        loaded[name] = _format_named(name, entry).load(path, entry)
    return loaded


def formats() -> list[Format]:
    """The formats in the order they are tried: built-in, then entry points, then skops."""
    builtin = {f.name for f in BUILTIN}
    plugins = [f for f in _entry_point_formats() if f.name not in builtin]
    return [*BUILTIN[:-1], *plugins, BUILTIN[-1]]


def _entry_point_formats() -> list[Format]:
    import importlib.metadata as metadata

    return [_plugin(point) for point in metadata.entry_points(group=ENTRY_POINTS)]


def _plugin(point: Any) -> Format:
    loaded = point.load()
    plugin: Format = loaded() if isinstance(loaded, type) else loaded
    plugin.name = point.name  # what the manifest names, so loading finds the same entry point
    if point.dist is not None:
        plugin.distribution = {"name": point.dist.name, "version": point.dist.version}
    return plugin


def _format_named(artifact: str, entry: Mapping[str, Any]) -> Format:
    import importlib.metadata as metadata

    name = entry.get("format", "skops")
    for builtin in BUILTIN:
        if builtin.name == name:
            return builtin
    for point in metadata.entry_points(group=ENTRY_POINTS, name=name):
        return _plugin(point)
    provider = entry.get("distribution") or {"name": f"the distribution of format {name!r}"}
    pin = (
        f"{provider['name']}=={provider['version']}" if "version" in provider else provider["name"]
    )
    raise MissingFormat(
        f"artifact {artifact!r} was saved in the format {name!r}, which no installed "
        f"distribution provides (entry-point group {ENTRY_POINTS}): install {pin}"
    )


def _unsupported(
    name: str, value: Any, origin: Sequence[int] | None, chosen: Format, error: Exception
) -> UnsupportedArtifact:
    kind = qualified_name(type(value))
    if callable(value) and hasattr(value, "__qualname__"):
        kind = f"{kind} {value.__qualname__}"
    where = f"cell {origin[0]}, line {origin[1]}: " if origin else ""
    if isinstance(error, UnsupportedArtifact):
        reason, hint = error.reason, error.hint
    else:
        reason, hint = f"{chosen.name} failed: {type(error).__name__}: {error}", PLAIN_HINT
    return UnsupportedArtifact(
        f"{where}artifact `{name}` ({kind}) cannot be saved without pickle: {reason}", hint
    )


# {top-level module: [distributions]}, read once per process: reading it scans every
# installed distribution's files (a tenth of a second and more). A kernel forked from
# nbprod's fork server inherits the server's map, read by another pid.
_DISTRIBUTIONS: dict[str, list[str]] = {}
_READ_BY: list[int] = []


def distributions(module: str) -> list[str]:
    """The installed distributions that provide a top-level module (none for the standard
    library or the notebook's own code)."""
    import importlib.metadata as metadata
    import os

    if module in sys.stdlib_module_names:
        return []
    if not _DISTRIBUTIONS or (module not in _DISTRIBUTIONS and _installed_since(module)):
        _DISTRIBUTIONS.clear()
        _DISTRIBUTIONS.update(metadata.packages_distributions())
        _READ_BY.append(os.getpid())
    return _DISTRIBUTIONS.get(module, [])


def _installed_since(module: str) -> bool:
    """Whether ``module``, missing from a map another process read, was loaded from
    site-packages: the notebook installed it since (``%pip install``)."""
    import os
    import sysconfig

    file = getattr(sys.modules.get(module), "__file__", None)
    if os.getpid() in _READ_BY or not isinstance(file, str):
        return False
    roots = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    return any(Path(file).resolve().is_relative_to(Path(root).resolve()) for root in roots)


def _versions(modules: Iterable[str]) -> dict[str, str]:
    """The versions of the distributions providing ``modules``, as installed now."""
    import importlib.metadata as metadata

    found: dict[str, str] = {}
    for module in modules:
        for distribution in distributions(module):
            try:
                found[distribution] = metadata.version(distribution)
            except metadata.PackageNotFoundError:
                continue
    return found
