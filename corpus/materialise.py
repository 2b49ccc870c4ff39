"""Materialise the corpus: each notebook of ``corpus/corpus.toml`` taken out of the source
distribution on PyPI that ships it, with the files it reads, the project's licence beside
it, and the only edits the corpus allows (cell splits, cell tags, ``metadata.nbprod``;
outputs cleared).

Run from the repository root:  .venv/bin/python corpus/materialise.py [NAME ...]

Each sdist is downloaded once into ``.cache/corpus/sdists/`` (with pip; through the
package index's simple page when pip cannot prepare the sdist's metadata here) and its
sha256 checked against the manifest. Each notebook goes into ``.cache/corpus/<name>/`` at
its path inside the sdist, beside the files it reads. A folder whose stamp records the
hash of its manifest entry is left as it is, so running this again costs nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import inspect
import json
import os
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import nbformat

from nbprod.runtime.artifacts import sha256

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "corpus" / "corpus.toml"
CACHE = ROOT / ".cache" / "corpus"
STAMP = ".corpus-stamp"
LICENCE_NAME = "LICENSE"
PYPI_SIMPLE = "https://pypi.org/simple"
# What makes a materialised folder; "covers", "today" and the like do not.
EDIT_KEYS = ("name", "sdist", "path", "files", "data", "splits", "tags", "nbprod")
# Bump when what materialising does changes, so that every folder is made again.
MATERIALISE_VERSION = 1


class CorpusError(Exception):
    """The manifest is wrong, a download failed or a file differs from the manifest."""


@dataclass(frozen=True)
class Sdist:
    name: str
    version: str
    filename: str
    url: str
    sha256: str
    licence: str
    licence_file: str
    via: str  # "pip", or "index" where pip cannot prepare the sdist's metadata here
    raw: dict[str, Any]


@dataclass(frozen=True)
class Entry:
    """One notebook of the corpus and the edits made to it."""

    name: str
    sdist: str
    path: str  # of the notebook inside the sdist
    files: tuple[str, ...]  # files and folders it reads, at the same relative paths
    data: str  # a generator of corpus/data.py writing a file the sdist cannot ship
    splits: tuple[tuple[int, int], ...]  # (cell, line after which it is split)
    tags: dict[int, tuple[str, ...]]  # cell index after the splits -> tags added
    nbprod: dict[str, Any]
    covers: str
    expected_refusal: str  # "stage: text of the message", or ""
    today: str  # "passed" or "<stage> failed: <text>"
    raw: dict[str, Any]

    @property
    def notebook(self) -> PurePosixPath:
        return PurePosixPath(self.path)


@dataclass(frozen=True)
class Manifest:
    sdists: dict[str, Sdist]
    notebooks: dict[str, Entry]

    def entry(self, name: str) -> Entry:
        try:
            return self.notebooks[name]
        except KeyError:
            known = ", ".join(sorted(self.notebooks))
            raise CorpusError(f"{name} is not in {MANIFEST.name} (known: {known})") from None


# ------------------------------------------------------------------ the manifest


def load_manifest(path: Path = MANIFEST) -> Manifest:
    with path.open("rb") as file:
        data = tomllib.load(file)
    sdists = {}
    for raw in data.get("sdist", []):
        sdist = Sdist(
            name=raw["name"],
            version=raw["version"],
            filename=raw["filename"],
            url=raw.get("url", ""),
            sha256=raw["sha256"],
            licence=raw["licence"],
            licence_file=raw["licence_file"],
            via=raw.get("via", "pip"),
            raw=raw,
        )
        sdists[sdist.name] = sdist
    notebooks: dict[str, Entry] = {}
    for raw in data.get("notebook", []):
        entry = _entry(raw)
        if entry.name in notebooks:
            raise CorpusError(f"{path.name}: two notebooks are named {entry.name}")
        if entry.sdist not in sdists:
            raise CorpusError(f"{path.name}: {entry.name} names an unknown sdist {entry.sdist}")
        notebooks[entry.name] = entry
    return Manifest(sdists, notebooks)


def _entry(raw: dict[str, Any]) -> Entry:
    tags: dict[int, tuple[str, ...]] = {}
    for cell, value in raw.get("tags", {}).items():
        tags[int(cell)] = (value,) if isinstance(value, str) else tuple(value)
    return Entry(
        name=raw["name"],
        sdist=raw["sdist"],
        path=raw["path"],
        files=tuple(raw.get("files", ())),
        data=raw.get("data", ""),
        splits=tuple((int(cell), int(line)) for cell, line in raw.get("splits", ())),
        tags=tags,
        nbprod=dict(raw.get("nbprod", {})),
        covers=raw.get("covers", ""),
        expected_refusal=raw.get("expected_refusal", ""),
        today=raw["today"],
        raw=raw,
    )


# ------------------------------------------------------------------ downloading


def sdist_path(sdist: Sdist) -> Path:
    return CACHE / "sdists" / sdist.filename


def download(sdist: Sdist) -> Path:
    """The sdist's file in the cache, downloaded when missing; its sha256 is checked."""
    target = sdist_path(sdist)
    if target.is_file() and sha256(target) == sdist.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        fetched = Path(tmp) / sdist.filename
        problems = []
        if sdist.via == "pip":
            problem = _pip_download(sdist, Path(tmp))
            if problem:
                problems.append(problem)
        if not fetched.is_file():
            problem = _index_download(sdist, fetched)
            if problem:
                problems.append(problem)
        if not fetched.is_file():
            raise CorpusError(f"cannot download {sdist.filename}:\n  " + "\n  ".join(problems))
        digest = sha256(fetched)
        if digest != sdist.sha256:
            raise CorpusError(
                f"{sdist.filename} has sha256 {digest}, the manifest says {sdist.sha256}"
            )
        fetched.replace(target)
    return target


