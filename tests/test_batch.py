"""Batch scoring of files by a generated package (``<pkg> predict IN -o OUT``), installed
in a clean venv: chunked CSV and Parquet, stdin/stdout, schema errors, interruptions.

One example notebook is run and extracted once: diabetes_regression, whose input has
integer, float and text columns and whose predictions are floats (compared as text,
digit for digit)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from paths import EXAMPLES
from tools import shared_example

pytestmark = pytest.mark.slow

NAME = "diabetes_regression"
ROWS = 50_000
CHUNK = 5_000

# predict_partition() on the whole file at once, with the ids in front: the reference.
REFERENCE = """
import sys
import pandas as pd
import {package}
records = pd.read_csv(sys.argv[1])
result = {package}.predict_partition(records)
pd.concat([records[["id"]], result], axis=1).to_csv(sys.argv[2], index=False)
"""

# The dtypes of each chunk as the package reads them, and as pd.read_csv alone would.
CHUNK_DTYPES = """
import json, sys
import pandas as pd
from {package} import batch
def dtypes(chunk):
    return {{name: str(dtype) for name, dtype in chunk.dtypes.items()}}
typed = [dtypes(chunk) for chunk, _ in batch._chunks(sys.argv[1], {chunk}, [])]
plain = [dtypes(chunk) for chunk in pd.read_csv(sys.argv[1], chunksize={chunk})]
print(json.dumps({{"typed": typed, "plain": plain}}))
"""


@dataclass(frozen=True)
class Shipped:
    root: Path
    python: Path
    script: Path
    schema: dict


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Shipped:
    """The example run, extracted and installed with its ``parquet`` extra in a clean venv
    (built once per session, shared with the end-to-end tests: ``tools.shared_example``)."""
    build = shared_example(NAME, tmp_path_factory)
    python, package = build["python"], build["package_dir"]
    schema = json.loads((package / "src" / NAME / "schema.json").read_text())
    return Shipped(build["root"], python, python.parent / NAME.replace("_", "-"), schema)


@pytest.fixture(scope="module")
def records(shipped: Shipped) -> Path:
    """ROWS records drawn from the example's data, with an ``id`` column. The first
    chunk's ``sex`` is digits ("1"/"2", still text) and the fourth chunk's ``bmi`` are
    whole numbers, so pandas alone would type those chunks differently."""
    data = pd.read_csv(EXAMPLES / "data" / "diabetes.csv").drop(columns=["target"])
    rng = np.random.default_rng(0)
    frame = data.iloc[rng.integers(0, len(data), ROWS)].reset_index(drop=True)
    frame["bmi"] = frame["bmi"] * rng.uniform(0.9, 1.1, ROWS)
    frame.insert(0, "id", np.arange(ROWS) * 7)
    first = frame.index < CHUNK
    frame.loc[first, "sex"] = np.where(frame.loc[first, "sex"] == "M", "1", "2")
    fourth = (frame.index >= 3 * CHUNK) & (frame.index < 4 * CHUNK)
    frame["bmi"] = frame["bmi"].astype(object)  # so that these are written "32", not "32.0"
    frame.loc[fourth, "bmi"] = [int(v) for v in frame.loc[fourth, "bmi"].round()]
    path = shipped.root / "records.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def expected(shipped: Shipped, records: Path) -> Path:
    """The reference predictions, as a CSV file."""
    path = shipped.root / "expected.csv"
    script = REFERENCE.format(package=NAME)
    result = subprocess.run(
        [str(shipped.python), "-c", script, str(records), str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return path


def predict(
    shipped: Shipped, *args: str | Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(shipped.script), "predict", *map(str, args)],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=300,
    )


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_csv_is_scored_chunk_by_chunk_as_predict_scores_the_whole_file(
    shipped: Shipped, records: Path, expected: Path, tmp_path: Path
) -> None:
    target = tmp_path / "predictions.csv"
    result = predict(shipped, records, "-o", target, "--chunk-size", CHUNK, "--keep", "id")
    assert result.returncode == 0, result.stderr
    assert f"scored {ROWS:,} rows in {ROWS // CHUNK} chunks" in result.stderr
    assert target.read_text() == expected.read_text()  # row for row, digit for digit
    assert leftovers(tmp_path) == []


def test_every_chunk_is_read_with_the_schema_dtypes(shipped: Shipped, records: Path) -> None:
    script = CHUNK_DTYPES.format(package=NAME, chunk=CHUNK)
    result = subprocess.run(
        [str(shipped.python), "-c", script, str(records)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert len(seen["typed"]) == ROWS // CHUNK
    schema = {c["name"]: c["dtype"] for c in shipped.schema["columns"]}
    for dtypes in seen["typed"]:
        assert {name: dtypes[name] for name in schema} == schema
    # the file does exercise it: pandas alone types the first and fourth chunks otherwise
    assert seen["plain"][0]["sex"] == "int64"
    assert seen["plain"][3]["bmi"] == "int64"


def test_parquet_in_and_out(
    shipped: Shipped, records: Path, expected: Path, tmp_path: Path
) -> None:
    source = tmp_path / "records.parquet"
    pd.read_csv(records).to_parquet(source, row_group_size=CHUNK)
    target = tmp_path / "predictions.parquet"
    result = predict(shipped, source, "-o", target, "--chunk-size", CHUNK, "--keep", "id")
    assert result.returncode == 0, result.stderr
    assert f"scored {ROWS:,} rows in {ROWS // CHUNK} chunks" in result.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(target), pd.read_csv(expected))


def test_stdin_to_stdout(shipped: Shipped, records: Path, expected: Path) -> None:
    result = predict(shipped, "-", "--chunk-size", 20_000, "-q", stdin=records.read_text())
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    reference = pd.read_csv(expected)[["prediction"]]
    pd.testing.assert_frame_equal(pd.read_csv(StringIO(result.stdout)), reference)


def test_progress_is_drawn_on_a_terminal(shipped: Shipped, records: Path, tmp_path: Path) -> None:
    main, terminal = pty.openpty()
    process = subprocess.Popen(
        [str(shipped.script), "predict", str(records), "-o", str(tmp_path / "out.csv")],
        stdout=subprocess.DEVNULL,
        stderr=terminal,
    )
    os.close(terminal)
    drawn = b""
    with contextlib.suppress(OSError):  # EIO once the process has closed the terminal
        while chunk := os.read(main, 4096):
            drawn += chunk
    os.close(main)
    assert process.wait(timeout=300) == 0, drawn
    text = drawn.decode()
    assert re.search(r"\rdiabetes-regression predict: [\d,]+ rows \(\d+%\), [\d,]+ rows/s", text)
    assert f"scored {ROWS:,} rows in 1 chunk in" in text


@pytest.mark.parametrize(
    ("column", "row", "value", "expected_kind"),
    [("bmi", 23_456, "oops", "a number"), ("age", 31_000, "old", "an integer")],
)
def test_a_bad_value_is_named_by_its_row_in_the_file_and_its_column(
    shipped: Shipped,
    records: Path,
    tmp_path: Path,
    column: str,
    row: int,
    value: str,
    expected_kind: str,
) -> None:
    """Float columns are parsed as floats (the parser refuses the chunk), integer
    columns are inferred (the chunk's column comes out as text): both name the row."""
    frame = pd.read_csv(records, dtype=str, keep_default_na=False)
    frame.loc[row, column] = value
    source = tmp_path / "bad.csv"
    frame.to_csv(source, index=False)
    target = tmp_path / "predictions.csv"
    target.write_text("from an earlier run\n")
    result = predict(shipped, source, "-o", target, "--chunk-size", CHUNK)
    assert result.returncode == 2
    message = f"column {column!r}: expected {expected_kind}, got {value!r} in row {row}"
    assert f"error: {source}: {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert target.read_text() == "from an earlier run\n"
    assert leftovers(tmp_path) == []


def test_an_interrupted_run_leaves_no_output(
    shipped: Shipped, records: Path, tmp_path: Path
) -> None:
    target = tmp_path / "predictions.csv"
    process = subprocess.Popen(
        [str(shipped.script), "predict", str(records), "-o", str(target), "--chunk-size", "100"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size for p in tmp_path.glob(".*.part")):
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode != 0
    assert not target.exists()
    assert leftovers(tmp_path) == []


# The package's CLI called once per argument list in one process (importing
# scikit-learn once): exit code and stderr of each.
CLI_CALLS = """
import contextlib, io, json, sys
from {package}.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(argv)
    results.append([code, stderr.getvalue()])
print(json.dumps(results))
"""


def test_usage_errors_exit_with_2(shipped: Shipped, records: Path) -> None:
    calls = {
        "missing.csv: no such file": ["missing.csv"],
        "the chunk size must be at least 1 row, not 0": [str(records), "--chunk-size", "0"],
        "no column 'nope' to keep": [str(records), "--keep", "nope"],
        "no/such: no such folder": [str(records), "-o", f"{shipped.root}/no/such/out.csv"],
    }
    argvs = [["predict", *args] for args in calls.values()]
    script = CLI_CALLS.format(package=NAME)
    result = subprocess.run(
        [str(shipped.python), "-c", script, json.dumps(argvs)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    for message, (code, stderr) in zip(calls, json.loads(result.stdout), strict=True):
        assert code == 2, stderr
        assert message in stderr and "Traceback" not in stderr


def test_parquet_without_pyarrow_says_which_extra_to_install(
    shipped: Shipped, records: Path, tmp_path: Path
) -> None:
    source = tmp_path / "records.parquet"
    pd.read_csv(records, nrows=10).to_parquet(source)
    script = (
        "import sys\n"
        "sys.modules['pyarrow'] = None  # as if the parquet extra were not installed\n"
        f"from {NAME}.cli import main\n"
        f"sys.exit(main(['predict', {str(source)!r}, '-o', {str(tmp_path / 'out.csv')!r}]))\n"
    )
    result = subprocess.run([str(shipped.python), "-c", script], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "pip install 'diabetes-regression[parquet]'" in result.stderr
