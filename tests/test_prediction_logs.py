"""Prediction logs and ``GET /metrics`` of a generated package, as an operator meets them:
the extracted package in a clean venv (``[test,serve,parquet]``), real uvicorn servers,
real HTTP requests from threads, real files read back with pyarrow and pandas, and the
metrics parsed with prometheus_client's own parser.

The servers are stopped by their PIDs (SIGTERM to their process group: uvicorn's
graceful shutdown, which must flush the log), or killed (SIGKILL) where a crash is what
is tested.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_serve import NAME, SCRIPT, Installed, Server, records_of, running, stop
from tools import free_port, shared_example

pytestmark = pytest.mark.slow

PREFIX = NAME.upper()
META = ["request_id", "timestamp", "latency_ms", "status", "rejected_field", "source"]
TINY_ROLL_MB = "0.005"  # about 5 KB: any flush of a few dozen requests fills a file


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    build = shared_example(NAME, tmp_path_factory)  # the same build as test_serve's
    parity = build["run_dir"] / "parity"
    return Installed(
        build["package_dir"], build["run"]["id"], parity, build["python"], build["root"]
    )


# -- helpers ----------------------------------------------------------------------------------
def read_logs(folder: Path) -> pd.DataFrame:
    """Every closed file of ``folder``, one frame (each file checked to be whole)."""
    files = sorted(folder.glob("*.parquet"))
    assert files, f"no .parquet file in {folder}: {os.listdir(folder)}"
    return pd.concat([pq.read_table(path).to_pandas() for path in files], ignore_index=True)


def complete_batches(path: Path) -> pa.Table:
    """The complete record batches of an ``.arrows`` stream, as the log's contract says
    a reader takes them."""
    reader = pa.ipc.open_stream(pa.OSFile(str(path), "rb"))
    batches = []
    while True:
        try:
            batches.append(reader.read_next_batch())
        except StopIteration:
            break
        except (pa.ArrowInvalid, OSError):
            break
    return pa.Table.from_batches(batches, reader.schema)


def open_batches(folder: Path) -> int:
    """The complete record batches in the folder's open files."""
    count = 0
    for path in folder.glob("*.arrows"):
        with contextlib.suppress(FileNotFoundError, pa.ArrowInvalid):
            count += len(complete_batches(path).to_batches())
    return count


def logged_ids(folder: Path) -> set[str]:
    """The request ids in the folder's closed files and in the complete batches of its
    open ones (what a crash can no longer lose)."""
    ids: set[str] = set()
    for path in folder.glob("*.parquet"):
        ids |= set(pq.read_table(path, columns=["request_id"]).column(0).to_pylist())
    for path in folder.glob("*.arrows"):
        with contextlib.suppress(FileNotFoundError, pa.ArrowInvalid):
            ids |= set(complete_batches(path).column("request_id").to_pylist())
    return ids


