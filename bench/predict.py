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
+100 us on one row. Every number comes from this one process run; the temporary
folder is removed at the end.

Run from the repository root:  .venv/bin/python bench/predict.py
"""

from __future__ import annotations

import importlib
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


def example_package(name: str, folder: Path) -> Path:
    """Run the example notebook ``name`` (a real kernel) and extract its package into
    ``folder``; return the package project (its ``src`` holds the importable package)."""
    project = folder / name
    project.mkdir(parents=True)
    shutil.copytree(ROOT / "example_notebooks" / "data", project / "data")
    notebook = Path(shutil.copy(ROOT / "example_notebooks" / f"{name}.ipynb", project))
    record = run_notebook(notebook)
    package = folder / f"{name}_pkg"
    extract(notebook, record.id, package)
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


def time_pair(first: Callable[[], object], second: Callable[[], object]) -> Timing:
    """Per-call seconds of two calls, alternating which runs first."""
    for action in (first, second):  # warm-up: caches, lazy imports
        action()
    timing = Timing([], [])
    spent = 0.0
    while timing.repeats < MIN_REPEATS or (spent < BUDGET_SECONDS and timing.repeats < MAX_REPEATS):
        pair = [(timing.first, first), (timing.second, second)]
        for times, action in pair if timing.repeats % 2 == 0 else reversed(pair):
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
    package.load_artifacts()
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


def main() -> None:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="nbprod-bench-predict-") as tmp:
        for name, data_file in EXAMPLES.items():
            started = time.perf_counter()
            package_dir = example_package(name, Path(tmp))
            print(f"{name}: run + extract in {time.perf_counter() - started:.1f} s (untimed)")
            package = import_package(package_dir, name)
            data = pd.read_csv(ROOT / "example_notebooks" / "data" / data_file)
            rows += measure(name, package, data)
    print()
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


if __name__ == "__main__":
    main()
