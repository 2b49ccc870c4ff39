"""Kernel managers nbprod hands to papermill.

The default kernel is the Python nbprod itself runs on, started directly from
``sys.executable``: a ``python3`` kernelspec found on disk may point at another
interpreter (ipykernel's own kernel.json says just ``python``), and a run must use
the environment the user installed nbprod and their libraries into.

For sweeps, ``nbprod.execution.forkserver.manager`` builds on these a manager whose
kernels are forked by a fork server that already did the notebook's imports.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager

CURRENT_PYTHON = "python3"
# What the kernelspec adds to a kernel's environment (a fork server is started with it too).
KERNEL_ENV = {"PYDEVD_DISABLE_FILE_VALIDATION": "1"}


class CurrentPythonKernelManager(AsyncKernelManager):
    """An ipykernel on this very interpreter, whatever kernelspecs are installed.

    It talks over unix sockets in a private folder: no TCP ports to race for when
    several kernels start at once, and nothing readable by other users.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._socket_dir = tempfile.mkdtemp(prefix="nbprod-kernel-")
        self.transport = "ipc"
        self.ip = os.path.join(self._socket_dir, "kernel")

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    cleanup_resources = _async_cleanup_resources

    @property
    def kernel_spec(self) -> KernelSpec:
        if self._kernel_spec is None:
            self._kernel_spec = KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name=f"Python {sys.version_info.major}.{sys.version_info.minor} (nbprod)",
                language="python",
                env=dict(KERNEL_ENV),
            )
        return self._kernel_spec


def kernel_manager_for(kernel: str | None) -> type[AsyncKernelManager] | None:
    """The manager class for a kernel name; None means jupyter_client's default lookup."""
    return CurrentPythonKernelManager if kernel in (None, CURRENT_PYTHON) else None


# -- forked kernels -------------------------------------------------------------------------


class QuickReadyKernelClient(AsyncKernelClient):
    """jupyter_client's client with a configurable end of ``wait_for_ready``.

    After the kernel_info reply, jupyter_client drains IOPub until it has been quiet
    for a fixed 0.2 s; a forked kernel is ready in less than that, so the fixed wait
    would be most of its start-up. Late IOPub messages are harmless: nbclient only
    reads those that answer its own requests. The manager's ``ready_settle`` sets
    the quiet time (None: jupyter_client's own method).
    """

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        settle = getattr(self.parent, "ready_settle", None)
        if settle is None:
            await super().wait_for_ready(timeout=timeout)
            return
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                pass
            else:
                if reply["msg_type"] == "kernel_info_reply":
                    # A message on IOPub too means that channel is connected as well.
                    try:
                        await self.iopub_channel.get_msg(timeout=0.2)
                    except Empty:
                        pass
                    else:
                        self._handle_kernel_info_reply(reply)
                        break
            if not await self.is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} s")
        while True:
            try:
                await self.iopub_channel.get_msg(timeout=settle)
            except Empty:
                break


def kill_kernels_of(pid: int) -> None:
    """Kill the process groups of ``pid``'s children: kernels run in sessions of their own,
    so they would not receive the signal that stops their parent."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            child = int(entry.name)
            try:
                os.killpg(os.getpgid(child), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
