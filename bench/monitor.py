"""Drift verdicts of ``drift_report`` against Evidently's data-drift preset, in one run.

The data is an example notebook's own: ``example_notebooks/data/diabetes.csv`` (442
rows; numeric columns, and the categorical ``age_band`` and ``sex``), without its
target. The reference is the training profile nbprod makes of those rows with the
function that profiles a run (``_profile.profile``); Evidently gets the 442 rows
themselves, which is all it knows how to compare with.

Production batches of ``--rows`` rows (default 1 000) are drawn with replacement, over
``--seeds`` seeds (default 100), in four scenarios:

- unchanged: drawn as they are;
- shift: ``bmi`` moved by 0.5 of its standard deviation;
- doubled: ``age_band`` ``65_plus`` drawn twice as often as in the data;
- nulls: 20 % of ``bp`` missing.

A verdict on unchanged data is a false alarm when any column is flagged; a verdict on a
changed batch is a detection when the changed column is among those flagged. Targets
for nbprod: false alarms at most 5 %, each detection at least 95 %. Evidently runs with
its defaults (per column: a K-S or chi-square test at p < 0.05 for a reference this
small; the data set drifts when half the columns do): both its per-column rate and its
data-set verdict are printed. Its time per batch is measured in its own process, after
its imports, as nbprod's is.

Evidently 0.7 needs pandas < 3 and is a benchmark dependency only: it is installed with
uv into ``.cache/bench-evidently`` on first use (``--no-evidently`` skips it).

Run from the repository root:  .venv/bin/python bench/monitor.py [--seeds N] [--rows N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nbprod.runtime._profile import profile
from nbprod.runtime.monitor import drift_report

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "example_notebooks" / "data" / "diabetes.csv"
VENV = ROOT / ".cache" / "bench-evidently"
EVIDENTLY = ("evidently==0.7.23", "pandas<3", "pyarrow")
SHIFTED, CATEGORY, VALUE, NULLED = "bmi", "age_band", "65_plus", "bp"


def batch(data: pd.DataFrame, scenario: str, seed: int, rows: int) -> pd.DataFrame:
    """``rows`` rows drawn from ``data`` with replacement, changed as ``scenario`` says."""
    rng = np.random.default_rng(seed)
    weights = np.ones(len(data))
    if scenario == "doubled":
        chosen = (data[CATEGORY] == VALUE).to_numpy()
        share = chosen.mean()
        # twice the share: p/(p + (1-p) r) = 2p  =>  weight of the others r
        weights[~chosen] = (1 - 2 * share) / (2 * (1 - share))
    drawn = data.sample(rows, replace=True, weights=weights, random_state=rng)
    drawn = drawn.reset_index(drop=True)
    if scenario == "shift":
        drawn[SHIFTED] = drawn[SHIFTED] + 0.5 * data[SHIFTED].std(ddof=0)
    elif scenario == "nulls":
        drawn.loc[rng.random(rows) < 0.2, NULLED] = np.nan
    return drawn


SCENARIOS: dict[str, str | None] = {
    "unchanged": None,
    "shift": SHIFTED,
    "doubled": CATEGORY,
    "nulls": NULLED,
}


def as_log(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows as the package's prediction log holds them (inputs only: no model here)."""
    log = frame.add_prefix("in.")
    log.insert(0, "status", np.int16(200))
    return log


def nbprod_flags(
    reference: dict[str, Any], batches: dict[str, list[pd.DataFrame]]
) -> tuple[dict[str, list[set[str]]], float]:
    flags: dict[str, list[set[str]]] = {}
    started = time.perf_counter()
    for scenario, frames in batches.items():
        flags[scenario] = [flagged(drift_report(as_log(f), profile=reference)) for f in frames]
    count = sum(len(frames) for frames in batches.values())
    return flags, (time.perf_counter() - started) / count


def flagged(report: Any) -> set[str]:
    """The input columns a report says drifted."""
    data = report.to_dict()
    return {c["name"] for c in data["columns"] if c["drifted"] and c["role"] == "input"}


