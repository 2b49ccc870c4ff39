"""The corpus (corpus/corpus.toml: real notebooks from sdists on PyPI, tagged by role)
goes through check → smoke run → extract → the package's tests exactly as its manifest
says it does today: every stage passing, or the first failing stage and its message.

The manifest's ``today`` holds ``passed`` or ``<stage> failed: <text of the message>``;
when nbprod changes what it does with a notebook, its case fails until the entry is
updated. The corpus is materialised once per session (downloaded from PyPI into
``.cache/corpus/``, under a file lock so that pytest-xdist workers share it) and its
notebooks run one after the other on fork-server kernels.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from paths import ROOT
from tools import make_venv


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_corpus", ROOT / "bench" / "corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_corpus"] = module
    spec.loader.exec_module(module)
    return module


bench = _bench()
corpus = bench.corpus  # corpus/materialise.py
MANIFEST = corpus.load_manifest()
NAMES = sorted(MANIFEST.notebooks)
JOBS = 1  # one at a time on warm fork-server kernels: 63 s, against 85 s for 2 cold at once
# the package whose tests also run in a clean venv: non-scikit-learn artifacts (statsmodels)
CLEAN_VENV = "sm_predict"
LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"
)


@pytest.fixture(scope="session")
def materialised() -> Any:
    """The corpus in .cache/corpus/, made once; workers wait for each other on a lock."""
    corpus.CACHE.mkdir(parents=True, exist_ok=True)
    with (corpus.CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return corpus.materialise_all(NAMES)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def results(
    materialised: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Every notebook through the loop, two at a time; the packages stay for the venv test."""
    workdir = tmp_path_factory.mktemp("corpus")
    done = bench.run_corpus(NAMES, workdir=workdir, jobs=JOBS)
    yield {"workdir": workdir, **{result.name: result for result in done}}


def test_manifest_has_enough_notebooks_each_with_a_licence_and_one_notebook(
    materialised: Any,
) -> None:
    assert len(NAMES) >= 20
    for name, entry in MANIFEST.notebooks.items():
        sdist = MANIFEST.sdists[entry.sdist]
        assert sdist.sha256 and sdist.licence and sdist.licence_file, name
        assert entry.today == "passed" or " failed: " in entry.today, name
        if entry.expected_refusal:
            stage, _, text = entry.expected_refusal.partition(":")
            assert stage in bench.STAGES and text.strip(), name
        folder = corpus.folder_of(name)
        notebooks = bench.notebooks_in(folder)
        assert notebooks == [folder / entry.notebook], name
        assert (notebooks[0].parent / corpus.LICENCE_NAME).read_text().strip(), name


def test_only_tags_splits_and_metadata_differ_from_the_sdist(materialised: Any) -> None:
    """The rule of the corpus: the code is the project's, line for line."""
    import nbformat

    originals: dict[str, bytes] = {}
    for sdist in MANIFEST.sdists.values():
        entries = [e for e in MANIFEST.notebooks.values() if e.sdist == sdist.name]
        if not entries:  # an sdist other tests take files from (papermill's notebooks)
            continue
        with corpus._Archive(corpus.sdist_path(sdist)) as archive:
            data = archive.read_many({e.path for e in entries})
        originals.update({e.name: data[e.path] for e in entries})
    for name, entry in MANIFEST.notebooks.items():
        original = corpus._read_notebook(originals[name])
        edited = nbformat.read(str(corpus.notebook_path(entry)), as_version=4)
        joined = ["\n".join(c.source for c in node.cells) for node in (original, edited)]
        lines = [[line for line in text.splitlines() if line] for text in joined]
        assert lines[0] == lines[1], name
        assert len(edited.cells) == len(original.cells) + len(entry.splits), name
        assert edited.metadata.get("nbprod") == (entry.nbprod or None), name
        assert all(not c.get("outputs") for c in edited.cells), name


def test_materialising_again_is_a_no_op(materialised: Any) -> None:
    stamps = {name: (corpus.folder_of(name) / corpus.STAMP).stat().st_mtime_ns for name in NAMES}
    corpus.materialise_all(NAMES)
    assert stamps == {
        name: (corpus.folder_of(name) / corpus.STAMP).stat().st_mtime_ns for name in NAMES
    }


@pytest.mark.parametrize("name", NAMES)
def test_corpus_notebook_goes_as_documented(name: str, results: dict[str, Any]) -> None:
    entry = MANIFEST.entry(name)
    result = results[name]
    messages = {s: r.message for s, r in result.stages.items() if r.message}
    if entry.today == "passed":
        assert result.failed_stage is None, messages
        assert [r.status for r in result.stages.values()] == ["passed"] * len(bench.STAGES)
    else:
        stage, _, text = entry.today.partition(" failed:")
        assert result.failed_stage == stage, messages
        assert text.strip() in result.stages[stage].message, messages
        later = bench.STAGES[bench.STAGES.index(stage) + 1 :]
        assert all(result.stages[s].status == "not run" for s in later)
    assert result.passed == (entry.today == "passed" or bool(entry.expected_refusal))


def test_package_with_statsmodels_artifacts_passes_its_tests_in_a_clean_venv(
    results: dict[str, Any],
) -> None:
    package = results["workdir"] / "pkg" / CLEAN_VENV
    assert results[CLEAN_VENV].passed, results[CLEAN_VENV].stages
    python = make_venv(results["workdir"] / "venv", f"{package}[test]")
    listed = subprocess.run(
        [str(python), "-c", LIST_DISTRIBUTIONS], capture_output=True, text=True, check=True
    )
    installed = {name.lower() for name in json.loads(listed.stdout)}
    assert "nbprod" not in installed and "statsmodels" in installed, installed
    done = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_parity.py"],
        cwd=package,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")},
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
