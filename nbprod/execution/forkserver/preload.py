"""What the fork server does before it serves: the imports, and the thread pools.

It learns what a kernel imports lazily from a throw-away forked kernel
(``KernelImports``), imports that and the notebook's modules
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


class KernelImports:
    """The modules a kernel imports after start-up, learned from a throw-away forked
    kernel: ``KernelImports(folder)`` forks it, ``result()`` collects what it imported.
    The server imports the notebook's modules in between, on the other core."""

    def __init__(self, folder: str) -> None:
        from jupyter_client.connect import write_connection_file

        self.folder = folder
        connection_file, _ = write_connection_file(
            os.path.join(folder, "learn.json"), transport="ipc", ip=os.path.join(folder, "learn")
        )
        self.read_end, write_end = os.pipe()
        before = set(sys.modules)
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - runs in the throw-away child
            status = 0
            try:
                os.close(self.read_end)
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

    def result(self, timeout: float) -> list[str]:
        data = b""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                readable, _, _ = select.select([self.read_end], [], [], 1.0)
                if readable:
                    chunk = os.read(self.read_end, 1 << 20)
                    if not chunk:
                        break
                    data += chunk
        finally:
            os.close(self.read_end)
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            for leftover in Path(self.folder).glob("learn*"):
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


def load_runtime() -> str | None:
    """Load nbprod's kernel runtime as a run's first cell loads it, and look up once what
    every run would look up again (``capture.warm``): a forked kernel keeps both. Returns
    the error, which only costs speed: each kernel then loads the runtime itself."""
    from nbprod import runtime

    try:
        namespace: dict[str, Any] = {}
        exec(runtime.loader(), namespace)
        modules = namespace["__nbprod_load"]()
        modules["capture"].warm(modules["artifacts"].distributions)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None