EVIDENTLY_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    folder = Path(sys.argv[1])
    reference = pd.read_parquet(folder / "reference.parquet")
    categorical = [c for c in reference.columns if reference[c].dtype == object]
    numerical = [c for c in reference.columns if c not in categorical]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    ref = Dataset.from_pandas(reference, data_definition=definition)
    out, seconds, count = {}, 0.0, 0
    for path in sorted(folder.glob("*-*.parquet")):
        scenario = path.stem.split("-")[0]
        current = Dataset.from_pandas(pd.read_parquet(path), data_definition=definition)
        started = time.perf_counter()
        result = Report([DataDriftPreset()]).run(current, ref).dict()
        seconds += time.perf_counter() - started
        count += 1
        columns, dataset = [], False
        for metric in result["metrics"]:
            config = metric["config"]
            if config["type"].endswith("ValueDrift") and metric["value"] < config["threshold"]:
                columns.append(config["column"])
            if config["type"].endswith("DriftedColumnsCount"):
                dataset = metric["value"]["share"] >= config["drift_share"]
        out.setdefault(scenario, []).append({"columns": columns, "dataset": dataset})
    print(json.dumps({"flags": out, "seconds": seconds / max(count, 1)}))
    """
)


def evidently_flags(
    data: pd.DataFrame, batches: dict[str, list[pd.DataFrame]]
) -> tuple[dict[str, list[dict[str, Any]]], float]:
    python = VENV / "bin" / "python"
    if not python.exists():
        uv = Path(sys.executable).parent / "uv"
        subprocess.run([str(uv), "venv", "-q", str(VENV), "--python", sys.executable], check=True)
        subprocess.run(
            [str(uv), "pip", "install", "-q", "--python", str(python), *EVIDENTLY], check=True
        )
    with tempfile.TemporaryDirectory(prefix="nbprod-bench-monitor-") as tmp:
        folder = Path(tmp)
        plain = data.astype({c: object for c in data.columns if data[c].dtype.kind in "OUT"})
        plain.to_parquet(folder / "reference.parquet")
        for scenario, frames in batches.items():
            for seed, frame in enumerate(frames):
                text = {c: object for c in plain.columns if plain[c].dtype == object}
                frame.astype(text).to_parquet(folder / f"{scenario}-{seed:04d}.parquet")
        done = subprocess.run(
            [str(python), "-c", EVIDENTLY_SCRIPT, str(folder)],
            check=True,
            capture_output=True,
            text=True,
        )
    result = json.loads(done.stdout)
    return result["flags"], result["seconds"]


def _any_flag(flags: set[str]) -> bool:
    return bool(flags)


def _flags(column: str) -> Callable[[set[str]], bool]:
    return lambda flags: column in flags


def rate(hits: list[bool]) -> str:
    return f"{100 * sum(hits) / len(hits):5.1f} %"


def report(
    seeds: int,
    rows: int,
    ours: dict[str, list[set[str]]],
    our_seconds: float,
    theirs: dict[str, list[dict[str, Any]]] | None,
    their_seconds: float | None,
) -> None:
    print(f"\n{seeds} seeds x {rows} rows per scenario, reference: {DATA.name}")
    header = f"{'scenario':<11}{'changed':<10}{'nbprod':>10}"
    if theirs is not None:
        header += f"{'Evidently column':>18}{'Evidently data set':>20}"
    print(header + "   (unchanged: false alarms; others: the changed column flagged)")
    verdicts: list[str] = []
    for scenario, column in SCENARIOS.items():
        hit = _any_flag if column is None else _flags(column)
        mine = [hit(f) for f in ours[scenario]]
        line = f"{scenario:<11}{column or '-':<10}{rate(mine):>10}"
        if theirs is not None:
            columns = [hit(set(f["columns"])) for f in theirs[scenario]]
            dataset = [bool(f["dataset"]) for f in theirs[scenario]]
            line += f"{rate(columns):>18}{rate(dataset):>20}"
        print(line)
        share = sum(mine) / len(mine)
        ok = share <= 0.05 if column is None else share >= 0.95
        verdicts.append(f"{scenario}: {'met' if ok else 'NOT met'}")
    times = f"\nseconds per batch: nbprod {our_seconds:.4f}"
    if their_seconds is not None:
        times += f", Evidently {their_seconds:.4f} ({their_seconds / our_seconds:.1f}x nbprod's)"
    print(times)
    print("targets (false alarms <= 5 %, detections >= 95 %): " + "; ".join(verdicts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--no-evidently", action="store_true")
    arguments = parser.parse_args()
    data = pd.read_csv(DATA).drop(columns=["target"])
    reference = profile([data], [], f"all {len(data)} rows of {DATA.name}")
    batches = {
        scenario: [batch(data, scenario, seed, arguments.rows) for seed in range(arguments.seeds)]
        for scenario in SCENARIOS
    }
    ours, our_seconds = nbprod_flags(reference, batches)
    theirs: dict[str, list[dict[str, Any]]] | None = None
    their_seconds: float | None = None
    if not arguments.no_evidently:
        theirs, their_seconds = evidently_flags(data, batches)
    report(arguments.seeds, arguments.rows, ours, our_seconds, theirs, their_seconds)


if __name__ == "__main__":
    main()
