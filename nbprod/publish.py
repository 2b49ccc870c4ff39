"""Publish one run as a verified wheel.

Reads top to bottom: generate the package, build the sdist and wheel with ``build``,
install the wheel into a clean virtual environment (only its own pinned
dependencies), run the package's tests there (parity included), and only then place
the files in the dist folder. A version already in the folder is refused, and any
failing step stops with its output and leaves the folder untouched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .exceptions import NbprodError, OutputExists
from .extract import extract

Step = Callable[[str], None]


class PublishFailed(NbprodError):
    """A publishing step failed; ``output`` holds what the step printed."""

    def __init__(self, step: str, output: str) -> None:
        self.step = step
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-40:])
        super().__init__(
            f"publishing stopped at step '{step}':\n{tail}",
            "fix the cause above; the dist folder was not changed",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.step, self.output))


@dataclass
class Published:
    package: str
    version: str
    run_id: str
    files: list[Path] = field(default_factory=list)
    tests: str = ""


def publish(
    notebook: str | Path,
    run: str,
    *,
    version: str | None = None,
    dist: str | Path = "dist",
    on_step: Step | None = None,
) -> Published:
    """Generate, build, verify in a clean venv and place the package of ``run`` in ``dist``."""
    step = on_step or (lambda name: None)
    dist = Path(dist).resolve()
    with tempfile.TemporaryDirectory(prefix="nbprod-publish-") as scratch:
        work = Path(scratch)
        step("generate the package")
        extracted = extract(notebook, run, work / "project", version=version)
        project = extracted.path
        version = _version_of(project)
        distribution = extracted.package.replace("_", "-")
        _refuse_existing(dist, extracted.package, version)
        step("build sdist and wheel")
        built = work / "built"
        _run(
            "build sdist and wheel",
            [
                sys.executable,
                "-m",
                "build",
                "--sdist",
                "--wheel",
                "--outdir",
                str(built),
                str(project),
            ],
        )
        wheel = next(built.glob("*.whl"))
        step("install the wheel into a clean venv")
        python = _clean_venv(work / "venv", f"{wheel}[test]")
        step("run the package's tests in that venv")
        checks = work / "checks"
        shutil.copytree(project / "tests", checks / "tests")
        tests = _run(
            "run the package's tests",
            [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
            cwd=checks,
        )
        step(f"place the files in {dist}")
        files = _place(sorted(built.iterdir()), dist)
    return Published(distribution, version, extracted.run_id, files, tests.strip().splitlines()[-1])


def _version_of(project: Path) -> str:
    import tomllib

    data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    return str(data["project"]["version"])


def _refuse_existing(dist: Path, package: str, version: str) -> None:
    """A published version is never overwritten (wheel and sdist names normalise ``-``)."""
    stem = f"{package}-{version}"
    if dist.is_dir() and any(
        p.name.startswith((f"{stem}-", f"{stem}.tar")) for p in dist.iterdir()
    ):
        raise OutputExists(
            f"{package} {version} is already in {dist}",
            "a published version is never overwritten: pass another --version",
        )


def _run(step: str, command: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONNOUSERSITE": "1"},
    )
    if result.returncode != 0:
        raise PublishFailed(step, result.stdout + result.stderr)
    return result.stdout


def _clean_venv(folder: Path, requirement: str) -> Path:
    """A venv with nothing but the wheel and what it pins (uv when available: fast, cached)."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv:
        _run(
            "create a clean venv", [uv, "venv", "--quiet", "--python", sys.executable, str(folder)]
        )
        python = folder / "bin" / "python"
        _run(
            "install the wheel",
            [uv, "pip", "install", "--quiet", "--python", str(python), requirement],
        )
        return python
    _run("create a clean venv", [sys.executable, "-m", "venv", str(folder)])
    python = folder / "bin" / "python"
    _run("install the wheel", [str(python), "-m", "pip", "install", "--quiet", requirement])
    return python


def _place(files: list[Path], dist: Path) -> list[Path]:
    """Copy into ``dist`` under temporary names, then rename: no half-written files."""
    dist.mkdir(parents=True, exist_ok=True)
    placed = []
    for file in files:
        target = dist / file.name
        partial = dist / f".{file.name}.partial"
        shutil.copyfile(file, partial)
        os.replace(partial, target)
        placed.append(target)
    return placed
