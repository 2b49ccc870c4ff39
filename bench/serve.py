"""Requests/s and latency of one-row ``POST /predict``: a generated package's server
against a hand-written ceiling and against ``mlflow models serve``, and on ONNX Runtime
against the saved scikit-learn objects.

What it builds, in a temporary folder: the example notebook ``wine_forest`` run once
(``nbprod run``), extracted with its model converted to ONNX (``nbprod extract --onnx``)
and installed with its ``serve``, ``parquet`` and ``onnx`` extras into a clean venv (uv,
the shared cache). Then five servers, each one uvicorn worker on 127.0.0.1, all given
the same single wine record as JSON:

(a) the package's own ``wine-forest serve`` on the saved scikit-learn objects
    (``WINE_FOREST_BACKEND=skops``; Starlette: routing, body limit, schema check,
    request id, one log line per request);
(b) the ceiling: a raw ASGI app written by hand in a dozen lines, on the same uvicorn:
    it loads the artifacts with skops from the package's artifacts folder, builds a
    DataFrame from the JSON record and calls the notebook's inference function
    (``pipeline.predict``: the features and ``model.predict``), nothing else;
(c) ``mlflow models serve --env-manager local`` on the same model, saved with
    ``mlflow.sklearn.save_model`` as a scikit-learn pipeline (the notebook's
    ``make_features`` as a FunctionTransformer, then the trained forest) with a signature
    inferred from the recorded input, in its own venv. Skipped, with the reason
    printed, if MLflow cannot be installed or served here;
(d) the package's server again, logging every request (``--log-dir``, ``--log-sample
    1.0``): the cost of the prediction log, which must not slow requests;
(e) the package's server as (a) in every way but the backend: the default (``auto``),
    which runs the converted model with ONNX Runtime since onnxruntime is installed.

The client is the same for every target: Python threads, each with one keep-alive
``http.client`` connection, sending the record and reading the answer. Every target is
warmed up, then measured in ``--rounds`` rounds that interleave the targets, so that a
busy moment of a shared machine does not fall on one target only. Per round and
target: latency with one connection (requests one after another: p50/p99 are the
service time), throughput with ``CONNECTIONS`` connections at once (the worker is kept
busy: requests/s is its capacity), and the CPU time the server's processes used per
request (from /proc: the overhead that a busy machine does not blur). The ratios
(a)/(b) (target >= 0.9), (a)/(c), (d)/(a) (target >= 0.95) and (e)/(a) (ONNX against
skops, goal >= 5, issue 15) are the medians of the rounds' ratios; (d)'s log files are
read back and their records counted. Nothing is kept. ``--targets ae`` runs only the two
servers that differ by their backend (a few minutes: no MLflow venv).

Run from the repository root:
    .venv/bin/python bench/serve.py [--requests N] [--rounds R] [--targets abcde]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbprod.runtime.values import decode

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
UV_CACHE = os.environ.get("UV_CACHE_DIR", str(ROOT / ".cache" / "uv"))
EXAMPLE = "wine_forest"
BACKEND = f"{EXAMPLE.upper()}_BACKEND"  # the package's choice: auto (default), onnx, skops
CONNECTIONS = 4
WARM_UP = 200

CEILING = '''
"""The least a server can do: JSON record -> DataFrame -> the notebook's predict()."""
import json
import sys
from pathlib import Path

import pandas as pd
import skops.io as sio
import uvicorn

from {package} import pipeline

folder = Path(pipeline.__file__).parent / "artifacts"
manifest = json.loads((folder / "manifest.json").read_text())
for name, entry in manifest["artifacts"].items():
    setattr(pipeline, name, sio.load(folder / entry["file"], trusted=entry["trusted"]))


