"""Kernel managers nbprod hands to papermill.

The default kernel is the Python nbprod itself runs on, started directly from
``sys.executable``: a ``python3`` kernelspec found on disk may point at another
interpreter (ipykernel's own kernel.json says just ``python``), and a run must use
the environment the user installed nbprod and their libraries into.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager

CURRENT_PYTHON = "python3"


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
                env={"PYDEVD_DISABLE_FILE_VALIDATION": "1"},
            )
        return self._kernel_spec


def kernel_manager_for(kernel: str | None) -> type[AsyncKernelManager] | None:
    """The manager class for a kernel name; None means jupyter_client's default lookup."""
    return CurrentPythonKernelManager if kernel in (None, CURRENT_PYTHON) else None
