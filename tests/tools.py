"""Helpers for tests: the nbprod CLI as a real subprocess, clean venvs through one uv cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
