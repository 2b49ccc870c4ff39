"""Publish one run as a verified wheel: to its targets, the dist folder last.

Reads top to bottom: check the version, generate the package, let every target refuse
a version it already holds, build the sdist and wheel with ``build``, install the wheel
into a clean virtual environment (only its own pinned dependencies), run the package's
tests there (parity included), deliver the files to the other targets (an index: a
twine upload) and only then place them in the dist folder.

The dist folder comes last so that it only ever holds versions that passed every step:
a failed upload (a wrong password, a refused version) leaves it untouched. The targets
(``folder``, ``index`` and plugins) live in ``targets.py`` and ``index.py``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import InvalidVersion, Version

from nbprod.exceptions import UsageError
from nbprod.extract import extract
from nbprod.publish.steps import PublishFailed, PublishTarget, Step, run_step
from nbprod.publish.targets import Folder


@dataclass
class Published:
    package: str
    version: str
    run_id: str
    files: list[Path] = field(default_factory=list)  # as placed in the dist folder
    tests: str = ""
    uploaded_to: list[str] = field(default_factory=list)  # where the other targets took them
    model_card: str = ""  # the package's README: what the wheel says about the model


def publish(
    notebook: str | Path,
    run: str,
    *,
    version: str | None = None,
    targets: Sequence[PublishTarget] | None = None,
    on_step: Step | None = None,
    onnx: bool = False,
) -> Published:
    """Generate, build and verify in a clean venv the package of ``run``, then deliver it
    to ``targets`` (default: the folder ``dist``), dist folders last.

    Build targets with ``nbprod.publish.targets.target``: ``target("folder", dist=...)``,
    ``target("index", repository=..., index_url=...)`` or a plugin's name. ``onnx``: the
    package also ships its models converted to ONNX (``extract``'s fast path).
    """
    step = on_step or (lambda name: None)
    version = _valid_version(version)
    targets = [Folder()] if targets is None else list(targets)
    folders = [t for t in targets if isinstance(t, Folder)]
    others = [t for t in targets if not isinstance(t, Folder)]
    with tempfile.TemporaryDirectory(prefix="nbprod-publish-") as scratch:
        work = Path(scratch)
        # The step says so: converting and proving the models takes its own time.
        step("generate the package, with ONNX models" if onnx else "generate the package")
        extracted = extract(notebook, run, work / "project", version=version, onnx=onnx)
        project = extracted.path
        version = _version_of(project)
        distribution = extracted.package.replace("_", "-")
        # The folders first: no request to an index for a version already at hand.
        for target in [*folders, *others]:
            target.refuse_existing(distribution, version, step)
        step("build sdist and wheel")
        built = work / "built"
        run_step(
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
        tests = run_step(
            "run the package's tests",
            [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
            cwd=checks,
        )
        files = sorted(built.iterdir())
        uploaded = []
        for target in others:
            step(target.describe())
            where = target.deliver(files, version)
            if where:
                uploaded.append(where)
        for folder in folders:
            step(folder.describe())
            folder.deliver(files, version)
        card = (project / "README.md").read_text(encoding="utf-8")
    return Published(
        distribution,
        version,
        extracted.run_id,
        [folder.path / file.name for folder in folders for file in files],
        tests.strip().splitlines()[-1],
        uploaded,
        card,
    )


def _valid_version(version: str | None) -> str | None:
    """A user's version, checked and normalised as build and the indexes will read it."""
    if version is None:
        return None
    try:
        return str(Version(version))
    except InvalidVersion:
        raise UsageError(
            f"--version {version!r} is not a valid version (PEP 440)",
            "use a version like 1.2.0, 2.0.0rc1 or 0.20261123.1",
        ) from None


def _version_of(project: Path) -> str:
    import tomllib

    data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    return str(data["project"]["version"])


def _clean_venv(folder: Path, requirement: str) -> Path:
    """A venv with nothing but the wheel and what it pins (uv when available: fast, cached)."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv:
        run_step(
            "create a clean venv", [uv, "venv", "--quiet", "--python", sys.executable, str(folder)]
        )
        python = folder / "bin" / "python"
        run_step(
            "install the wheel",
            [uv, "pip", "install", "--quiet", "--python", str(python), requirement],
        )
        return python
    run_step("create a clean venv", [sys.executable, "-m", "venv", str(folder)])
    python = folder / "bin" / "python"
    run_step("install the wheel", [str(python), "-m", "pip", "install", "--quiet", requirement])
    return python


__all__ = ["PublishFailed", "Published", "publish"]
