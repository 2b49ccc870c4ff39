"""Save and load the artifacts that cross from training to prediction.

Each artifact is one skops file. ``manifest.json`` records, per artifact, its file,
its SHA-256 and the exact list of types the file may construct. Loading checks the
hash first and then hands skops that explicit trusted-type list: a file changed
after training is refused, and no type outside the list can be instantiated.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


class ArtifactIntegrityError(RuntimeError):
    """An artifact file is missing, or differs from the hash recorded when it was saved."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_artifacts(values: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """Dump each value with skops into ``folder`` and write the manifest; return it."""
    import skops.io as sio  # imported when used: it loads most of scikit-learn

    folder.mkdir(parents=True, exist_ok=True)
    entries: dict[str, Any] = {}
    for name, value in values.items():
        file = f"{name}.skops"
        path = folder / file
        _atomic_bytes(path, sio.dumps(value))
        entries[name] = {
            "file": file,
            "sha256": sha256(path),
            "type": f"{type(value).__module__}.{type(value).__qualname__}",
            "trusted": sorted(sio.get_untrusted_types(file=path)),
        }
    manifest = {"format": 1, "artifacts": entries}
    _atomic_bytes(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise ArtifactIntegrityError(f"{path} is missing: the artifacts folder is incomplete")
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return manifest


def load_artifacts(folder: Path, names: Iterable[str] | None = None) -> dict[str, Any]:
    """Load artifacts after verifying each file's hash against the manifest."""
    import skops.io as sio

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
        loaded[name] = sio.loads(path.read_bytes(), trusted=list(entry["trusted"]))
    return loaded


def _atomic_bytes(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
