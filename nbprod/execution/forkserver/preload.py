"""What the fork server does before it serves: the imports, and the thread pools.

It learns what a kernel imports lazily from a throw-away forked kernel
(``learn_kernel_imports``), imports that and the notebook's modules
(``import_all``), and keeps threadpoolctl's handles so that each forked kernel gets
the run's thread limits back (``restore_thread_limits``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import select
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def thread_pools() -> Any:
    """threadpoolctl's view of the loaded BLAS/OpenMP libraries, if it is installed."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def restore_thread_limits(threadpools: Any, env: dict[str, str]) -> None:
    """Give BLAS and OpenMP the threads a normally started kernel would have."""
    if threadpools is None:
        return

    def number(*names: str) -> int:
        for name in names:
            text = env.get(name, "").split(",")[0].strip()
            if text.isdigit() and int(text) > 0:
                return int(text)
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1

    blas = number("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")
    threadpools.limit(limits=blas, user_api="blas")
    threadpools.limit(limits=number("OMP_NUM_THREADS"), user_api="openmp")


def learn_kernel_imports(folder: str, timeout: float) -> list[str]:
    """The modules a kernel imports after start-up, from a throw-away forked kernel."""
    from jupyter_client.connect import write_connection_file

    connection_file, _ = write_connection_file(
        os.path.join(folder, "learn.json"), transport="ipc", ip=os.path.join(folder, "learn")
    )
    read_end, write_end = os.pipe()
    before = set(sys.modules)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the throw-away child
        status = 0
        try:
            os.close(read_end)
            from ipykernel.kernelapp import IPKernelApp

            app = IPKernelApp.instance(parent_handle=os.getppid())
            app.initialize(["-f", connection_file, "--HistoryManager.hist_file=:memory:"])
            if app.shell is not None:
                app.shell.run_cell("1", store_history=False)
            # In import order: some modules only import once others fixed sys.path.
            learned = [name for name in sys.modules if name not in before]
            os.write(write_end, json.dumps(learned).encode())
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            readable, _, _ = select.select([read_end], [], [], 1.0)
            if readable:
                chunk = os.read(read_end, 1 << 20)
                if not chunk:
                    break
                data += chunk
    finally:
        os.close(read_end)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        for leftover in Path(folder).glob("learn*"):
            leftover.unlink(missing_ok=True)
    try:
        names: list[str] = json.loads(data)
    except ValueError:
        return []
    return names


def import_all(names: Iterable[str]) -> dict[str, str]:
    """Import each module; return the failures, which only cost speed."""
    failed = {}
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as error:  # any import error: the kernel will meet it itself
            failed[name] = f"{type(error).__name__}: {error}"
    return failed
