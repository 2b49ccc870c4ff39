"""``nbprod ci init``: the files that test a repository's notebooks on every push.

A CI provider contributes its workflow file; every provider also gets a pre-commit
configuration that runs ``nbprod check`` on the notebooks being committed (and, if
asked, strips their outputs with nbstripout first). Templates are files in
``ci_templates/``. Existing files are never replaced without ``force``: if one
exists, none is written.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from nbprod import __version__
from nbprod.exceptions import OutputExists, UsageError
from nbprod.testing.discover import find_notebooks, has_roles

if TYPE_CHECKING:
    import jinja2

PRE_COMMIT_CONFIG = ".pre-commit-config.yaml"
# The nbstripout the strip hook installs (pre-commit builds it an environment of its own).
NBSTRIPOUT = "nbstripout==0.9.1"
# More folders than this in one `nbprod test` line: test the whole repository instead.
MAX_FOLDERS = 5


@dataclass(frozen=True)
class Provider:
    """A CI service: its name for people, and its files (repository path → template)."""

    title: str
    templates: dict[str, str]


# Another service is one more entry here and a template in ci_templates/.
PROVIDERS: dict[str, Provider] = {
    "github": Provider(
        "GitHub Actions", {".github/workflows/nbprod.yml": "github-workflow.yml.j2"}
    ),
}


@dataclass(frozen=True)
class CiFile:
    relative: str  # the path in the repository, with forward slashes
    path: Path
    text: str

    @property
    def exists(self) -> bool:
        return self.path.exists()


@dataclass(frozen=True)
class CiSetup:
    """What ``ci init`` writes into a repository, and what the user does next."""

    repo: Path
    provider: Provider
    notebooks: list[str]  # what `nbprod test` is given, relative to the repository
    branch: str
    files: list[CiFile]
    hooks: str  # the pre-commit hooks alone, to merge into an existing configuration
    next_steps: list[str]

    @property
    def test_command(self) -> str:
        """The shell line CI runs."""
        return _test_line(self.notebooks)


def provider(name: str) -> Provider:
    """The provider registered under ``name``."""
    if name not in PROVIDERS:
        raise UsageError(f"unknown CI provider {name!r}", f"choose one of: {', '.join(PROVIDERS)}")
    return PROVIDERS[name]


def plan(
    repo: Path | None = None,
    provider_name: str = "github",
    notebooks: list[Path] | None = None,
    strip_outputs: bool = False,
) -> CiSetup:
    """The files for ``repo`` (default: the git repository of the current folder) that
    test ``notebooks`` (default: the folders holding notebooks with nbprod roles)."""
    chosen = provider(provider_name)
    repo = _repo(repo)
    tests = [_in_repo(repo, path) for path in notebooks] if notebooks else _tagged_folders(repo)
    branch = default_branch(repo)
    requirements = (repo / "requirements.txt").is_file()
    context = {
        "nbprod_version": __version__,
        "nbprod_requirement": f"nbprod=={__version__}",
        "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
        "branch": branch,
        "requirements": requirements,
        "test_command": _test_line(tests),
        "strip_outputs": strip_outputs,
        "nbstripout_requirement": NBSTRIPOUT,
    }
    templates = {**chosen.templates, PRE_COMMIT_CONFIG: "pre-commit-config.yaml.j2"}
    files = [
        CiFile(relative, repo / relative, _render(template, path=relative, **context))
        for relative, template in templates.items()
    ]
    steps = [
        "review the files, then commit them",
        "pip install pre-commit, then `pre-commit install`: the hooks run on every commit "
        "(the check hook runs the nbprod on your PATH)",
    ]
    if not requirements:
        steps.append(
            "the workflow installs only nbprod: list what the notebooks import in requirements.txt"
        )
    if not _runs_ignored(repo, tests):
        steps.append(".nbprod/ holds runs, not source: add `.nbprod/` to .gitignore")
    hooks = _render("pre-commit-hooks.yaml.j2", **context)
    return CiSetup(repo, chosen, tests, branch, files, hooks, steps)


def write(setup: CiSetup, force: bool = False) -> list[Path]:
    """Write the files of ``setup``: all of them, or, if one exists and not ``force``,
    none (``OutputExists`` names each that exists)."""
    existing = [file for file in setup.files if file.exists]
    if existing and not force:
        raise _refusal(existing, setup.hooks)
    for file in setup.files:
        _write_text(file.path, file.text)
    return [file.path for file in setup.files]


def init(
    repo: Path | None = None,
    provider_name: str = "github",
    notebooks: list[Path] | None = None,
    strip_outputs: bool = False,
    force: bool = False,
) -> CiSetup:
    """``plan`` then ``write``: what ``nbprod ci init`` does."""
    setup = plan(repo, provider_name, notebooks, strip_outputs)
    write(setup, force)
    return setup


def _test_line(notebooks: list[str]) -> str:
    return shlex.join(["nbprod", "test", *notebooks])


def _render(template: str, **context: object) -> str:
    return _templates().get_template(template).render(**context)


@cache
def _templates() -> jinja2.Environment:
    # Imported on use: jinja2 takes a tenth of a second, which `nbprod --help` need not pay.
    import jinja2

    templates = jinja2.Environment(
        loader=jinja2.PackageLoader("nbprod.testing", "ci_templates"),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    # A JSON string is a YAML double-quoted scalar: safe for any branch name or pin.
    templates.filters["yaml"] = json.dumps
    return templates


def _refusal(existing: list[CiFile], hooks: str) -> OutputExists:
    names = ", ".join(file.relative for file in existing)
    hint = "pass --force to replace " + ("it" if len(existing) == 1 else "them")
    if any(file.relative == PRE_COMMIT_CONFIG for file in existing):
        hint += f", or add these hooks under `repos:` in {PRE_COMMIT_CONFIG} by hand:\n{hooks}"
    return OutputExists(f"{names} already exist{'s' * (len(existing) == 1)}", hint.rstrip())


def _repo(repo: Path | None) -> Path:
    if repo is None:
        top = _git(Path.cwd(), "rev-parse", "--show-toplevel")
        return Path(top or Path.cwd()).resolve()
    if not repo.is_dir():
        raise UsageError(f"{repo}: not a folder")
    return repo.resolve()


def default_branch(repo: Path) -> str:
    """The branch pushes are tested on: the remote's default, else the current branch."""
    remote = _git(repo, "symbolic-ref", "--short", "refs/remotes/origin/HEAD")
    if remote:
        return remote.removeprefix("origin/")
    return _git(repo, "symbolic-ref", "--short", "HEAD") or "main"