async def app(scope, receive, send):
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    result = pipeline.predict(pd.DataFrame([json.loads(body)]))
    out = json.dumps({{"predictions": result.tolist()}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(out))]
    await send({{"type": "http.response.start", "status": 200, "headers": headers}})
    await send({{"type": "http.response.body", "body": out}})


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), lifespan="off", access_log=False)
'''

SAVE_MLFLOW_MODEL = """
import json, sys
import pandas as pd
import mlflow.sklearn
import skops.io as sio
from mlflow.models import infer_signature
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
import {package}
from {package} import pipeline

{package}.load_artifacts()
model = make_pipeline(FunctionTransformer(pipeline.make_features), pipeline.model)
record = pd.DataFrame([json.loads(sys.argv[2])])
assert (model.predict(record) == {package}.predict(record)).all()
signature = infer_signature(record, model.predict(record))
trusted = sio.get_untrusted_types(data=sio.dumps(model))  # our own model: trusted
mlflow.sklearn.save_model(model, sys.argv[1], signature=signature, skops_trusted_types=trusted)
"""


@dataclass
class Target:
    label: str
    name: str
    port: int
    path: str
    body: bytes
    process: subprocess.Popen[bytes] | None = None
    rates: list[float] = field(default_factory=list)  # requests/s, one per round
    latencies: list[float] = field(default_factory=list)  # seconds, one connection
    cpu: list[float] = field(default_factory=list)  # server CPU s/request, one per round
    answer: Any = None
    backends: dict[str, str] | None = None  # the package's servers: backend per artifact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="per phase and round")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument(
        "--targets", default="abcde", help="which servers to measure, e.g. ae (default: all)"
    )
    options = parser.parse_args()
    chosen = set(options.targets)
    if not chosen or not chosen <= set("abcde"):
        parser.error(f"--targets: letters among abcde, not {options.targets!r}")
    tmp = Path(tempfile.mkdtemp(prefix="nbprod-bench-serve-"))
    targets: list[Target] = []
    records: int | None = None
    try:
        package_dir, record = build_package(tmp)
        # (d) needs pyarrow; (e) onnxruntime
        python = make_venv(tmp / "venv", f"{package_dir}[serve,parquet,onnx]")
        body = json.dumps(record).encode()
        script = tmp / "ceiling.py"
        script.write_text(CEILING.format(package=EXAMPLE), encoding="utf-8")
        cli = python.parent / EXAMPLE.replace("_", "-")
        skops = {BACKEND: "skops"}
        serve = [str(cli), "serve", "--port"]
        if "a" in chosen:
            targets.append(start("(a)", f"{EXAMPLE} serve, skops", serve, body, env=skops))
        if "b" in chosen:
            targets.append(start("(b)", "hand-written ASGI", [str(python), str(script)], body))
        mlflow = start_mlflow(tmp, package_dir, record) if "c" in chosen else None
        if mlflow is not None:
            targets.append(mlflow)
        if "d" in chosen:
            logging_args = ["--log-dir", str(tmp / "logs"), "--log-sample", "1.0", "--port"]
            logging_command = [str(cli), "serve", *logging_args]
            name = f"{EXAMPLE} serve --log-dir"
            targets.append(start("(d)", name, logging_command, body, env=skops))
        if "e" in chosen:
            auto = {BACKEND: "auto"}
            targets.append(start("(e)", f"{EXAMPLE} serve, onnx", serve, body, env=auto))
        for target in targets:
            wait_ready(target)
            target.answer = json.loads(request_once(target))
            if target.label in ("(a)", "(d)", "(e)"):  # what each predicts with, as it says
                target.backends = metadata(target)["backends"]
            run_phase(target, WARM_UP, 1)
        for round_number in range(options.rounds):
            progress(f"round {round_number + 1}/{options.rounds}")
            for target in targets:
                assert target.process is not None
                used = cpu_seconds(target.process.pid)
                target.latencies += run_phase(target, options.requests, 1)[1]
                rate, _ = run_phase(target, options.requests, CONNECTIONS)
                target.rates.append(rate)
                used = cpu_seconds(target.process.pid) - used
                target.cpu.append(used / (2 * options.requests))
        for target in targets:
            stop(target)  # SIGTERM: (d) flushes its log
        if "d" in chosen:
            records = logged_records(tmp / "logs")
    finally:
        for target in targets:
            stop(target)
        shutil.rmtree(tmp, ignore_errors=True)
    report(targets, options.requests, options.rounds, "c" in chosen)
    if records is not None:
        print(f"(d) logged {records} records (one per request it answered, warm-up included)")


# -- building ---------------------------------------------------------------------------------
def build_package(tmp: Path) -> tuple[Path, dict[str, Any]]:
    """The example notebook run and extracted; returns the package folder and one record."""
    progress(f"running and extracting example_notebooks/{EXAMPLE}.ipynb")
    project = tmp / "project"
    shutil.copytree(ROOT / "example_notebooks" / "data", project / "data")
    notebook = Path(shutil.copy(ROOT / "example_notebooks" / f"{EXAMPLE}.ipynb", project))
    run = json.loads(nbprod("run", str(notebook), "--json"))
    package_dir = tmp / "package"
    nbprod("extract", str(notebook), "--run", run["id"], "-o", str(package_dir), "--onnx")
    parity = package_dir / "tests" / "parity"
    call = json.loads((parity / "parity.json").read_text(encoding="utf-8"))["calls"][0]
    record: dict[str, Any] = decode(call["args"][0], parity).head(1).to_dict(orient="records")[0]
    return package_dir, record


def nbprod(*args: str) -> str:
    done = subprocess.run([str(BIN / "nbprod"), *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"nbprod {args[0]} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def make_venv(folder: Path, *requirements: str) -> Path:
    progress(f"installing {' '.join(requirements)} into a clean venv")
    env = {**os.environ, "UV_CACHE_DIR": UV_CACHE}
    uv = str(BIN / "uv")
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(folder)], check=True)
    python = folder / "bin" / "python"
    install = [uv, "pip", "install", "--quiet", "--python", str(python), *requirements]
    subprocess.run(install, check=True, env=env, capture_output=True, text=True)
    return python


def start_mlflow(tmp: Path, package_dir: Path, record: dict[str, Any]) -> Target | None:
    try:
        python = make_venv(tmp / "mlflow-venv", "mlflow", str(package_dir))
        model = tmp / "mlflow-model"
        script = SAVE_MLFLOW_MODEL.format(package=EXAMPLE)
        subprocess.run(
            [str(python), "-c", script, str(model), json.dumps(record)],
            check=True,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as error:
        lines = (error.stderr or error.stdout or "").strip().splitlines()
        errors = [line for line in lines if "Error" in line or "Exception" in line]
        print(f"(c) mlflow skipped: {(errors or lines or [str(error)])[-1]}", flush=True)
        return None
    body = json.dumps({"dataframe_records": [record]}).encode()
    command = [str(python.parent / "mlflow"), "models", "serve", "-m", str(model)]
    command += ["--env-manager", "local", "-w", "1", "-h", "127.0.0.1", "-p"]
    # mlflow starts `uvicorn` from PATH
    path = f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return start("(c)", "mlflow models serve", command, body, "/invocations", {"PATH": path})


def start(
    label: str,
    name: str,
    command: list[str],
    body: bytes,
    path: str = "/predict",
    env: dict[str, str] | None = None,
) -> Target:
    """The server started on a free port (appended to ``command``), in its own process
    group: mlflow runs uvicorn as a child, and stopping the group stops both."""
    port = free_port()
    target = Target(label, name, port, path, body)
    target.process = subprocess.Popen(
        [*command, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(target: Target, timeout: float = 180) -> None:
    progress(f"waiting for {target.label} {target.name}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert target.process is not None
        if target.process.poll() is not None:
            sys.exit(f"{target.label} {target.name} exited with {target.process.returncode}")
        try:
            request_once(target)
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{target.label} {target.name} did not answer within {timeout:.0f} s")


def logged_records(folder: Path) -> int:
    """The records in a prediction log folder's files (all closed after a clean stop)."""
    import pyarrow.parquet as pq

    left_open = list(folder.glob("*.arrows"))
    if left_open:
        sys.exit(f"(d) left {left_open[0].name} open after SIGTERM: its log was not flushed")
    return sum(pq.read_metadata(path).num_rows for path in folder.glob("*.parquet"))


def stop(target: Target) -> None:
    if target.process is None or target.process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(target.process.pid, signal.SIGTERM)
    try:
        target.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(target.process.pid, signal.SIGKILL)


# -- the client -------------------------------------------------------------------------------
HEADERS = {"Content-Type": "application/json"}


def request_once(target: Target) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
    try:
        connection.request("POST", target.path, target.body, HEADERS)
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            sys.exit(f"{target.label} answered {response.status}: {answer[:300]!r}")
        return answer
    finally:
        connection.close()


def metadata(target: Target) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
    try:
        connection.request("GET", "/metadata")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def run_phase(target: Target, requests: int, connections: int) -> tuple[float, list[float]]:
    """``requests`` requests over ``connections`` keep-alive connections: (requests/s,
    the latency of each request)."""
    latencies: list[float] = []
    failures: list[str] = []
    share = [requests // connections + (i < requests % connections) for i in range(connections)]

    def client(count: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
        mine = []
        try:
            for _ in range(count):
                started = time.perf_counter()
                connection.request("POST", target.path, target.body, HEADERS)
                response = connection.getresponse()
                response.read()
                mine.append(time.perf_counter() - started)
                if response.status != 200:
                    failures.append(f"status {response.status}")
                    return
        finally:
            connection.close()
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in share]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        sys.exit(f"{target.label} {target.name}: {failures[0]}")
    return requests / elapsed, latencies


def cpu_seconds(group: int) -> float:
    """CPU time used so far by the processes of a process group (Linux /proc; 0 elsewhere)."""
    ticks = 0
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # fields from the state on: pgrp, ..., utime, stime
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


# -- the report -------------------------------------------------------------------------------
def report(targets: list[Target], requests: int, rounds: int, mlflow: bool) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\none-row POST /predict (a wine record; RandomForest, 300 trees): one uvicorn worker "
        f"per target; {os.cpu_count()} cores shared with the client (load average {load})"
    )
    print(
        f"{rounds} rounds interleaving the targets, each: {requests} requests on 1 connection "
        f"(latency), then {requests} on {CONNECTIONS} connections (req/s, median of rounds); "
        "CPU: the server's CPU time per request"
    )
    print(f"{'target':<32}{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'CPU ms':>8}   answer")
    for t in targets:
        ordered = sorted(t.latencies)
        p50 = ordered[len(ordered) // 2] * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        cpu = statistics.median(t.cpu) * 1000
        rate = statistics.median(t.rates)
        answer = json.dumps(t.answer)[:36]
        print(f"{t.label} {t.name:<28}{rate:>7.0f}{p50:>8.2f}{p99:>8.2f}{cpu:>8.2f}   {answer}")
    for t in targets:
        if t.backends is not None:
            used = ", ".join(f"{name} on {backend}" for name, backend in t.backends.items())
            print(f"{t.label} predicts with (GET /metadata): {used}")
    by_label = {t.label: t for t in targets}
    print()
    for top, bottom, target in RATIOS:
        if top in by_label and bottom in by_label:
            ratio(top, bottom, by_label, target)
        elif bottom == "(c)" and mlflow and top in by_label:
            print("(a)/(c): mlflow was not measured (see above)")


RATIOS = (  # top, bottom, the least throughput ratio wanted
    ("(a)", "(b)", 0.9),
    ("(a)", "(c)", None),
    ("(d)", "(a)", 0.95),
    ("(e)", "(a)", 5.0),  # ONNX Runtime against the saved scikit-learn objects, issue 15
)


def ratio(top: str, bottom: str, by_label: dict[str, Target], target: float | None) -> None:
    """Throughput ratio, as the median of the rounds' ratios: each round measured both
    servers a few seconds apart, which cancels most of a shared machine's drift."""
    a, b = by_label[top], by_label[bottom]
    per_round = [x / y for x, y in zip(a.rates, b.rates, strict=True)]
    value = statistics.median(per_round)
    verdict = f"  (target >= {target}: {'met' if value >= target else 'NOT met'})" if target else ""
    print(f"{top}/{bottom} throughput = {value:.2f}{verdict}")
    print(f"    per round: {' '.join(f'{r:.2f}' for r in per_round)}")
    cpu = statistics.median(b.cpu) / statistics.median(a.cpu)
    print(f"    CPU per request, {bottom}/{top} = {cpu:.2f}")


def progress(text: str) -> None:
    print(f"  {text} ...", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
