"""Cold start to the first prediction: a fresh process on ONNX Runtime against one on the
saved scikit-learn objects.

What it builds, in a temporary folder: each example notebook (``wine_forest``,
``cancer_threshold``, ``diabetes_regression``) run once (``nbprod run``) and extracted
with its models converted (``nbprod extract --onnx``), or the one package given with
``--package`` (a folder ``nbprod extract --onnx`` wrote); all installed with their
``onnx`` extra into one clean venv (uv, the shared cache ``.cache/uv``).

What it times, per package: a fresh ``python child.py`` that imports pandas and the
package, builds a one-row frame from a record the notebook passed (its parity record)
and calls ``predict()`` once, as a script or a batch job that starts, predicts and
exits does. The same package, the same venv; the two sides differ only by
``<PREFIX>_BACKEND``: ``skops`` (the saved scikit-learn objects) against the default
``auto`` (ONNX Runtime, since onnxruntime is installed). A third process imports pandas
and numpy only and exits: the floor that neither side can go under. The processes
alternate (skops, onnx, floor; the order rotated each round) ``--processes`` times each,
so that a busy moment of the shared machine hits all sides. Two times per process:

- wall: from spawning it to its exit (``subprocess.run``), interpreter start-up and exit
  included;
- inside: measured by the child, from before its first import to after ``predict()``
  returned.

Bytecode caches are warm on every side first, as in any installed environment: one
untimed run of each side with ``PYTHONDONTWRITEBYTECODE`` lifted (uv does not compile
bytecode at install); the timed runs keep the environment's setting. Each child reports
which of scikit-learn, skops, scipy and onnxruntime ended up in ``sys.modules``, and what
each artifact was loaded with (``backends()``), which explains the difference.

Goal (issue 15): the onnx side's wall time at most 0.3x the skops side's, as the median
of the per-round ratios, for the forest. Nothing is kept.

Run from the repository root:
    .venv/bin/python bench/coldstart.py [--processes N] [--package EXTRACTED_FOLDER]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serve import make_venv, nbprod, progress  # bench/ is this script's folder on sys.path

from nbprod.runtime.values import decode

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ("wine_forest", "cancer_threshold", "diabetes_regression")
GOAL = 0.3  # onnx wall time / skops wall time, at most
GOAL_EXAMPLE = "wine_forest"
WATCHED = ("sklearn", "skops", "scipy", "onnxruntime")

# The timed child: argv = package, the record as JSON. Its first timestamp is taken
# before any import of pandas or the package.
CHILD = """
import time

started = time.perf_counter()
import importlib
import json
import sys

import pandas as pd

package = importlib.import_module(sys.argv[1])
package.predict(pd.DataFrame([json.loads(sys.argv[2])]))
inside = time.perf_counter() - started
watched = [name for name in {watched!r} if name in sys.modules]
print(json.dumps({{"inside": inside, "modules": watched, "backends": package.backends()}}))
"""
FLOOR = """
import time

started = time.perf_counter()
import json

import numpy
import pandas

