"""Time a generated package's ``predict()`` against the notebook's own code called directly.

What it measures: for each example notebook (run once in a real kernel and extracted
with nbprod into a temporary folder; the package is imported from its ``src`` folder),
the median wall time of

- ``<pkg>.predict(frame)``: what users call, with its checks (artifacts loaded?, the
  input conformed to ``INPUT_SCHEMA``) and the notebook's inference code behind them;
- ``<pkg>.pipeline.<entry>(frame)``: the notebook's own features + model code, the
  same function ``predict()`` calls, with the same artifacts loaded and no checks;

on 1 row and on 10 000 rows (drawn with replacement from the example's data, with
the columns and dtypes the notebook passed, as a caller who read the same CSV
has them). The two calls alternate, first one then the other, so that a slow moment
of the machine hits both; each is repeated until it has run ``BUDGET_SECONDS`` (at
least ``MIN_REPEATS`` times). A last line per example times 10 000 rows whose
columns come in another order with an extra one: the notebook's code refuses them,
``predict()`` conforms them (``conform()``'s slow path, which copies the frame); the
notebook's code is then timed on the same rows in the right order. To show where the
difference goes, ``conform()`` is timed where ``predict()`` calls it, before the model:
``<entry>(conform(frame))`` against ``<entry>(frame)``. Differences are the median of the
per-repeat differences.

Targets: ``predict()`` within 1.05x of the notebook's code on 10 000 rows, and within
+100 us on one row. These comparisons run on the saved scikit-learn objects
(``load_artifacts(backend="skops")``), as before ONNX existed.

The packages are extracted with ``--onnx``, so each also ships its models as ONNX; the
second table times the same ``<pkg>.predict(frame)`` on its two paths, on 1 and 10 000
rows: the artifacts loaded with ``backend="skops"`` (scikit-learn) against those loaded
with ``backend="onnx"`` (ONNX Runtime, with the package's default threads: one for
inputs up to 256 rows, one per core above, ``<PREFIX>_ONNX_THREADS``). Both sets
are loaded once; before each call the pipeline's artifact globals are set to one set or
the other (untimed), so the calls alternate exactly like the pairs above. The speed-up
is skops time / onnx time, the median of the per-repeat ratios; goals (issue 15): at
least 10x on one row and 2x on 10 000 rows for the forest (``wine_forest``). Before
timing, both paths' answers are compared. Every number comes from this one process run;
the temporary folder is removed at the end.

Run from the repository root:  .venv/bin/python bench/predict.py
"""

from __future__ import annotations

import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from nbprod.execution.execute import run_notebook
from nbprod.extract import extract

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {  # example notebook -> the data file its data cell reads
    "wine_forest": "wine.csv",
    "diabetes_regression": "diabetes.csv",
    "cancer_threshold": "breast_cancer.csv",
}
ROWS = (1, 10_000)
BUDGET_SECONDS = 3.0
MIN_REPEATS = 30
MAX_REPEATS = 20_000
TARGET_RATIO = 1.05  # at 10 000 rows
TARGET_MICROSECONDS = 100.0  # at 1 row
ONNX_GOALS = {1: 10.0, 10_000: 2.0}  # skops time / onnx time, for the forest (issue 15)
ONNX_GOAL_EXAMPLE = "wine_forest"


def example_package(name: str, folder: Path) -> Path:
    """Run the example notebook ``name`` (a real kernel) and extract its package into
    ``folder``; return the package project (its ``src`` holds the importable package)."""
    project = folder / name
    project.mkdir(parents=True)
    shutil.copytree(ROOT / "example_notebooks" / "data", project / "data")
    notebook = Path(shutil.copy(ROOT / "example_notebooks" / f"{name}.ipynb", project))
    record = run_notebook(notebook)
    package = folder / f"{name}_pkg"
    extract(notebook, record.id, package, onnx=True)
    return package


def import_package(package: Path, name: str) -> ModuleType:
    sys.path.insert(0, str(package / "src"))
    return importlib.import_module(name)


@dataclass
class Timing:
    first: list[float]
    second: list[float]

    @property
    def repeats(self) -> int:
        return len(self.second)

    @property
    def extra(self) -> float:
        """The median of the per-repeat differences first - second (seconds): steadier
        than the difference of the medians when the machine's speed drifts."""
        return statistics.median(a - b for a, b in zip(self.first, self.second, strict=True))