def _pip_download(sdist: Sdist, folder: Path) -> str:
    command = [
        sys.executable,
        *("-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"),
        *("-d", str(folder), f"{sdist.name}=={sdist.version}"),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode == 0:
        return ""
    last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    return f"pip download {sdist.name}=={sdist.version} failed: {last}"


def _index_download(sdist: Sdist, target: Path) -> str:
    """Download through the simple page of pip's index (PEP 691), else the manifest URL."""
    index = _pip_index_url()
    page = f"{index.rstrip('/')}/{_normalise(sdist.name)}/"
    context = ssl.create_default_context(cafile=os.environ.get("PIP_CERT") or _pip_cert())
    url = sdist.url
    try:
        request = urllib.request.Request(
            page, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        with urllib.request.urlopen(request, timeout=60, context=context) as answer:
            files = json.load(answer).get("files", [])
        url = next((f["url"] for f in files if f.get("filename") == sdist.filename), url)
    except (OSError, ValueError) as error:
        if not url:
            return f"{page}: {error}"
    if not url:
        return f"{page} lists no {sdist.filename}"
    url = urllib.parse.urljoin(page, url)
    try:
        with (
            urllib.request.urlopen(url, timeout=300, context=context) as answer,
            target.open("wb") as out,
        ):
            shutil.copyfileobj(answer, out)
    except OSError as error:
        target.unlink(missing_ok=True)
        return f"{url}: {error}"
    return ""


def _pip_config(key: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", key], capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def _pip_index_url() -> str:
    return os.environ.get("PIP_INDEX_URL") or _pip_config("global.index-url") or PYPI_SIMPLE


def _pip_cert() -> str | None:
    return _pip_config("global.cert") or None


def _normalise(name: str) -> str:
    return "-".join(name.lower().replace("_", "-").replace(".", "-").split("-"))


# ------------------------------------------------------------------ unpacking


class _Archive:
    """The members of a .tar.gz or .zip sdist, named without the top-level folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        if path.suffix == ".zip":
            self._zip = zipfile.ZipFile(path)
            names = self._zip.namelist()
        else:
            self._tar = tarfile.open(path)  # noqa: SIM115  (closed by __exit__)
            names = self._tar.getnames()
        self._names = {self._strip(name): name for name in names if self._strip(name)}

    @staticmethod
    def _strip(name: str) -> str:
        parts = PurePosixPath(name).parts
        return "/".join(parts[1:])

    def __enter__(self) -> _Archive:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._tar is not None:
            self._tar.close()

    def members(self, wanted: str) -> Iterator[str]:
        """The files at ``wanted`` or below it."""
        found = False
        below = wanted.rstrip("/") + "/"
        for name in sorted(self._names):
            if (name == wanted or name.startswith(below)) and not self._is_dir(name):
                found = True
                yield name
        if not found:
            raise CorpusError(f"{self.path.name} holds no {wanted}")

    def _is_dir(self, name: str) -> bool:
        if self._zip is not None:
            return self._names[name].endswith("/")
        assert self._tar is not None
        return self._tar.getmember(self._names[name]).isdir()

    def read_many(self, names: Iterable[str]) -> dict[str, bytes]:
        """Several members in one pass over the archive (a .tar.gz cannot seek back cheaply)."""
        wanted = {self._names[name]: name for name in names}
        if self._zip is not None:
            return {name: self._zip.read(member) for member, name in wanted.items()}
        assert self._tar is not None
        found = {}
        for member in self._tar:
            if member.name in wanted:
                file = self._tar.extractfile(member)
                found[wanted[member.name]] = file.read() if file else b""
        return found

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(self._names[name])
        assert self._tar is not None
        file = self._tar.extractfile(self._names[name])
        if file is None:
            raise CorpusError(f"{self.path.name}: {name} is not a regular file")
        return file.read()


def _write_member(archive: _Archive, name: str, folder: Path) -> Path:
    target = (folder / name).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise CorpusError(f"{archive.path.name}: {name} would land outside {folder}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(archive.read(name))
    return target


# ------------------------------------------------------------------ the edits


def edit_notebook(node: Any, entry: Entry) -> Any:
    """Split cells, add tags, set ``metadata.nbprod`` and clear outputs, in that order."""
    for cell_index, line in sorted(entry.splits, reverse=True):
        _split(node, entry, cell_index, line)
    for cell_index, tags in entry.tags.items():
        if not 0 <= cell_index < len(node.cells):
            raise CorpusError(f"{entry.name}: no cell {cell_index} to tag")
        metadata = node.cells[cell_index].setdefault("metadata", {})
        existing = list(metadata.get("tags", []))
        metadata["tags"] = existing + [tag for tag in tags if tag not in existing]
    if entry.nbprod:
        node.metadata["nbprod"] = entry.nbprod
    for cell in node.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return node


def _split(node: Any, entry: Entry, cell_index: int, line: int) -> None:
    if not 0 <= cell_index < len(node.cells):
        raise CorpusError(f"{entry.name}: no cell {cell_index} to split")
    cell = node.cells[cell_index]
    lines = cell.source.splitlines(keepends=True)
    if not 0 < line < len(lines):
        raise CorpusError(
            f"{entry.name}: cell {cell_index} has {len(lines)} lines, cannot split after {line}"
        )
    second = nbformat.from_dict(json.loads(json.dumps(cell)))
    cell.source = "".join(lines[:line]).removesuffix("\n")
    second.source = "".join(lines[line:])
    second.metadata.pop("tags", None)
    if "id" in cell:
        second.id = f"{cell.id}-{line}"[:64]
    if cell.cell_type == "code":
        second.outputs = []
    node.cells.insert(cell_index + 1, second)


def _read_notebook(data: bytes) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # old notebooks without cell ids, and the like
        node = nbformat.reads(data.decode("utf-8"), as_version=4)
    if node.nbformat_minor >= 5:
        for index, cell in enumerate(node.cells):
            cell.setdefault("id", f"cell-{index}")
    return node


# ------------------------------------------------------------------ materialising


def folder_of(name: str) -> Path:
    return CACHE / name


def notebook_path(entry: Entry) -> Path:
    return folder_of(entry.name) / entry.notebook


def generator(name: str) -> Callable[[Path], None]:
    """A data generator of corpus/data.py (our own code)."""
    spec = importlib.util.spec_from_file_location("corpus_data", ROOT / "corpus" / "data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function = getattr(module, name, None)
    if not callable(function):
        raise CorpusError(f"corpus/data.py has no generator {name}")
    return function


def stamp_of(manifest: Manifest, entry: Entry) -> str:
    record = {
        "materialise": MATERIALISE_VERSION,
        "sdist": manifest.sdists[entry.sdist].raw,
        "notebook": {key: entry.raw.get(key) for key in EDIT_KEYS},
        "generator": inspect.getsource(generator(entry.data)) if entry.data else "",
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def materialise(manifest: Manifest, entry: Entry) -> Path:
    """``.cache/corpus/<name>/`` for one entry, made only when its stamp differs; returns
    the notebook's path."""
    folder = folder_of(entry.name)
    stamp = stamp_of(manifest, entry)
    if (folder / STAMP).is_file() and (folder / STAMP).read_text().strip() == stamp:
        return notebook_path(entry)
    sdist = manifest.sdists[entry.sdist]
    archive_path = download(sdist)
    partial = folder.with_name(f".{entry.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with _Archive(archive_path) as archive:
        for wanted in entry.files:
            for name in archive.members(wanted):
                _write_member(archive, name, partial)
        (notebook_name,) = archive.members(entry.path)
        node = edit_notebook(_read_notebook(archive.read(notebook_name)), entry)
        (licence,) = archive.members(sdist.licence_file)
        licence_text = archive.read(licence)
    target = partial / entry.notebook
    target.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nbformat.write(node, str(target))
    (target.parent / LICENCE_NAME).write_bytes(licence_text)
    if entry.data:
        generator(entry.data)(partial)
    (partial / STAMP).write_text(stamp + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return notebook_path(entry)


def materialise_all(names: list[str] | None = None, manifest: Manifest | None = None) -> Manifest:
    manifest = manifest or load_manifest()
    for name in names or sorted(manifest.notebooks):
        materialise(manifest, manifest.entry(name))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebooks of the manifest (default: all)")
    args = parser.parse_args()
    try:
        manifest = materialise_all(args.names)
    except CorpusError as error:
        raise SystemExit(f"materialise: {error}") from None
    print(f"{len(args.names or manifest.notebooks)} notebooks in {CACHE}")


if __name__ == "__main__":
    main()