print(json.dumps({"inside": time.perf_counter() - started, "modules": [], "backends": {}}))
"""


@dataclass
class Side:
    name: str  # skops, onnx, floor
    command: list[str]
    env: dict[str, str]
    wall: list[float] = field(default_factory=list)
    inside: list[float] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    backends: dict[str, str] = field(default_factory=dict)


@dataclass
class Measured:
    package: str
    sides: dict[str, Side]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=20, help="timed processes per side")
    parser.add_argument(
        "--package", type=Path, help="a package folder extracted with --onnx (default: build)"
    )
    options = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nbprod-bench-coldstart-"))
    results: list[Measured] = []
    try:
        if options.package is not None:
            packages = [options.package.resolve()]
        else:
            packages = [build_package(tmp, name) for name in EXAMPLES]
        python = make_venv(tmp / "venv", *(f"{p}[onnx]" for p in packages))
        child, floor = tmp / "child.py", tmp / "floor.py"
        child.write_text(CHILD.format(watched=WATCHED), encoding="utf-8")
        floor.write_text(FLOOR, encoding="utf-8")
        for package_dir in packages:
            name, record = package_name(package_dir), first_record(package_dir)
            command = [str(python), str(child), name, json.dumps(record)]
            variable = f"{name.upper()}_BACKEND"
            base = {k: v for k, v in os.environ.items() if k != variable}
            sides = {
                "skops": Side("skops", command, {**base, variable: "skops"}),
                "onnx": Side("onnx", command, {**base, variable: "auto"}),
                "floor": Side("floor", [str(python), str(floor)], base),
            }
            results.append(Measured(name, measure(name, sides, options.processes)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, options.processes)


# -- building ---------------------------------------------------------------------------------
def build_package(tmp: Path, example: str) -> Path:
    """The example notebook run and extracted with --onnx; returns the package folder."""
    progress(f"running and extracting example_notebooks/{example}.ipynb with --onnx")
    project = tmp / f"project-{example}"
    shutil.copytree(ROOT / "example_notebooks" / "data", project / "data")
    notebook = Path(shutil.copy(ROOT / "example_notebooks" / f"{example}.ipynb", project))
    run = json.loads(nbprod("run", str(notebook), "--json"))
    package_dir = tmp / f"package-{example}"
    nbprod("extract", str(notebook), "--run", run["id"], "-o", str(package_dir), "--onnx")
    return package_dir


def package_name(package_dir: Path) -> str:
    found = [p.parent.name for p in (package_dir / "src").glob("*/__init__.py")]
    if len(found) != 1:
        sys.exit(f"{package_dir} is not a package nbprod extracted (no src/<package>)")
    manifest = package_dir / "src" / found[0] / "artifacts" / "manifest.json"
    entries = json.loads(manifest.read_text(encoding="utf-8"))["artifacts"].values()
    if not any("files" in entry.get("onnx", {}) for entry in entries):
        sys.exit(f"{package_dir}: no artifact has an ONNX form; extract it with --onnx")
    return found[0]


def first_record(package_dir: Path) -> dict[str, Any]:
    """The first row of the first call the notebook made, as a JSON record."""
    parity = package_dir / "tests" / "parity"
    call = json.loads((parity / "parity.json").read_text(encoding="utf-8"))["calls"][0]
    frame = decode(call["args"][0], parity).head(1)
    record: dict[str, Any] = json.loads(frame.to_json(orient="records"))[0]
    return record


# -- measuring --------------------------------------------------------------------------------
def measure(name: str, sides: dict[str, Side], processes: int) -> dict[str, Side]:
    progress(f"{name}: warming up the bytecode caches")
    for side in sides.values():
        caching = {k: v for k, v in side.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        for _ in range(2):  # the second one starts from the caches the first wrote
            answer = run_child(side.command, caching)[1]
        side.modules, side.backends = answer["modules"], answer["backends"]
    progress(f"{name}: {processes} processes per side, alternating")
    order = list(sides.values())
    for round_number in range(processes):
        turn = round_number % len(order)
        for side in order[turn:] + order[:turn]:
            wall, answer = run_child(side.command, side.env)
            side.wall.append(wall)
            side.inside.append(answer["inside"])
    return sides


def run_child(command: list[str], env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} failed:\n{done.stderr[-2000:]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return wall, answer


# -- the report -------------------------------------------------------------------------------
def report(results: list[Measured], processes: int) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\ncold start to the first prediction: {processes} fresh processes per side, "
        f"alternating; {os.cpu_count()} cores (load average {load}); median seconds"
    )
    print(f"{'package':21}{'side':7}{'wall':>7}{'inside':>8}   imported / artifacts on")
    for result in results:
        for side in result.sides.values():
            wall, inside = statistics.median(side.wall), statistics.median(side.inside)
            if side.name == "floor":
                what = "pandas and numpy only"
            else:
                backends = ", ".join(f"{n}: {b}" for n, b in side.backends.items())
                what = f"{', '.join(side.modules) or 'none of ' + '/'.join(WATCHED)}; {backends}"
            print(f"{result.package:21}{side.name:7}{wall:7.3f}{inside:8.3f}   {what}")
    print()
    for result in results:
        skops, onnx, floor = (result.sides[s] for s in ("skops", "onnx", "floor"))
        wall = per_round(onnx.wall, skops.wall)
        inside = per_round(onnx.inside, skops.inside)
        above = per_round(
            [o - f for o, f in zip(onnx.wall, floor.wall, strict=True)],
            [s - f for s, f in zip(skops.wall, floor.wall, strict=True)],
        )
        verdict = ""
        if result.package == GOAL_EXAMPLE:
            verdict = f"  (goal <= {GOAL}: {'met' if wall <= GOAL else 'NOT met'})"
        print(f"{result.package}: onnx/skops wall = {wall:.3f}{verdict}")
        print(f"    inside = {inside:.3f}; (onnx - floor)/(skops - floor) wall = {above:.3f}")


def per_round(top: list[float], bottom: list[float]) -> float:
    """The median of the rounds' ratios: each round ran both sides a moment apart."""
    return statistics.median(a / b for a, b in zip(top, bottom, strict=True))


if __name__ == "__main__":
    main()