def nothing() -> None:
    pass


def time_pair(
    first: Callable[[], object],
    second: Callable[[], object],
    setups: tuple[Callable[[], object], Callable[[], object]] = (nothing, nothing),
) -> Timing:
    """Per-call seconds of two calls, alternating which runs first; ``setups[i]`` runs,
    untimed, just before each call of the i-th."""
    for setup, action in zip(setups, (first, second), strict=True):  # warm-up: lazy imports
        setup()
        action()
    timing = Timing([], [])
    spent = 0.0
    while timing.repeats < MIN_REPEATS or (spent < BUDGET_SECONDS and timing.repeats < MAX_REPEATS):
        pair = [(timing.first, first, setups[0]), (timing.second, second, setups[1])]
        for times, action, setup in pair if timing.repeats % 2 == 0 else reversed(pair):
            setup()
            start = time.perf_counter()
            action()
            elapsed = time.perf_counter() - start
            times.append(elapsed)
            spent += elapsed
    return timing


@dataclass
class Row:
    example: str
    case: str
    predict: float  # median seconds of predict()
    direct: float  # median seconds of the notebook's code
    extra: float  # predict() - notebook's code, median of the paired differences
    conform: float  # conform() + notebook's code - notebook's code, the same way
    repeats: int

    @property
    def ratio(self) -> float:
        return self.predict / self.direct


def inputs(package: ModuleType, data: pd.DataFrame, rows: int) -> pd.DataFrame:
    """``rows`` records with exactly the columns and dtypes the notebook passed."""
    schema: dict[str, Any] = package.INPUT_SCHEMA
    names = [column["name"] for column in schema["columns"]]
    frame = data.sample(rows, replace=True, random_state=0).reset_index(drop=True)[names]
    return frame.astype({c["name"]: c["dtype"] for c in schema["columns"]})


def measure(name: str, package: ModuleType, data: pd.DataFrame) -> list[Row]:
    conform = importlib.import_module(f"{name}._schema").conform
    entry = getattr(package.pipeline, package.info()["entry_point"]["name"])
    package.load_artifacts(backend="skops")
    cases = {}
    for rows in ROWS:
        frame = inputs(package, data, rows)
        cases[f"{rows:,} row{'s' if rows > 1 else ''}"] = (frame, frame)
    # the notebook's code refuses these columns; predict() conforms them (a copy)
    cases[f"{ROWS[-1]:,} rows, slow path"] = (frame[frame.columns[::-1]].assign(extra=0.0), frame)
    measured = []
    for case, (given, expected) in cases.items():
        checked = time_pair(partial(package.predict, given), partial(entry, expected))
        # conform() timed in place, between model calls: alone in a loop its code and
        # data stay in the CPU caches and it looks several times cheaper than it is
        conformed = time_pair(
            lambda g=given: entry(conform(g, package.INPUT_SCHEMA)), partial(entry, expected)
        )
        measured.append(
            Row(
                name,
                case,
                statistics.median(checked.first),
                statistics.median(checked.second),
                checked.extra,
                conformed.extra,
                checked.repeats,
            )
        )
    return measured


@dataclass
class Speedup:
    example: str
    rows: int
    skops: float  # median seconds of predict() on the saved scikit-learn objects
    onnx: float  # median seconds of predict() on ONNX Runtime
    ratio: float  # skops / onnx, median of the per-repeat ratios
    repeats: int
    models: str  # the artifacts that the onnx side runs with ONNX Runtime


def artifact_values(package: ModuleType, backend: str) -> dict[str, Any]:
    """The pipeline's artifact globals as ``load_artifacts(backend=...)`` sets them."""
    package.load_artifacts(backend=backend)
    return {name: getattr(package.pipeline, name) for name in package.ARTIFACTS}


