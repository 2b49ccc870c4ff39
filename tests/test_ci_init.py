"""``nbprod ci init``: the files it writes, checked and run with the real tools
(check-jsonschema with GitHub's workflow schema, pre-commit, nbstripout)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from nbbuild import SMALL, notebook_node, write_notebook
from nbformat.v4 import new_output
from paths import ROOT
from tools import BIN, nbprod

from nbprod import __version__
from nbprod.exceptions import OutputExists, UsageError
from nbprod.testing.ci import init

WORKFLOW = ".github/workflows/nbprod.yml"
HOOKS = ".pre-commit-config.yaml"
# pre-commit installs nbstripout once into this cache, shared by every test run.
PRE_COMMIT_HOME = os.environ.get("PRE_COMMIT_HOME", str(ROOT / ".cache" / "pre-commit"))
# SMALL with a train cell that reads a name no cell defines.
BROKEN = (*SMALL[:2], ("train", "w = sum(xs) * a * missing"), *SMALL[3:])


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A fresh repository on branch ``trunk``: a tagged notebook in ``models/`` and one
    without roles (which ``nbprod check`` alone would reject) in ``notes/``."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch", "trunk")
    (repo / "models").mkdir()
    (repo / "notes").mkdir()
    write_notebook(repo / "models" / "model.ipynb", *SMALL)
    write_notebook(repo / "notes" / "scratch.ipynb", (None, "x = 1"))
    return repo


def load(repo: Path, name: str) -> Any:
    return yaml.safe_load((repo / name).read_text(encoding="utf-8"))


def step(workflow: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    (found,) = [s for s in workflow["jobs"]["notebooks"]["steps"] if s.get(key) == value]
    return found


def pre_commit(repo: Path) -> subprocess.CompletedProcess[str]:
    """``pre-commit run --all-files`` on what git tracks, with this venv's nbprod on PATH."""
    git(repo, "add", "--all")
    return subprocess.run(
        [str(BIN / "pre-commit"), "run", "--all-files", "--color", "never"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "PRE_COMMIT_HOME": PRE_COMMIT_HOME,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "NO_COLOR": "1",
        },
    )


