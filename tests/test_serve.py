"""`<pkg> serve` as an engineer runs it: the extracted package installed with its `serve`
extra into a clean venv, a real uvicorn server on 127.0.0.1, real HTTP requests.

The example notebook is run and extracted once per module; the servers are stopped by
their PIDs (each in its own process group, so uvicorn's worker processes go too).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tools import free_port, make_venv, shared_example

from nbprod.runtime.values import assert_same, decode

pytestmark = pytest.mark.slow

# A table with a text column, several artifacts and a model that refuses NaN.
NAME = "cancer_threshold"
SCRIPT = NAME.replace("_", "-")
LIMIT = 64 * 1024  # the body limit the main server runs with, set by its env variable


@dataclass
class Installed:
    package_dir: Path
    run_id: str
    parity: Path  # the run folder's record: what the notebook itself passed and got
    python: Path
    root: Path

    @property
    def script(self) -> Path:
        return self.python.parent / SCRIPT

    def calls(self) -> list[dict[str, Any]]:
        record = json.loads((self.parity / "parity.json").read_text())
        calls: list[dict[str, Any]] = record["calls"]
        return calls

    def first_frame(self) -> pd.DataFrame:
        frame: pd.DataFrame = decode(self.calls()[0]["args"][0], self.parity)
        return frame


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body, headers or {})
            response = connection.getresponse()
            raw = response.read()
            answer = {k.lower(): v for k, v in response.getheaders()}
            return response.status, answer, json.loads(raw) if raw else None
        finally:
            connection.close()

    def post_json(self, payload: Any, **headers: str) -> tuple[int, dict[str, str], Any]:
        headers = {"Content-Type": "application/json", **headers}
        return self.request("POST", "/predict", json.dumps(payload).encode(), headers)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    # built once per session, shared with the end-to-end tests (tools.shared_example)
    build = shared_example(NAME, tmp_path_factory)
    parity = build["run_dir"] / "parity"
    return Installed(
        build["package_dir"], build["run"]["id"], parity, build["python"], build["root"]
    )


@contextlib.contextmanager
def running(
    installed: Installed, *args: str, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """``<script> serve --port FREE *args``, ready (``/health``) until the block ends."""
    with serving(installed.script, installed.root, *args, env=env) as server:
        yield server


@contextlib.contextmanager
def serving(
    script: Path, logs: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """``script serve --port FREE *args`` (its log in ``logs``), ready until the block ends."""
    port = free_port()
    log = logs / f"server-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(script), "serve", "--port", str(port), *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    server = Server(process, port, log)
    try:
        wait_healthy(server)
        yield server
    finally:
        stop(process)


def wait_healthy(server: Server, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"the server exited with {server.process.returncode}:\n{server.log_text()}")
        try:
            status, _, body = server.request("GET", "/health")
        except OSError:
            time.sleep(0.2)
            continue
        assert status == 200 and body["status"] == "ok", body
        return
    pytest.fail(f"no /health answer within {timeout:.0f} s:\n{server.log_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group (the server and its workers), then wait."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(installed: Installed) -> Iterator[Server]:
    env = {f"{NAME.upper()}_MAX_BODY_BYTES": str(LIMIT)}
    with running(installed, env=env) as server:
        yield server


def records_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    plain = frame.astype(object).where(frame.notna(), None)
    records: list[dict[str, Any]] = plain.to_dict(orient="records")
    return records


def test_predictions_are_the_notebooks(installed: Installed, server: Server) -> None:
    for number, call in enumerate(installed.calls()):
        frame = decode(call["args"][0], installed.parity)
        status, _, body = server.post_json({"records": records_of(frame)})
        assert status == 200, body
        expected = decode(call["result"], installed.parity)
        assert_same(np.asarray(body["predictions"]), np.asarray(expected), f"call {number}")


def test_health_metadata_and_openapi(installed: Installed, server: Server) -> None:
    status, _, metadata = server.request("GET", "/metadata")
    assert status == 200 and metadata["run_id"] == installed.run_id
    status, _, document = server.request("GET", "/openapi.json")
    assert status == 200 and document["openapi"] == "3.1.0"
    record = document["components"]["schemas"]["Record"]
    assert set(record["required"]) == set(installed.first_frame().columns)
    example = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert server.post_json(example["example"])[0] == 200


@pytest.mark.parametrize("fault", ["missing column", "wrong type", "no rows", "empty body"])
def test_schema_errors_are_422_naming_the_field(
    installed: Installed, server: Server, fault: str
) -> None:
    records = records_of(installed.first_frame().head(2))
    numeric = next(c for c in records[0] if isinstance(records[0][c], float))
    text = next(c for c in records[0] if isinstance(records[0][c], str))
    field: str | None = None
    body: bytes
    if fault == "missing column":
        field = text
        body = json.dumps([{k: v for k, v in r.items() if k != text} for r in records]).encode()
    elif fault == "wrong type":
        field = numeric
        body = json.dumps([{**r, numeric: "twelve"} for r in records]).encode()
    elif fault == "no rows":
        body = b'{"records": []}'
    else:
        body = b""
    headers = {"Content-Type": "application/json"}
    status, answer, error = server.request("POST", "/predict", body, headers)
    assert status == 422, error
    assert error["field"] == field
    if field is not None:
        assert field in error["error"]
    assert error["request_id"] == answer["x-request-id"]
    assert "Traceback" not in json.dumps(error)


def test_bad_json_is_400_and_other_content_types_415(server: Server) -> None:
    json_type = {"Content-Type": "application/json"}
    status, _, error = server.request("POST", "/predict", b"{not json", json_type)
    assert status == 400 and "not valid JSON" in error["error"]
    status, _, error = server.request("POST", "/predict", b"<a/>", {"Content-Type": "text/xml"})
    assert status == 415 and "application/json or text/csv" in error["error"]


def test_bodies_over_the_limit_are_413_without_being_read(server: Server) -> None:
    """Refused on the declared length before the body is sent, and by counting a
    chunked body (no declared length) as it arrives."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.putrequest("POST", "/predict")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(100 * LIMIT))
        connection.endheaders()  # nothing of the body is sent: the answer must not wait for it
        response = connection.getresponse()
        assert response.status == 413
        assert f"larger than {LIMIT} bytes" in json.loads(response.read())["error"]
    finally:
        connection.close()
    chunks = (b" " * 8192 for _ in range(2 * LIMIT // 8192))
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        headers = {"Content-Type": "application/json"}
        connection.request("POST", "/predict", chunks, headers, encode_chunked=True)
        assert connection.getresponse().status == 413
    finally:
        connection.close()


def test_request_ids_are_echoed_and_logged(installed: Installed, server: Server) -> None:
    request_id = f"test-{uuid.uuid4().hex}"
    records = records_of(installed.first_frame().head(1))
    status, headers, body = server.post_json(records, **{"X-Request-ID": request_id})
    assert status == 200
    assert headers["x-request-id"] == body["request_id"] == request_id
    assert_logged(server, "POST /predict 200 ", request_id)
    status, headers, _ = server.request("GET", "/health")
    assert len(headers["x-request-id"]) == 32  # a fresh uuid4 hex when the client sent none


def test_a_model_failure_is_500_and_its_traceback_only_in_the_log(
    installed: Installed, server: Server
) -> None:
    """The schema lets a null through (the column is a number); LogisticRegression
    refuses NaN: the model's own error."""
    records = records_of(installed.first_frame().head(1))
    numeric = next(c for c in records[0] if isinstance(records[0][c], float))
    status, headers, error = server.post_json([{**records[0], numeric: None}])
    assert status == 500
    request_id = headers["x-request-id"]
    assert error["request_id"] == request_id and request_id in error["error"]
    assert "Traceback" not in json.dumps(error) and "NaN" not in json.dumps(error)
    log = assert_logged(server, "the model failed", request_id)
    assert "Traceback" in log and "ValueError" in log


def assert_logged(server: Server, text: str, request_id: str) -> str:
    """The server's log, once a line holds both ``text`` and ``request_id``."""
    deadline = time.monotonic() + 10
    while True:
        log = server.log_text()
        if any(text in line and request_id in line for line in log.splitlines()):
            return log
        if time.monotonic() > deadline:
            pytest.fail(f"no log line with {text!r} and {request_id}:\n{log}")
        time.sleep(0.1)


def test_two_workers_serve_the_same_predictions(installed: Installed) -> None:
    frame = installed.first_frame()
    expected = decode(installed.calls()[0]["result"], installed.parity)
    with running(installed, "--workers", "2") as server:
        deadline = time.monotonic() + 180
        while server.log_text().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, server.log_text()
            time.sleep(0.2)
        for _ in range(8):
            status, _, body = server.post_json(records_of(frame))
            assert status == 200, body
            assert_same(np.asarray(body["predictions"]), np.asarray(expected), "2 workers")
        log = server.log_text()
    assert log.count("Started server process") == 2, log
    assert "died" not in log, log


def test_a_changed_artifact_stops_the_server_before_it_listens(installed: Installed) -> None:
    site = subprocess.run(
        [str(installed.python), "-c", f"import {NAME}; print({NAME}.artifacts_dir())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tampered = installed.root / "tampered"
    shutil.copytree(site, tampered)
    target = next(tampered.glob("*.skops"))
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    result = subprocess.run(
        [str(installed.script), "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, f"{NAME.upper()}_ARTIFACTS": str(tampered)},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith(f"{SCRIPT}: error: "), result.stderr
    assert target.stem in result.stderr and "Traceback" not in result.stderr


def test_without_the_serve_extra_the_error_says_what_to_install(installed: Installed) -> None:
    python = make_venv(installed.root / "bare", str(installed.package_dir))
    result = subprocess.run(
        [str(python.parent / SCRIPT), "serve"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert f"pip install '{SCRIPT}[serve]'" in result.stderr
    assert "Traceback" not in result.stderr
