"""The ONNX fast path of a package: convert its models, prove them, record the outcome.

``convert_models`` runs ``convert.py`` on the package rendered in a staging folder, in
a fresh process of the interpreter that ran the notebook (it has the models' libraries;
nbprod is kept out of it, as in ``verify``), and writes each model's outcome into the
package's ``artifacts/manifest.json``: under ``onnx``, the files with their SHA-256 and
what the package's adapter needs, or ``{"refused": reason}``. The model card and
``info()`` say the same.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbprod.exceptions import PackageBroken, UsageError
from nbprod.extract.verify import TIMEOUT, run_script
from nbprod.runtime import _onnx
from nbprod.runtime._formats import atomic_bytes

CONVERT = Path(__file__).with_name("convert.py")


@dataclass(frozen=True)
class OnnxOutcome:
    """Per model artifact, its ONNX form's spec or the reason it has none."""

    converted: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    tolerance: dict[str, float] = field(default_factory=lambda: dict(_onnx.TOLERANCE))

    def summary(self) -> dict[str, Any]:
        """What ``model_info.json`` (``info()``, ``GET /metadata``) says of it."""
        artifacts: dict[str, Any] = {
            name: {
                "converted": True,
                "converter": spec["converter"],
                "precision": spec["precision"],
                "methods": sorted(spec["methods"]),
            }
            for name, spec in self.converted.items()
        }
        artifacts.update(
            {name: {"converted": False, "reason": reason} for name, reason in self.refused.items()}
        )
        return {"artifacts": artifacts, "tolerance": self.tolerance, "versions": self.versions}


def convert_models(root: Path, package: str, python: str) -> OnnxOutcome:
    """Convert the models of the package rendered in ``root`` and record the outcome in
    its manifest; raise ``UsageError`` when the converters are not installed."""
    try:
        done = run_script(python, CONVERT, str(root / "src"), package)
    except subprocess.TimeoutExpired as error:
        raise PackageBroken(f"converting the models to ONNX took over {TIMEOUT:.0f} s") from error
    lines = done.stdout.strip().splitlines()
    try:
        report: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise PackageBroken(
            f"converting the models to ONNX failed (exit {done.returncode}): "
            f"{done.stderr.strip()[-2000:]}"
        ) from None
    if report.get("missing"):
        raise UsageError(
            f"--onnx needs {', '.join(report['missing'])} in the Python that ran the notebook "
            f"({python})",
            f"install them there: {python} -m pip install 'nbprod[onnx]'",
        )
    if not report["ok"]:
        raise PackageBroken(
            f"converting the models to ONNX failed: {report['error']}\n{report['traceback']}"
        )
    outcome = OnnxOutcome(versions=report["versions"])
    for name, result in report["artifacts"].items():
        if "onnx" in result:
            outcome.converted[name] = result["onnx"]
        else:
            outcome.refused[name] = result["refused"]
    _record(root / "src" / package / "artifacts", outcome)
    return outcome


def _record(folder: Path, outcome: OnnxOutcome) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    for name, spec in outcome.converted.items():
        manifest["artifacts"][name]["onnx"] = {**spec, "tolerance": outcome.tolerance}
    for name, reason in outcome.refused.items():
        manifest["artifacts"][name]["onnx"] = {"refused": reason}
    atomic_bytes(path, json.dumps(manifest, indent=2, sort_keys=True).encode())