def metrics_of(server: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``GET /metrics`` parsed by prometheus_client: (sample name, labels) -> value."""
    connection_status, headers, text = fetch_text(server, "/metrics")
    assert connection_status == 200, text
    assert headers["content-type"].startswith("text/plain"), headers
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def fetch_text(server: Server, path: str) -> tuple[int, dict[str, str], str]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read().decode()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def metric(values: dict[Any, float], name: str, **labels: str) -> float:
    return values.get((f"{NAME}_{name}", frozenset(labels.items())), 0.0)


def wait_for(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)


def post_from_threads(
    server: Server, bodies: list[tuple[str, Any]], threads: int
) -> dict[str, tuple[int, Any]]:
    """POST each (request id, JSON body) from ``threads`` threads at once: id -> answer."""
    answers: dict[str, tuple[int, Any]] = {}
    work = list(bodies)
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                if not work:
                    return
                request_id, payload = work.pop()
            status, _, body = server.post_json(payload, **{"X-Request-ID": request_id})
            with lock:
                answers[request_id] = (status, body)

    pool = [threading.Thread(target=client) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert len(answers) == len(bodies)
    return answers


def numeric_and_text(installed: Installed) -> tuple[str, str]:
    records = records_of(installed.first_frame().head(1))
    numeric = next(c for c in records[0] if isinstance(records[0][c], float))
    text = next(c for c in records[0] if isinstance(records[0][c], str))
    return numeric, text


# -- a server under load: logs rolled and read back, metrics, SIGTERM flushes ------------------
@pytest.fixture(scope="module")
def under_load(installed: Installed) -> dict[str, Any]:
    """A server logging into a tiny roll size, given 120 requests of 1 to 3 rows from 8
    threads in two waves and two refusals, its metrics read, then stopped with SIGTERM."""
    folder = installed.root / "load-logs"
    frame = installed.first_frame()
    records = records_of(frame)
    bodies = [
        (f"load-{n:03d}", records[n % len(records) : n % len(records) + 1 + n % 3])
        for n in range(120)
    ]
    bodies = [(rid, rows) for rid, rows in bodies if rows]
    numeric, text = numeric_and_text(installed)
    refusals = {
        "refused-missing": [{k: v for k, v in records[0].items() if k != text}],
        "refused-type": [{**records[0], numeric: "twelve"}],
    }
    args = ("--log-dir", str(folder), "--log-roll-mb", TINY_ROLL_MB)
    with running(installed, *args) as server:

        def logged() -> float:
            return metric(metrics_of(server), "prediction_log_records_total", outcome="logged")

        # two waves, each flushed before the next: the first file is full, so it rolls
        first = sum(len(payload) for _, payload in bodies[:60])
        answers = post_from_threads(server, bodies[:60], threads=8)
        wait_for(lambda: logged() == first, f"{first} records logged")
        answers |= post_from_threads(server, bodies[60:], threads=8)
        for request_id, payload in refusals.items():
            answers[request_id] = server.post_json(payload, **{"X-Request-ID": request_id})[::2]
        rows = sum(len(payload) for _, payload in bodies) + len(refusals)
        wait_for(lambda: logged() == rows, f"{rows} records logged")
        metrics = metrics_of(server)
        process = server.process
        stop(process)  # SIGTERM: uvicorn's graceful shutdown
        log = server.log_text()
    return {
        "folder": folder,
        "bodies": dict(bodies),
        "answers": answers,
        "refusals": {"refused-missing": text, "refused-type": numeric},
        "metrics": metrics,
        "log": log,
        "returncode": process.returncode,
        "rows": rows,
    }


def test_sigterm_flushes_everything_into_parquet(under_load: dict[str, Any]) -> None:
    folder: Path = under_load["folder"]
    # uvicorn shuts down gracefully, then exits by the signal it caught (recent versions)
    assert under_load["returncode"] in (0, -signal.SIGTERM), under_load["log"]
    assert "Application shutdown complete" in under_load["log"]
    assert not list(folder.glob("*.arrows")), os.listdir(folder)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], os.listdir(folder)
    files = sorted(folder.glob("*.parquet"))
    assert len(files) >= 2, "the tiny roll size must have rolled the log"
    pids = {path.name.split("-")[2] for path in files}
    assert len(pids) == 1 and pids.pop().isdigit()
    assert [int(path.stem.rsplit("-", 1)[1]) for path in files] == list(range(1, len(files) + 1))
    logs = read_logs(folder)
    assert len(logs) == under_load["rows"]
    assert "Prediction log in" in under_load["log"]


def test_logged_records_are_the_requests_and_their_answers(
    installed: Installed, under_load: dict[str, Any]
) -> None:
    logs = read_logs(under_load["folder"])
    assert list(logs.columns[: len(META)]) == META
    inputs = [c for c in logs.columns if c.startswith("in.")]
    assert inputs == [f"in.{c}" for c in installed.first_frame().columns]
    assert list(logs.columns[len(META) + len(inputs) :]) == ["out.prediction"]
    schema = pq.read_schema(sorted(under_load["folder"].glob("*.parquet"))[0])
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("status").type == pa.int16()
    assert schema.field("latency_ms").type == pa.float64()
    answered = logs[logs.status == 200]
    assert set(answered.source) == {"serve"}
    assert answered.rejected_field.isna().all()
    assert (answered.latency_ms > 0).all()
    for request_id, payload in under_load["bodies"].items():
        status, body = under_load["answers"][request_id]
        assert status == 200, body
        mine = answered[answered.request_id == request_id]
        assert len(mine) == len(payload), request_id
        assert mine.timestamp.nunique() == 1 and mine.latency_ms.nunique() == 1
        assert mine["out.prediction"].tolist() == body["predictions"]
        sent = pd.DataFrame(payload)
        for column in sent.columns:
            got = mine[f"in.{column}"].tolist()
            want = sent[column].tolist()
            if isinstance(want[0], float):
                np.testing.assert_allclose(got, want, err_msg=column)
            else:
                assert [str(v) for v in got] == [str(v) for v in want], column
    started = answered.timestamp.min()
    assert pd.Timestamp.now(tz="UTC") - started < pd.Timedelta(hours=1)


def test_refusals_are_logged_with_their_field(under_load: dict[str, Any]) -> None:
    logs = read_logs(under_load["folder"])
    refused = logs[logs.status != 200].set_index("request_id")
    assert sorted(refused.index) == sorted(under_load["refusals"])
    for request_id, field in under_load["refusals"].items():
        status, body = under_load["answers"][request_id]
        assert status == 422 and body["field"] == field
        assert refused.loc[request_id, "status"] == 422
        assert refused.loc[request_id, "rejected_field"] == field
        columns = [c for c in refused.columns if c.startswith(("in.", "out."))]
        assert refused.loc[request_id, columns].isna().all()


def test_metrics_count_the_requests(installed: Installed, under_load: dict[str, Any]) -> None:
    values = under_load["metrics"]
    answered = len(under_load["bodies"])
    assert metric(values, "requests_total", status="200") == answered
    assert metric(values, "requests_total", status="422") == 2
    assert metric(values, "request_duration_seconds_count") == answered + 2
    assert metric(values, "request_duration_seconds_bucket", le="+Inf") == answered + 2
    for field in under_load["refusals"].values():
        assert metric(values, "schema_rejections_total", field=field) == 1
    logged = under_load["rows"]
    assert metric(values, "prediction_log_records_total", outcome="logged") == logged
    assert metric(values, "prediction_log_records_total", outcome="dropped") == 0
    info = [labels for (name, labels) in values if name == f"{NAME}_model_info"]
    assert len(info) == 1
    labels = dict(info[0])
    assert labels["run_id"] == installed.run_id and labels["package"] == NAME
    assert labels["version"]
    assert "Metrics at GET /metrics" in under_load["log"]
    assert "without authentication" in under_load["log"]


# -- a full queue drops and counts -------------------------------------------------------------
def test_a_full_queue_drops_records_and_counts_them(installed: Installed) -> None:
    """A queue of one request between two flushes (a second apart) and a burst from 16
    threads: the queue overflows, the requests are answered all the same, and every
    record is either written or counted as dropped, in /metrics and in the files alike."""
    folder = installed.root / "full-queue-logs"
    records = records_of(installed.first_frame())
    bodies = [(f"burst-{n:04d}", [records[n % len(records)]]) for n in range(600)]
    env = {f"{PREFIX}_LOG_QUEUE_SIZE": "1"}
    with running(installed, "--log-dir", str(folder), env=env) as server:
        answers = post_from_threads(server, bodies, threads=16)
        assert {status for status, _ in answers.values()} == {200}
        wait_for(
            lambda: (
                sum(
                    metric(metrics_of(server), "prediction_log_records_total", outcome=outcome)
                    for outcome in ("logged", "dropped")
                )
                == len(bodies)
            ),
            "every record logged or dropped",
        )
        values = metrics_of(server)
        stop(server.process)
        log = server.log_text()
    dropped = metric(values, "prediction_log_records_total", outcome="dropped")
    logged = metric(values, "prediction_log_records_total", outcome="logged")
    assert dropped > 0, "a queue of one request a second must overflow under this burst"
    assert logged > 0
    assert len(read_logs(folder)) == logged
    assert set(read_logs(folder).request_id) <= set(dict(bodies))
    assert f"{int(logged)} records logged, {int(dropped)} dropped" in log


# -- a crash -----------------------------------------------------------------------------------
def test_sigkill_keeps_closed_files_and_the_next_start_recovers_the_open_one(
    installed: Installed,
) -> None:
    folder = installed.root / "crash-logs"
    records = records_of(installed.first_frame())
    sent: list[str] = []
    args = ("--log-dir", str(folder), "--log-roll-mb", "0.1")  # a few flushes a file
    with running(installed, *args) as server:
        number = 0
        while not (list(folder.glob("*.parquet")) and open_batches(folder) >= 2):
            request_id = f"crash-{number:04d}"
            status, _, body = server.post_json(records[:2], **{"X-Request-ID": request_id})
            assert status == 200, body
            sent.append(request_id)
            number += 1
            assert number < 5000, os.listdir(folder)
        # flushed (complete batches on disk) before the crash: a crash must keep them all
        wait_for(lambda: logged_ids(folder) == set(sent), "every request flushed")
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)
    closed = sorted(folder.glob("*.parquet"))
    (stream,) = folder.glob("*.arrows")
    for path in closed:
        assert pq.read_table(path).num_rows > 0  # whole, readable
    # the crash came between two writes; a torn last batch is what one during a write leaves
    size = stream.stat().st_size
    with stream.open("r+b") as handle:
        handle.truncate(size - 7)
    kept = set(complete_batches(stream).column("request_id").to_pylist())
    in_closed = {i for path in closed for i in pq.read_table(path).column("request_id").to_pylist()}
    assert kept and kept < set(sent) - in_closed, "the torn batch must lose its requests only"

    with running(installed, "--log-dir", str(folder)) as again:
        recovered = stream.with_suffix(".parquet")
        assert not stream.exists() and recovered.is_file(), os.listdir(folder)
        assert set(pq.read_table(recovered).column("request_id").to_pylist()) == kept
        assert "recovered" in again.log_text()
    assert set(read_logs(folder).request_id) == in_closed | kept


# -- several workers ---------------------------------------------------------------------------
def test_two_workers_write_their_own_files_and_sum_their_metrics(installed: Installed) -> None:
    folder = installed.root / "workers-logs"
    records = records_of(installed.first_frame())
    bodies = [(f"worker-{n:03d}", [records[n % len(records)]]) for n in range(60)]
    with running(installed, "--workers", "2", "--log-dir", str(folder)) as server:
        wait_for(
            lambda: server.log_text().count("Application startup complete") == 2,
            "both workers started",
            timeout=180,
        )
        answers = post_from_threads(server, bodies, threads=6)
        assert {status for status, _ in answers.values()} == {200}
        for _ in range(6):  # whichever worker answers the scrape, the sums are the same
            values = metrics_of(server)
            assert metric(values, "requests_total", status="200") == len(bodies)
        assert server.log_text().count("summed over the workers") == 2
        stop(server.process)
    assert not list(folder.glob("*.arrows"))
    logs = read_logs(folder)
    assert sorted(logs.request_id) == sorted(dict(bodies))
    pids = {path.name.split("-")[2] for path in folder.glob("*.parquet")}
    assert pids <= {str(p) for p in worker_pids(server.log_text())}


def worker_pids(log: str) -> list[int]:
    return [
        int(line.rsplit("[", 1)[1].rstrip("]"))
        for line in log.splitlines()
        if "Started server process" in line
    ]


def test_no_metrics_takes_the_route_away(installed: Installed) -> None:
    with running(installed, "--no-metrics") as server:
        status, _, _ = fetch_text(server, "/metrics")
        assert status == 404
        assert "Metrics at GET /metrics" not in server.log_text()


# -- batch scoring -----------------------------------------------------------------------------
def test_predict_log_dir_logs_each_chunk(installed: Installed) -> None:
    root = installed.root / "batch"
    root.mkdir()
    frame = installed.first_frame()
    source = root / "in.csv"
    frame.to_csv(source, index=False)
    folder = root / "logs"
    result = cli(
        installed,
        "predict",
        source,
        "-o",
        root / "out.csv",
        "--chunk-size",
        "7",
        "--log-dir",
        folder,
    )
    assert result.returncode == 0, result.stderr
    scored = pd.read_csv(root / "out.csv")
    logs = read_logs(folder)
    assert not list(folder.glob("*.arrows"))
    assert len(logs) == len(frame)
    assert set(logs.source) == {"predict"} and set(logs.status) == {200}
    assert logs.request_id.nunique() == -(-len(frame) // 7)
    assert logs.groupby("request_id", sort=False).size().max() == 7
    logs = logs.sort_values("timestamp", kind="stable").reset_index(drop=True)
    assert logs["out.prediction"].tolist() == scored["prediction"].tolist()
    numeric, _ = numeric_and_text(installed)
    np.testing.assert_allclose(logs[f"in.{numeric}"], frame[numeric])

    _, text = numeric_and_text(installed)
    broken = root / "broken.csv"
    frame.drop(columns=[text]).to_csv(broken, index=False)
    refused = cli(installed, "predict", broken, "-o", root / "x.csv", "--log-dir", folder)
    assert refused.returncode == 2, refused.stderr
    rejections = read_logs(folder).query("status != 200")
    assert len(rejections) == 1 and rejections.rejected_field.iloc[0] == text


def test_log_options_are_checked_before_listening(installed: Installed) -> None:
    never = installed.root / "never"
    result = cli(installed, "serve", "--port", free_port(), "--log-dir", never, "--log-sample", 1.5)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"{SCRIPT}: error: ") and "(0, 1]" in result.stderr


def cli(installed: Installed, *args: object) -> subprocess.CompletedProcess[str]:
    command = [str(installed.script), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)
