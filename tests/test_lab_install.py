"""The wheel ships the prebuilt JupyterLab extension and enables the server extension:
`pip install nbprod` then `jupyter lab` needs no Node and no extra step.

The wheel is built as the README says (`uv build --wheel`, after scripts/setup.sh built
labextension/), installed into a fresh venv with JupyterLab, and Jupyter's own commands
run there with a PATH that holds nothing but that venv: no Node anywhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILT = ROOT / "nbprod" / "labextension"
SHARE = "share/jupyter/labextensions/nbprod"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

pytestmark = pytest.mark.slow


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert found, "uv is installed by scripts/setup.sh"
    return found


def run(
    command: list[str | Path], cwd: Path | None = None, env: dict[str, str] | None = None
) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = ANSI.sub("", result.stdout + result.stderr)
    assert result.returncode == 0, f"{command} failed:\n{output}"
    return output


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert (BUILT / "package.json").is_file(), "run scripts/setup.sh: it builds labextension/"
    out = tmp_path_factory.mktemp("wheel")
    run([uv(), "build", "--wheel", "--out-dir", out], cwd=ROOT)
    (found,) = out.glob("nbprod-*.whl")
    return found


def test_wheel_holds_the_built_extension_and_the_server_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    data = next(n.split("/")[0] for n in names if n.endswith(f".data/data/{SHARE}/install.json"))
    built = {p.relative_to(BUILT).as_posix() for p in BUILT.rglob("*") if p.is_file()}
    assert {"package.json", "static/style.js"} <= built
    assert any(name.startswith("static/remoteEntry.") for name in built)
    shipped = {n.removeprefix(f"{data}/data/{SHARE}/") for n in names if f"/{SHARE}/" in n}
    assert shipped == built | {"install.json"}
    assert f"{data}/data/etc/jupyter/jupyter_server_config.d/nbprod.json" in names


def test_installed_wheel_is_enabled_without_node(
    wheel: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("no-node")
    venv = home / "venv"
    run([uv(), "venv", "--quiet", "--python", sys.executable, venv])
    python = venv / "bin" / "python"
    run([uv(), "pip", "install", "--quiet", "--python", python, wheel, "jupyterlab>=4.6,<4.7"])

    # Only the venv on PATH, and no user-level Jupyter folders: what the wheel installed
    # into the venv is all there is.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("JUPYTER", "VIRTUAL_ENV", "NODE"))
    }
    env.update(
        PATH=str(venv / "bin"),
        HOME=str(home),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
    )
    assert shutil.which("node", path=env["PATH"]) is None
    jupyter = venv / "bin" / "jupyter"

    labextensions = run([jupyter, "labextension", "list"], env=env, cwd=home)
    assert re.search(r"nbprod v0\.1\.0 enabled\s+OK \(python, nbprod\)", labextensions), (
        labextensions
    )
    assert f"{venv}/share/jupyter/labextensions" in labextensions

    server_extensions = run([jupyter, "server", "extension", "list"], env=env, cwd=home)
    assert re.search(r"nbprod\.jupyter\s+enabled", server_extensions), server_extensions
    assert re.search(r"nbprod\.jupyter\s+OK", server_extensions), server_extensions
