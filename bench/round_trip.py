"""What the end-of-run round trip costs: ``nbprod run`` with and without it.

At the end of a run nbprod generates the run's package into a scratch folder and has
a fresh process (started with the kernel, so its imports overlap with the notebook)
import it, load its artifacts and replay the parity record. This measures, for each
shipped example notebook, the wall-clock time of ``run_notebook`` with the round
trip (``RunOptions(round_trip=True)``, what ``nbprod run`` does) against without it
(what a sweep's runs do), alternating the two ``REPEATS`` times after one untimed
warm-up each, and prints the medians and their ratio, all measured in this one
process run: no stored baselines, no thresholds.

Run from the repository root:  .venv/bin/python bench/round_trip.py
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from nbprod.execution.execute import RunOptions, run_notebook

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "example_notebooks"
NAMES = ("wine_forest", "diabetes_regression", "cancer_threshold")
REPEATS = 5


def timed(notebook: Path, round_trip: bool) -> float:
    started = time.perf_counter()
    run_notebook(notebook, {}, RunOptions(round_trip=round_trip))
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        shutil.copytree(EXAMPLES / "data", folder / "data")
        print(f"{'notebook':<22}{'without':>10}{'with':>10}{'ratio':>8}   (medians of {REPEATS})")
        for name in NAMES:
            notebook = Path(shutil.copy(EXAMPLES / f"{name}.ipynb", folder))
            timed(notebook, False), timed(notebook, True)  # warm-up: caches, kernelspecs
            without, with_ = [], []
            for _ in range(REPEATS):
                without.append(timed(notebook, False))
                with_.append(timed(notebook, True))
            a, b = statistics.median(without), statistics.median(with_)
            print(f"{name:<22}{a:>9.2f}s{b:>9.2f}s{b / a:>7.2f}x", flush=True)


if __name__ == "__main__":
    sys.exit(main())
