"""Helpers for tests: the nbprod CLI as a real subprocess, clean venvs through one uv cache."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from paths import ROOT

BIN = Path(sys.executable).parent
UV_CACHE = os.environ.get("UV_CACHE_DIR", str(ROOT / ".cache" / "uv"))


def nbprod(
    *args: str | Path, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``nbprod`` command; never raises on a non-zero exit."""
    return subprocess.run(
        [str(BIN / "nbprod"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )


def run_and_extract(notebook: Path, package: Path, *params: str) -> dict[str, Any]:
    """``nbprod run NOTEBOOK --json PARAMS`` then ``nbprod extract`` of that run into
    ``package``, both asserted to succeed; returns the run's summary (id, folder, ...)."""
    run = nbprod("run", notebook, "--json", *params)
    assert run.returncode == 0, run.stdout + run.stderr
    summary: dict[str, Any] = json.loads(run.stdout)
    extract = nbprod("extract", notebook, "--run", summary["id"], "-o", package)
    assert extract.returncode == 0, extract.stdout + extract.stderr
    return summary


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_venv(folder: Path, *requirements: str | Path, index: list[str] | None = None) -> Path:
    """A clean venv (nothing but what ``requirements`` pull in); returns its python.
    ``index``: uv's index options for the install (default: PyPI)."""
    env = {**os.environ, "UV_CACHE_DIR": UV_CACHE}
    subprocess.run(
        [str(BIN / "uv"), "venv", "--quiet", "--python", sys.executable, str(folder)],
        check=True,
        env=env,
    )
    python = folder / "bin" / "python"
    if requirements:
        subprocess.run(
            [
                str(BIN / "uv"),
                "pip",
                "install",
                "--quiet",
                "--python",
                str(python),
                *(index or []),
                *map(str, requirements),
            ],
            check=True,
            env=env,
        )
    return python


# The extras every shared example venv has: end-to-end (test), batch (parquet), serve.
SHARED_EXTRAS = "test,serve,parquet"


def shared_example(name: str, factory: Any) -> dict[str, Any]:
    """An example notebook checked, run, extracted and installed (``SHARED_EXTRAS``) in a
    clean venv, built once per test session and shared by every test file that needs it,
    also across pytest-xdist workers (a file lock: one builds, the others wait).

    The build is read-only for its users: each gets a scratch folder of its own as
    ``root`` (``factory`` is pytest's ``tmp_path_factory``).
    """
    import fcntl

    from paths import copy_example

    base = factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-examples"
    shared.mkdir(parents=True, exist_ok=True)
    folder = shared / name
    built = folder / "build.json"
    with (shared / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not built.is_file():
            _build_example(name, folder, copy_example)
    build: dict[str, Any] = json.loads(built.read_text())
    return {
        "name": name,
        "notebook": Path(build["notebook"]),
        "run": build["run"],
        "run_dir": Path(build["run"]["folder"]),
        "package_dir": Path(build["package_dir"]),
        "python": Path(build["python"]),
        "check": build["check"],
        "root": factory.mktemp(f"{name}-scratch"),
    }


def _build_example(name: str, folder: Path, copy_example: Any) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
    notebook = copy_example(name, folder / "project")
    before = notebook.read_bytes()
    check = nbprod("check", notebook)
    assert check.returncode == 0, check.stdout + check.stderr
    run = nbprod("run", notebook, "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(run.stdout)
    assert summary["status"] == "succeeded", summary
    package = folder / "package"
    extract = nbprod("extract", notebook, "--run", summary["id"], "-o", package)
    assert extract.returncode == 0, extract.stdout + extract.stderr
    assert notebook.read_bytes() == before, "nbprod must never modify the user's notebook"
    python = make_venv(folder / "venv", f"{package}[{SHARED_EXTRAS}]")
    build = {
        "notebook": str(notebook),
        "run": summary,
        "package_dir": str(package),
        "python": str(python),
        "check": check.stdout,
    }
    (folder / "build.json").write_text(json.dumps(build))