def _git(folder: Path, *args: str) -> str | None:
    """git's output, or None where git fails or is missing."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _runs_ignored(repo: Path, tests: list[str]) -> bool:
    """Whether git ignores the run folders made beside the notebooks CI tests."""
    folders = {test if (repo / test).is_dir() else Path(test).parent.as_posix() for test in tests}
    return all(
        _git(repo, "check-ignore", "--quiet", f"{folder}/.nbprod/runs") is not None
        for folder in folders
    )


def _in_repo(repo: Path, path: Path) -> str:
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    try:
        return path.resolve().relative_to(repo).as_posix()
    except ValueError:
        raise UsageError(f"{path} is not inside the repository {repo}") from None


def _tagged_folders(repo: Path) -> list[str]:
    """The outermost folders holding notebooks with roles; ``.`` for none or too many."""
    folders = sorted(
        {path.parent.relative_to(repo) for path in find_notebooks([repo]) if has_roles(path)}
    )
    outermost: list[Path] = []
    for folder in folders:
        if not any(folder.is_relative_to(outer) for outer in outermost):
            outermost.append(folder)
    if not outermost or len(outermost) > MAX_FOLDERS or Path(".") in outermost:
        return ["."]
    return [folder.as_posix() for folder in outermost]


def _write_text(path: Path, text: str) -> None:
    """Write under a temporary name beside ``path``, then rename: never half a file.
    Opened with ``x`` rather than mkstemp so the file gets the umask's usual mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with temporary.open("x", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


__all__ = ["PROVIDERS", "CiFile", "CiSetup", "Provider", "init", "plan", "provider", "write"]
