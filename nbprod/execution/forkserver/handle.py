"""The driver's handle on a fork server: start it, lease kernels from it, stop it.

``ForkServer`` starts ``python -m nbprod.execution.forkserver.server`` in a private
folder and waits until it has done its imports; ``fork_kernel_manager`` builds the
papermill kernel manager class that forks its kernels there.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from nbprod.execution.forkserver.protocol import (
    READY_TIMEOUT,
    SERVER_ENV,
    START_TIMEOUT,
    THREAD_VARS,
    ForkServerError,
)

if TYPE_CHECKING:
    from nbprod.execution.forkserver.manager import ForkKernelManager


# -- the driver's side: start and stop a server ----------------------------------------


class ForkServer:
    """A fork server process for the lifetime of a ``with`` block.

    ``socket_path`` is a plain string: pass it to worker processes and build their
    kernel manager with ``fork_kernel_manager(socket_path)``. ``imported`` and
    ``failed`` say which of ``preload`` the server could import (failures only cost
    speed: the kernel imports the module itself).
    """

    def __init__(
        self,
        preload: Iterable[str] = (),
        *,
        start_timeout: float = START_TIMEOUT,
        ready_timeout: float = READY_TIMEOUT,
        stderr: int | IO[Any] | None = None,
        log: str | os.PathLike[str] | None = None,
    ) -> None:
        self.preload = list(preload)
        self.start_timeout = start_timeout
        self.ready_timeout = ready_timeout
        self.stderr = stderr  # the server's and its kernels' stderr; default: inherited
        self.log = log  # or a file they append to, opened by start() and closed by close()
        self._log_file: IO[bytes] | None = None
        self.socket_path = ""
        self.imported: list[str] = []
        self.failed: dict[str, str] = {}
        self.threads = 0
        self._folder: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._report_fd: int | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def __enter__(self) -> ForkServer:
        return self if self._process is not None else self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, wait: bool = True) -> ForkServer:
        """Start the server; return once it listens, and with ``wait`` once it has imported.

        Requests sent before the imports are done queue up and are answered after
        them: ``wait=False`` lets a sweep start its worker processes meanwhile.
        """
        from nbprod.execution.kernels import KERNEL_ENV

        self._folder = tempfile.mkdtemp(prefix="nbprod-fork-")
        self.socket_path = os.path.join(self._folder, "server.sock")
        read_end, write_end = os.pipe()
        self._report_fd = read_end
        command = [
            *(sys.executable, "-m", "nbprod.execution.forkserver.server"),
            *("--socket", self.socket_path, "--parent", str(os.getpid())),
            *("--ready-fd", str(write_end), "--ready-timeout", str(self.ready_timeout)),
            *("--preload", json.dumps(self.preload)),
        ]
        env = {**os.environ, **KERNEL_ENV, **dict.fromkeys(THREAD_VARS, "1"), **SERVER_ENV}
        try:
            if self.log is not None:
                self._log_file = open(self.log, "ab")  # noqa: SIM115  (closed by close())
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stderr=self._log_file or self.stderr,
                pass_fds=(write_end,),
                env=env,
                cwd=self._folder,
                # Not in the terminal's process group: Ctrl-C is the sweep's to handle.
                start_new_session=True,
            )
            os.close(write_end)
            self._wait_listening()
            if wait:
                self.wait_ready()
        except BaseException:
            if self._process is None:
                os.close(write_end)
            self.close()
            raise
        return self

    def _wait_listening(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        while not os.path.exists(self.socket_path):
            if self._process.poll() is not None:
                raise ForkServerError(
                    f"the fork server exited during start-up (status {self._process.returncode})"
                )
            if time.monotonic() > deadline:
                raise ForkServerError(f"the fork server did not start in {self.start_timeout:g} s")
            time.sleep(0.005)

    def wait_ready(self) -> None:
        """Wait until the server has done its imports; sets ``imported``, ``failed`` and so on."""
        if self._report_fd is None:
            return
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        data = b""
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    waited = f"{self.start_timeout:g} s"
                    raise ForkServerError(f"the fork server did not finish its imports in {waited}")
                readable, _, _ = select.select([self._report_fd], [], [], min(left, 1.0))
                if readable:
                    chunk = os.read(self._report_fd, 65536)
                    if not chunk:
                        break
                    data += chunk
                elif self._process.poll() is not None:
                    break
        finally:
            os.close(self._report_fd)
            self._report_fd = None
        if not data:
            status = self._process.wait(timeout=5)
            raise ForkServerError(f"the fork server exited during start-up (status {status})")
        report = json.loads(data)
        self.imported = report["imported"]
        self.failed = report["failed"]
        self.threads = report["threads"]

    def close(self) -> None:
        """Stop the server (it kills its kernels) and remove its folder."""
        if self._report_fd is not None:
            os.close(self._report_fd)
            self._report_fd = None
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def manager_class(self, **options: Any) -> type[ForkKernelManager]:
        """A kernel manager class for papermill that forks its kernels here."""
        return fork_kernel_manager(self.socket_path, **options)


def fork_kernel_manager(socket_path: str | None, **options: Any) -> type[ForkKernelManager]:
    """A new ``ForkKernelManager`` class bound to the server at ``socket_path``.

    See ``manager.fork_kernel_manager``; imported on use, so that the server process
    never imports jupyter_client's kernel manager.
    """
    from nbprod.execution.forkserver.manager import fork_kernel_manager as make

    return make(socket_path, **options)
