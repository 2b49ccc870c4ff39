"""Score a 2 000 000-row file with a generated package: chunked ``<pkg> predict`` against
loading the whole file at once.

What it measures: the wine_forest example notebook is run once in a real kernel and
extracted into a temporary folder (see ``bench/predict.py``); its package is run from
its ``src`` folder with this Python. A CSV file (and the same rows as Parquet) of
``ROWS`` wine records, drawn from the example's data with noise, is written in pieces,
never held whole by this process. Then, each as its own process, one after the other:

- ``python -m wine_forest predict big.csv -o out.csv`` with the default chunk size and
  with a smaller one, and the same for Parquet in and out;
- the baseline a user would write without it: ``pd.read_csv`` of the whole file,
  ``predict_partition()``, ``to_csv`` (and ``read_parquet`` / ``to_parquet``);
- ``import wine_forest; wine_forest.load_artifacts()``: the memory floor (Python,
  pandas, scikit-learn, the model).

For each, the wall time, rows per second and the peak resident memory of the process
(``ru_maxrss`` from ``os.wait4``), shown against the floor and against the size of the
input frame loaded at once (``memory_usage(deep=True)``, reported by the baseline).
The chunked outputs are compared with the baseline's, byte for byte (CSV) and frame
for frame (Parquet). Every number comes from this one run; the temporary folder is
removed at the end.

Run from the repository root:  .venv/bin/python bench/batch.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from predict import ROOT, example_package  # bench/predict.py

NAME = "wine_forest"
ROWS = 2_000_000
PIECE = 100_000  # rows generated and written at a time
SMALL_CHUNK = 20_000

WHOLE_CSV = f"""
import json, sys
import pandas as pd
import {NAME}
records = pd.read_csv(sys.argv[1])
{NAME}.predict_partition(records).to_csv(sys.argv[2], index=False)
print(json.dumps({{"frame_bytes": int(records.memory_usage(deep=True).sum())}}))
"""
WHOLE_PARQUET = f"""
import sys
import pandas as pd
import {NAME}
records = pd.read_parquet(sys.argv[1])
{NAME}.predict_partition(records).to_parquet(sys.argv[2], index=False)
"""
# Prints the resident memory once loaded: the floor's peak is reached while loading.
FLOOR = f"""
import json, re
import {NAME}
{NAME}.load_artifacts()
status = open("/proc/self/status").read()
print(json.dumps({{"resident_bytes": int(re.search(r"VmRSS:\\s+(\\d+)", status)[1]) * 1024}}))
"""


@dataclass
class Measured:
    name: str
    seconds: float
    peak_bytes: int
    stdout: str


def run(name: str, argv: list[str], env: dict[str, str]) -> Measured:
    """Run one process to its end. Its own peak RSS comes from wait4 (RUSAGE_CHILDREN
    would give the maximum over every child so far); so this reaps it, not Popen."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(argv, env=env, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        if process.returncode:
            raise SystemExit(f"{name} exited with {process.returncode}:\n{stderr.read().decode()}")
        return Measured(name, seconds, usage.ru_maxrss * 1024, stdout.read().decode())