def test_writes_a_valid_workflow_for_the_tagged_folders(repo: Path) -> None:
    result = nbprod("ci", "init", cwd=repo)
    assert result.returncode == 0, result.stderr
    assert f"wrote {WORKFLOW}" in result.stdout
    assert f"wrote {HOOKS}" in result.stdout
    assert "add `.nbprod/` to .gitignore" in result.stdout
    assert "requirements.txt" in result.stdout  # the repository has none: say what to do

    umask = os.umask(0o022)
    os.umask(umask)
    for name in (WORKFLOW, HOOKS):
        text = (repo / name).read_text(encoding="utf-8")
        assert text.endswith("\n") and not text.endswith("\n\n")
        assert (repo / name).stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0o600

    schema = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", WORKFLOW],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr

    workflow = load(repo, WORKFLOW)
    triggers = workflow[True]  # YAML 1.1 (PyYAML) reads the key `on` as a boolean
    assert triggers["push"] == {"branches": ["trunk"]}
    assert "pull_request" in triggers
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["cancel-in-progress"] is True
    assert "github.ref" in workflow["concurrency"]["group"]
    assert workflow["jobs"]["notebooks"]["runs-on"] == "ubuntu-latest"
    assert step(workflow, "uses", "actions/checkout@v4")
    python = step(workflow, "uses", "actions/setup-python@v5")["with"]
    assert python["python-version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert python["cache"] == "pip"
    assert python["cache-dependency-path"].split() == [WORKFLOW]
    install = step(workflow, "name", "Install dependencies")["run"].splitlines()
    assert install[0] == "python -m pip install --upgrade pip"
    assert install[-1] == f'pip install "nbprod=={__version__}"'
    assert step(workflow, "name", "Test notebooks")["run"].strip() == "nbprod test models"
    upload = step(workflow, "uses", "actions/upload-artifact@v4")
    assert upload["if"] == "failure()"
    assert upload["with"]["path"] == "**/.nbprod/runs/*/executed.ipynb"
    assert upload["with"]["include-hidden-files"] is True
    assert upload["with"]["if-no-files-found"] == "ignore"

    validate = subprocess.run(
        [str(BIN / "pre-commit"), "validate-config", HOOKS], cwd=repo, capture_output=True
    )
    assert validate.returncode == 0, validate.stdout
    (local,) = load(repo, HOOKS)["repos"]
    assert local["repo"] == "local"
    (hook,) = local["hooks"]
    assert hook["id"] == "nbprod-check"
    assert hook["entry"] == "nbprod check --tagged-only"
    assert hook["language"] == "system"
    assert re.search(hook["files"], "models/model.ipynb")
    assert not re.search(hook["exclude"], "models/model.ipynb")
    assert re.search(hook["exclude"], "models/.nbprod/runs/1/executed.ipynb")
    assert re.search(hook["exclude"], ".ipynb_checkpoints/model-checkpoint.ipynb")


def test_remote_default_branch_requirements_and_chosen_notebooks(tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    git(origin, "init", "--quiet", "--initial-branch", "develop")
    git(origin, "commit", "--quiet", "--allow-empty", "-m", "start")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", str(origin), str(clone))
    git(clone, "switch", "--quiet", "--create", "feature")
    (clone / "requirements.txt").write_text("numpy\n")
    (clone / ".gitignore").write_text(".nbprod/\n")
    write_notebook(clone / "a.ipynb", *SMALL)
    (clone / "b").mkdir()

    # From a subfolder: the repository is git's top level; paths are taken from here.
    result = nbprod("ci", "init", "--notebooks", "../a.ipynb", "--notebooks", ".", cwd=clone / "b")
    assert result.returncode == 0, result.stderr
    assert ".gitignore" not in result.stdout
    workflow = load(clone, WORKFLOW)
    assert workflow[True]["push"]["branches"] == ["develop"]  # the remote's, not `feature`
    assert step(workflow, "name", "Test notebooks")["run"].strip() == "nbprod test a.ipynb b"
    python = step(workflow, "uses", "actions/setup-python@v5")["with"]
    assert python["cache-dependency-path"].split() == [WORKFLOW, "requirements.txt"]
    install = step(workflow, "name", "Install dependencies")["run"]
    assert "if [ -f requirements.txt ]; then pip install -r requirements.txt; fi" in install

    with pytest.raises(UsageError, match="not inside the repository"):
        init(clone, notebooks=[tmp_path], force=True)


def test_never_overwrites_without_force(repo: Path) -> None:
    init(repo)
    files = [repo / WORKFLOW, repo / HOOKS]
    for file in files:  # so that any rewrite shows in the times, however coarse they are
        os.utime(file, ns=(10**18, 10**18))
    before = {file: (file.read_bytes(), file.stat().st_mtime_ns) for file in files}

    again = nbprod("ci", "init", "--strip-outputs", cwd=repo)
    assert again.returncode == 2
    assert f"{WORKFLOW}, {HOOKS} already exist" in again.stderr
    assert "--force" in again.stderr
    assert "- id: nbstripout" in again.stderr  # the hooks to merge by hand
    assert {file: (file.read_bytes(), file.stat().st_mtime_ns) for file in files} == before

    (repo / WORKFLOW).unlink()  # one file exists: still nothing is written
    with pytest.raises(OutputExists) as refused:
        init(repo)
    assert refused.value.message == f"{HOOKS} already exists"
    assert not (repo / WORKFLOW).exists()

    forced = nbprod("ci", "init", "--strip-outputs", "--force", cwd=repo)
    assert forced.returncode == 0, forced.stderr
    assert (repo / WORKFLOW).exists()
    hooks = load(repo, HOOKS)["repos"][0]["hooks"]
    assert [hook["id"] for hook in hooks] == ["nbstripout", "nbprod-check"]
    assert hooks[0]["additional_dependencies"][0].startswith("nbstripout==")
    assert sorted(path.name for path in (repo / ".github" / "workflows").iterdir()) == [
        "nbprod.yml"
    ]  # no temporary file left behind


def test_dry_run_prints_what_init_writes(repo: Path) -> None:
    dry = nbprod("ci", "init", "--dry-run", "--strip-outputs", cwd=repo)
    assert dry.returncode == 0, dry.stderr
    assert not (repo / ".github").exists()
    assert not (repo / HOOKS).exists()

    init(repo, strip_outputs=True)
    for name in (WORKFLOW, HOOKS):
        assert (repo / name).read_text(encoding="utf-8") in dry.stdout


def test_unknown_provider_lists_the_known_ones(repo: Path) -> None:
    result = nbprod("ci", "init", "--provider", "gitlab", cwd=repo)
    assert result.returncode == 2
    assert "unknown CI provider 'gitlab'" in result.stderr
    assert "github" in result.stderr
    assert not (repo / HOOKS).exists()


def test_pre_commit_checks_notebooks_with_roles(repo: Path) -> None:
    init(repo)
    passed = pre_commit(repo)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert re.search(r"nbprod check\.+Passed", passed.stdout)

    write_notebook(repo / "models" / "broken.ipynb", *BROKEN)
    failed = pre_commit(repo)
    assert failed.returncode == 1
    assert re.search(r"nbprod check\.+Failed", failed.stdout)
    assert "cell 3 (train), line 1: reads `missing`, which no cell defines" in failed.stdout


def with_outputs(*cells: Any, nbprod: dict[str, Any]) -> dict[str, Any]:
    node = notebook_node(*cells, nbprod=nbprod)
    for count, cell in enumerate(node.cells, 1):
        cell.execution_count = count
        cell.outputs = [new_output("stream", name="stdout", text=f"cell {count}\n")]
        cell.metadata["scrolled"] = True  # one of the keys nbstripout drops
    return dict(node)


def test_strip_outputs_keeps_roles_and_settings(repo: Path) -> None:
    settings = {"smoke": {"a": 1}, "name": "small_model"}
    notebook = repo / "models" / "model.ipynb"
    notebook.write_text(json.dumps(with_outputs(*SMALL, nbprod=settings)), encoding="utf-8")
    init(repo, strip_outputs=True)

    stripping = pre_commit(repo)
    assert stripping.returncode == 1  # a hook that changes files fails, as pre-commit does
    assert re.search(r"strip notebook outputs\.+Failed", stripping.stdout)
    assert "files were modified by this hook" in stripping.stdout
    stripped = json.loads(notebook.read_text(encoding="utf-8"))
    cells = stripped["cells"]
    assert [cell["outputs"] for cell in cells] == [[]] * len(SMALL)
    assert {cell["execution_count"] for cell in cells} == {None}
    assert [cell["metadata"].get("tags") for cell in cells] == [
        [role] if role else None for role, _ in SMALL
    ]
    assert not any("scrolled" in cell["metadata"] for cell in cells)
    assert stripped["metadata"]["nbprod"] == settings

    clean = pre_commit(repo)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert re.search(r"nbprod check\.+Passed", clean.stdout)