def measure_onnx(name: str, package: ModuleType, data: pd.DataFrame) -> list[Speedup]:
    """``predict()`` on the skops path against ``predict()`` on the onnx path."""
    skops = artifact_values(package, "skops")
    onnx = artifact_values(package, "onnx")
    models = ", ".join(n for n, path in package.backends().items() if path == "onnx")

    def use(values: dict[str, Any]) -> None:
        for artifact, value in values.items():
            setattr(package.pipeline, artifact, value)

    setups = (partial(use, skops), partial(use, onnx))
    measured = []
    for rows in ROWS:
        frame = inputs(package, data, rows)
        answers = []
        for setup in setups:
            setup()
            answers.append(np.asarray(package.predict(frame)))
        if not np.allclose(*answers, rtol=1e-4, atol=1e-5):
            sys.exit(f"{name}: the onnx path's predictions differ from the skops path's")
        timing = time_pair(partial(package.predict, frame), partial(package.predict, frame), setups)
        ratio = statistics.median(a / b for a, b in zip(timing.first, timing.second, strict=True))
        skops_time, onnx_time = statistics.median(timing.first), statistics.median(timing.second)
        measured.append(Speedup(name, rows, skops_time, onnx_time, ratio, timing.repeats, models))
    return measured


def main() -> None:
    rows: list[Row] = []
    speedups: list[Speedup] = []
    with tempfile.TemporaryDirectory(prefix="nbprod-bench-predict-") as tmp:
        for name, data_file in EXAMPLES.items():
            started = time.perf_counter()
            package_dir = example_package(name, Path(tmp))
            print(
                f"{name}: run + extract --onnx in {time.perf_counter() - started:.1f} s (untimed)"
            )
            package = import_package(package_dir, name)
            data = pd.read_csv(ROOT / "example_notebooks" / "data" / data_file)
            rows += measure(name, package, data)
            speedups += measure_onnx(name, package, data)
    print()
    print("predict() against the notebook's code, both on the saved scikit-learn objects")
    print(
        f"{'example':20} {'input':22} {'predict()':>10} {'notebook':>10} {'ratio':>7} "
        f"{'difference':>10} {'of which conform()':>18} {'repeats':>8}"
    )
    for row in rows:
        print(
            f"{row.example:20} {row.case:22} {row.predict * 1e6:8.0f}us {row.direct * 1e6:8.0f}us "
            f"{row.ratio:6.3f}x {row.extra * 1e6:+8.0f}us {row.conform * 1e6:+16.0f}us "
            f"{row.repeats:8}"
        )
    print()
    for row in rows:
        if row.case == "1 row":
            verdict = "met" if row.extra * 1e6 <= TARGET_MICROSECONDS else "MISSED"
            print(
                f"{row.example}, 1 row: {row.extra * 1e6:+.0f} us "
                f"(target <= +{TARGET_MICROSECONDS:.0f} us): {verdict}"
            )
        elif row.case == f"{ROWS[-1]:,} rows":
            verdict = "met" if row.ratio <= TARGET_RATIO else "MISSED"
            print(
                f"{row.example}, {row.case}: {row.ratio:.3f}x "
                f"(target <= {TARGET_RATIO}x): {verdict}"
            )
    report_onnx(speedups)


def report_onnx(speedups: list[Speedup]) -> None:
    import onnxruntime

    print()
    print(
        f"predict() on ONNX Runtime {onnxruntime.__version__} against predict() on the saved "
        f"scikit-learn objects, same package, alternating ({os.cpu_count()} cores, load "
        f"average {os.getloadavg()[0]:.1f}; ONNX Runtime on one thread up to 256 rows, one "
        "per core above)"
    )
    print(
        f"{'example':20} {'input':11} {'skops':>10} {'onnx':>10} {'speed-up':>9} "
        f"{'goal':>6} {'repeats':>8}   on ONNX Runtime"
    )
    for s in speedups:
        goal = ONNX_GOALS[s.rows]
        shown = f">={goal:.0f}x" if s.example == ONNX_GOAL_EXAMPLE else ""
        print(
            f"{s.example:20} {f'{s.rows:,} row' + ('s' if s.rows > 1 else ''):11} "
            f"{s.skops * 1e6:8.0f}us {s.onnx * 1e6:8.0f}us {s.ratio:8.1f}x {shown:>6} "
            f"{s.repeats:8}   {s.models or 'nothing'}"
        )
    print()
    for s in speedups:
        if s.example == ONNX_GOAL_EXAMPLE:
            goal = ONNX_GOALS[s.rows]
            verdict = "met" if s.ratio >= goal else "MISSED"
            print(
                f"{s.example}, {s.rows:,} row{'s' if s.rows > 1 else ''}: speed-up skops/onnx "
                f"{s.ratio:.1f}x (goal >= {goal:.0f}x): {verdict}"
            )


if __name__ == "__main__":
    main()
