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
