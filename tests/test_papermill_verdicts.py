"""``nbprod run`` on papermill's own test notebooks (from papermill's source distribution
on PyPI, BSD-3-Clause, downloaded at test time with the corpus's machinery and never
committed) gives papermill's verdict on each: success, or failure naming the cell and
the error; ``sys.exit(0)`` and a bare ``SystemExit`` are clean stops, ``sys.exit(1)``
fails. Notebooks without nbprod roles run and are recorded as not extractable, and
OUTPUT gets the executed notebook, as ``papermill IN OUT`` writes it."""

from __future__ import annotations

import fcntl
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import nbformat
import papermill
import pytest
from paths import ROOT
from tools import nbprod

FOLDER = "papermill/tests/notebooks"
# name → (papermill's verdict, what nbprod's failure names: the cell and the error)
VERDICTS = {
    "simple_execute": ("ok", None),
    "no_parameters": ("ok", None),
    "broken1": ("failed", "cell 7 (untagged), line 1: AssertionError"),
    "sysexit": ("ok", None),
    "sysexit0": ("ok", None),
    "systemexit": ("ok", None),
    "sysexit1": ("failed", "cell 2 (untagged): SystemExit: 1"),
    "line_magic_error": ("failed", "cell 1 (untagged): UsageError: Line magic function"),
}


def _corpus() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "corpus_materialise", ROOT / "corpus" / "materialise.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["corpus_materialise"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """papermill's test notebooks and its licence, in a folder of their own."""
    corpus = _corpus()
    sdist = corpus.load_manifest().sdists["papermill"]
    corpus.CACHE.mkdir(parents=True, exist_ok=True)
    with (corpus.CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = corpus.download(sdist)
    folder = tmp_path_factory.mktemp("papermill")
    with corpus._Archive(path) as archive:
        members = archive.read_many(
            {*(f"{FOLDER}/{n}.ipynb" for n in VERDICTS), sdist.licence_file}
        )
    for name, data in members.items():
        (folder / Path(name).name).write_bytes(data)
    assert (
        "BSD" in (folder / "LICENSE").read_text()
        or "Redistribution" in (folder / "LICENSE").read_text()
    )
    return folder


def papermill_verdict(notebook: Path, output: Path) -> str:
    try:
        papermill.execute_notebook(
            str(notebook), str(output), kernel_name="python3", progress_bar=False
        )
    except papermill.PapermillExecutionError:
        return "failed"
    return "ok"


@pytest.mark.parametrize("name", sorted(VERDICTS))
def test_nbprod_gives_papermills_verdict(name: str, notebooks: Path, tmp_path: Path) -> None:
    verdict, failure = VERDICTS[name]
    assert papermill_verdict(notebooks / f"{name}.ipynb", tmp_path / "papermill.ipynb") == verdict
    output = tmp_path / "nbprod.ipynb"
    done = nbprod("run", notebooks / f"{name}.ipynb", output, "--json")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (done.returncode == 0) == (verdict == "ok"), done.stdout + done.stderr
    assert summary["status"] == ("succeeded" if verdict == "ok" else "failed")
    if failure is not None:
        assert failure in summary["error"], summary["error"]
    else:
        assert summary["extractable"] is False and summary["not_extractable"]
        assert "is not extractable" in done.stderr
    # OUTPUT: the executed notebook, with the cells it ran and their outputs
    written = nbformat.read(str(output), as_version=4)
    assert [c.source for c in written.cells if c.cell_type == "code"] == [
        c.source
        for c in nbformat.read(str(notebooks / f"{name}.ipynb"), as_version=4).cells
        if c.cell_type == "code"
    ]
    assert (
        any(c.get("outputs") for c in written.cells if c.cell_type == "code") or name == "sysexit"
    )
