"""The fork server's wire protocol and the facts both sides share.

One JSON object per line each way over a unix socket (``encode``, ``take_messages``);
the environment variables that must match between a run and the server
(``import_time_env``), and how a process is told from a recycled pid
(``process_start_time``). The server process (``server.py``) and the driver's handle
(``handle.py``) both import this module, and it imports neither.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from nbprod.exceptions import NbprodError

# Read by BLAS/OpenMP when they load: one thread in the server, so that importing
# numpy starts no thread pool that fork() would break. Children restore their limits.
THREAD_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
# Environment variables read when modules are imported: a run whose value differs
# from the server's cannot get a faithful forked kernel and falls back to a normal one.
IMPORT_TIME_PREFIXES = ("PYTHON", "LD_", "NPY_", "OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_")
# Only for the server, never its kernels (they get the run's environment): pyarrow's
# jemalloc would start a purging thread at import, and a threaded process must not fork.
SERVER_ENV = {"JE_ARROW_MALLOC_CONF": "background_thread:false"}
LAUNCHER = ["-m", "ipykernel_launcher"]
REQUEST_TIMEOUT = 10.0  # seconds for a client to send its request once connected
READY_TIMEOUT = 30.0  # seconds for a forked kernel to bind its sockets
START_TIMEOUT = 180.0  # seconds for the server's imports


class ForkServerError(NbprodError):
    """The fork server could not be started."""


def encode(message: dict[str, Any]) -> bytes:
    """One protocol message: a JSON object on one line."""
    return json.dumps(message).encode() + b"\n"


def take_messages(buffer: bytearray) -> list[dict[str, Any]]:
    """Remove and return the complete messages at the start of ``buffer``."""
    messages = []
    while (end := buffer.find(b"\n")) >= 0:
        line = bytes(buffer[:end])
        del buffer[: end + 1]
        messages.append(json.loads(line))
    return messages


def thread_count() -> int:
    """This process's threads, native ones included (threading only sees Python's)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` (Linux clock ticks): tells a process from a recycled pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def import_time_env(env: dict[str, str]) -> dict[str, str]:
    return {
        name: value
        for name, value in env.items()
        if name.startswith(IMPORT_TIME_PREFIXES) and name not in THREAD_VARS
    }
