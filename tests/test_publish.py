"""`nbprod publish` to a folder: build, clean-venv verification, never overwrite."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from nbbuild import SMALL, write_notebook
from tools import nbprod

pytestmark = pytest.mark.slow


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    path = write_notebook(tmp_path / "tiny.ipynb", *SMALL)
    assert nbprod("run", path, "-p", "a=1,3", "--json").returncode == 0
    return path


def test_publish_verifies_then_places_the_files(notebook: Path, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    result = nbprod("publish", notebook, "--run", "latest", "--version", "1.2.3", "--dist", dist)
    assert result.returncode == 0, result.stdout + result.stderr
    for step in (
        "build sdist and wheel",
        "install the wheel into a clean venv",
        "run the package's tests in that venv",
    ):
        assert step in result.stderr
    assert "tests in a clean venv: 5 passed" in result.stdout
    assert sorted(p.name for p in dist.iterdir()) == [
        "tiny-1.2.3-py3-none-any.whl",
        "tiny-1.2.3.tar.gz",
    ]
    with zipfile.ZipFile(dist / "tiny-1.2.3-py3-none-any.whl") as wheel:
        names = wheel.namelist()
        assert "tiny/artifacts/manifest.json" in names and "tiny/pipeline.py" in names
        metadata = wheel.read("tiny-1.2.3.dist-info/METADATA").decode()
    assert "Requires-Dist: skops==" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert requires and not [line for line in requires if "nbprod" in line or "papermill" in line]

    again = nbprod("publish", notebook, "--run", "latest", "--version", "1.2.3", "--dist", dist)
    assert again.returncode == 2
    assert "tiny 1.2.3 is already in" in again.stderr and "never overwritten" in again.stderr
    assert sorted(p.name for p in dist.iterdir()) == [
        "tiny-1.2.3-py3-none-any.whl",
        "tiny-1.2.3.tar.gz",
    ]


def test_a_failing_step_leaves_the_dist_folder_untouched(notebook: Path, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "other-0.1.tar.gz").write_text("kept")
    result = nbprod(
        "publish", notebook, "--run", "latest", "--version", "not a version", "--dist", dist
    )
    assert result.returncode == 1
    assert "publishing stopped at step 'build sdist and wheel'" in result.stderr
    assert [p.name for p in dist.iterdir()] == ["other-0.1.tar.gz"]
    runs = json.loads(nbprod("runs", notebook, "--json").stdout)
    assert len(runs) == 2