def write_inputs(folder: Path, rows: int) -> tuple[Path, Path]:
    """``rows`` wine records as CSV and as Parquet, written ``PIECE`` rows at a time."""
    data = pd.read_csv(ROOT / "example_notebooks" / "data" / "wine.csv").drop(columns=["target"])
    rng = np.random.default_rng(0)
    csv, parquet = folder / "big.csv", folder / "big.parquet"
    writer: pq.ParquetWriter | None = None
    for start in range(0, rows, PIECE):
        size = min(PIECE, rows - start)
        piece = data.iloc[rng.integers(0, len(data), size)].reset_index(drop=True)
        piece = piece * rng.uniform(0.95, 1.05, size=piece.shape)
        piece.to_csv(csv, mode="a", header=start == 0, index=False)
        table = pa.Table.from_pandas(piece, preserve_index=False)
        writer = writer or pq.ParquetWriter(parquet, table.schema)
        writer.write_table(table, row_group_size=PIECE)
    assert writer is not None
    writer.close()
    return csv, parquet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory(prefix="nbprod-bench-batch-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        package = example_package(NAME, root)
        print(f"{NAME}: run + extract in {time.perf_counter() - started:.1f} s (untimed)")
        started = time.perf_counter()
        csv, parquet = write_inputs(root, rows)
        print(
            f"input: {rows:,} rows, CSV {csv.stat().st_size / 1e6:.0f} MB, "
            f"Parquet {parquet.stat().st_size / 1e6:.0f} MB, "
            f"written in {time.perf_counter() - started:.1f} s (untimed)"
        )
        env = {**os.environ, "PYTHONPATH": str(package / "src")}
        cli = [sys.executable, "-m", NAME, "predict"]
        out = root / "out"
        out.mkdir()
        default = "chunked, 100,000 rows"
        small = f"chunked, {SMALL_CHUNK:,} rows"
        runs = [
            ("import + load artifacts", [sys.executable, "-c", FLOOR]),
            (f"CSV {default}", [*cli, str(csv), "-o", str(out / "chunked.csv")]),
            (
                f"CSV {small}",
                [*cli, str(csv), "-o", str(out / "small.csv"), "--chunk-size", str(SMALL_CHUNK)],
            ),
            ("CSV whole file", [sys.executable, "-c", WHOLE_CSV, str(csv), str(out / "whole.csv")]),
            (f"Parquet {default}", [*cli, str(parquet), "-o", str(out / "chunked.parquet")]),
            (
                "Parquet whole file",
                [sys.executable, "-c", WHOLE_PARQUET, str(parquet), str(out / "whole.parquet")],
            ),
        ]
        measured = {name: run(name, argv, env) for name, argv in runs}
        same_csv = all(
            (out / name).read_bytes() == (out / "whole.csv").read_bytes()
            for name in ("chunked.csv", "small.csv")
        )
        same_parquet = pd.read_parquet(out / "chunked.parquet").equals(
            pd.read_parquet(out / "whole.parquet")
        )

    frame = json.loads(measured["CSV whole file"].stdout)["frame_bytes"]
    floor = measured["import + load artifacts"].peak_bytes
    resident = json.loads(measured["import + load artifacts"].stdout)["resident_bytes"]
    print(f"input frame loaded at once: {frame / 1e6:.0f} MB (memory_usage(deep=True))")
    print(
        f"floor: peak {floor / 1e6:.0f} MB while loading the model, {resident / 1e6:.0f} MB "
        "resident once loaded; a run whose chunks need less than the difference stays at it"
    )
    print()
    print(
        f"{'':34} {'seconds':>8} {'rows/s':>10} {'peak RSS':>10} {'above floor':>12} {'/ frame':>8}"
    )
    for name, m in measured.items():
        above = m.peak_bytes - floor
        rate = f"{rows / m.seconds:10,.0f}" if name != "import + load artifacts" else f"{'':10}"
        print(
            f"{name:34} {m.seconds:8.1f} {rate} {m.peak_bytes / 1e6:8.0f}MB "
            f"{above / 1e6:10.0f}MB {above / frame:7.2f}x"
        )
    print()
    for kind in ("CSV", "Parquet"):
        chunked, whole = measured[f"{kind} {default}"], measured[f"{kind} whole file"]
        print(
            f"{kind}: chunked / whole file: peak RSS {chunked.peak_bytes / whole.peak_bytes:.2f}x, "
            f"above the floor {(chunked.peak_bytes - floor) / (whole.peak_bytes - floor):.2f}x, "
            f"time {chunked.seconds / whole.seconds:.2f}x"
        )
    print(f"outputs identical to the whole-file baseline: CSV {same_csv}, Parquet {same_parquet}")


if __name__ == "__main__":
    main()
