"""Kernel managers nbprod hands to papermill.

The default kernel is the Python nbprod itself runs on, started directly from
``sys.executable``: a ``python3`` kernelspec found on disk may point at another
interpreter (ipykernel's own kernel.json says just ``python``), and a run must use
the environment the user installed nbprod and their libraries into.

For sweeps, ``fork_kernel_manager(socket_path)`` gives a manager whose kernels are
forked by a fork server (``nbprod.execution.forkserver``) that already did the notebook's
imports, and that falls back to a normal kernel whenever the server cannot give a
faithful one. Everything else (connection file, channels, shutdown) stays
jupyter_client's: only the provisioner, which starts and signals the process, differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from queue import Empty
from typing import Any, ClassVar

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from traitlets import DottedObjectName, default

from nbprod.execution.forkserver.protocol import encode, process_start_time, take_messages

CURRENT_PYTHON = "python3"
# What the kernelspec adds to a kernel's environment (a fork server is started with it too).
KERNEL_ENV = {"PYDEVD_DISABLE_FILE_VALIDATION": "1"}
CONNECT_TIMEOUT = 5.0  # seconds to reach the fork server and hand over a request
ANSWER_TIMEOUT = 60.0  # seconds for its answer; it gives up on a kernel after 30 s itself


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


class ForkProvisioner(LocalProvisioner):
    """Has the fork server fork the kernel; launches it as a subprocess when it cannot.

    ``started_by`` says which happened: ``"fork"`` or ``"fallback: <reason>"``. A
    forked kernel is not our child: the server relays signals to it and reports its
    exit over the lease connection, and closing that connection kills it.
    """

    socket_path: str | None = None
    started_by = ""
    answer_timeout = ANSWER_TIMEOUT
    _lease: socket.socket | None = None
    _forked: int | None = None  # the forked kernel's pid until its exit was collected
    _exit: int | None = None
    _start_time: int | None = None
    _inbox: bytearray  # what the server sent that was not read yet

    @property
    def has_process(self) -> bool:
        return self._forked is not None or bool(super().has_process)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        self._end_lease()
        self._exit = None
        reason = await self._fork(cmd, kwargs) if self.socket_path else "no fork server"
        if reason is None:
            self.started_by = "fork"
            return self.connection_info
        self.started_by = f"fallback: {reason}"
        self.log.info("kernel not forked (%s); starting a normal kernel", reason)
        info: KernelConnectionInfo = await super().launch_kernel(cmd, **kwargs)
        return info

    async def _fork(self, cmd: list[str], kwargs: dict[str, Any]) -> str | None:
        """Ask the server for a kernel; the reason it could not give one, or None."""
        assert self.socket_path is not None and self.parent is not None
        cwd = os.path.abspath(kwargs.get("cwd") or os.getcwd())  # the server's cwd differs
        request = {
            "argv": cmd,
            "env": dict(kwargs.get("env") or os.environ),
            "cwd": cwd,
            "connection_file": self.parent.connection_file,
        }
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        buffer = bytearray()
        try:
            await asyncio.wait_for(loop.sock_connect(sock, self.socket_path), CONNECT_TIMEOUT)
            await asyncio.wait_for(loop.sock_sendall(sock, encode(request)), CONNECT_TIMEOUT)
            reply = await asyncio.wait_for(_read_message(loop, sock, buffer), self.answer_timeout)
        except TimeoutError:
            sock.close()  # the server then kills the kernel it may have started
            return f"the fork server did not answer in {self.answer_timeout:g} s"
        except (OSError, ValueError) as error:
            sock.close()
            return f"the fork server is unreachable ({error})"
        except BaseException:  # cancelled: no kernel, and no socket left behind
            sock.close()
            raise
        if "pid" not in reply:
            sock.close()
            return str(reply.get("error") or "the fork server refused")
        self._lease, self._inbox = sock, buffer
        self._forked = self.pid = self.pgid = int(reply["pid"])
        self._start_time = reply.get("start_time")
        self.cwd = cwd
        return None

    async def poll(self) -> int | None:
        if self._forked is None:
            status: int | None = await super().poll()
            return status
        self._read_lease()
        return self._exit

    async def wait(self) -> int | None:
        if self._forked is None:
            status: int | None = await super().wait()
            return status
        # Callers bound this wait (jupyter_client wraps it in wait_for).
        while await self.poll() is None:
            await asyncio.sleep(0.05)
        self._forked = None
        return self._exit

    async def send_signal(self, signum: int) -> None:
        if self._forked is None:
            await super().send_signal(signum)
            return
        self._read_lease()
        if self._exit is not None:
            return
        try:
            assert self._lease is not None
            self._lease.send(encode({"signal": signum}))
        except OSError:
            self._signal_directly(signum)

    async def kill(self, restart: bool = False) -> None:
        if self._forked is None:
            await super().kill(restart=restart)
        else:
            await self.send_signal(signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        if self._forked is None:
            await super().terminate(restart=restart)
        else:
            await self.send_signal(signal.SIGTERM)

    async def cleanup(self, restart: bool = False) -> None:
        self._end_lease()  # the server kills what is left of the kernel and its files
        await super().cleanup(restart=restart)

    def _read_lease(self) -> None:
        """Take in what the server said (without waiting): the kernel's exit status."""
        if self._lease is None:
            return
        closed = False
        while not closed:
            try:
                data = self._lease.recv(65536)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            closed = not data
            self._inbox += data
        for message in take_messages(self._inbox):
            if "exit" in message:
                self._exit = int(message["exit"])
        if closed:
            self._server_gone()

    def _server_gone(self) -> None:
        # The server's kernels die with it; make sure of it if this one has not yet.
        if self._exit is None:
            self._signal_directly(signal.SIGKILL)
            self._exit = -signal.SIGKILL
        self._end_lease()

    def _signal_directly(self, signum: int) -> None:
        """Signal the kernel without the server, only while its pid is surely still its own."""
        pid = self._forked
        if pid is None or self._start_time is None or process_start_time(pid) != self._start_time:
            return
        with contextlib.suppress(OSError):
            os.killpg(pid, signum)

    def _end_lease(self) -> None:
        if self._lease is not None:
            self._lease.close()
            self._lease = None


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


class ForkKernelManager(CurrentPythonKernelManager):
    """A CurrentPythonKernelManager whose kernel comes from a fork server if it can.

    Use a class made by ``fork_kernel_manager``. After the start, ``started_by`` (on
    the instance, and on the class for callers that only hold the class, such as
    papermill's) says ``"fork"`` or ``"fallback: <reason>"``. A kernel is never
    reused: a restart forks a new one.
    """

    fork_server: ClassVar[str | None] = None
    ready_settle: ClassVar[float | None] = None
    answer_timeout: ClassVar[float] = ANSWER_TIMEOUT
    started_by: str | None = None
    client_class = DottedObjectName("nbprod.execution.kernels.QuickReadyKernelClient")

    @default("client_factory")
    def _quick_ready_client(self) -> type[QuickReadyKernelClient]:
        # AsyncKernelManager's own default would ignore client_class.
        return QuickReadyKernelClient

    async def _async_pre_start_kernel(
        self, *, transport_encryption: str | None = None, **kw: Any
    ) -> tuple[list[str], dict[str, Any]]:
        if self.provisioner is None:
            self.kernel_id = self.kernel_id or kw.get("kernel_id") or str(uuid.uuid4())
            provisioner = ForkProvisioner(
                kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self
            )
            provisioner.socket_path = self.fork_server
            provisioner.answer_timeout = self.answer_timeout
            self.provisioner = provisioner
        started: tuple[list[str], dict[str, Any]] = await super()._async_pre_start_kernel(
            transport_encryption=transport_encryption, **kw
        )
        return started

    # The public name must reach the override too (callers outside start_kernel use it).
    # jupyter_client's own AsyncKernelManager binds it the same way, with the same ignore:
    # the base class types it as the sync wrapper.
    pre_start_kernel = _async_pre_start_kernel  # type: ignore[assignment]

    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        # Polling is a non-blocking read of the lease: look often, a forked kernel's
        # exit is reported within milliseconds.
        await super()._async_wait(pollinterval=min(pollinterval, 0.01))

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        await super()._async_launch_kernel(kernel_cmd, **kw)
        assert isinstance(self.provisioner, ForkProvisioner)
        self.started_by = type(self).started_by = self.provisioner.started_by


def fork_kernel_manager(
    socket_path: str | None,
    *,
    ready_settle: float | None = 0.01,
    answer_timeout: float = ANSWER_TIMEOUT,
) -> type[ForkKernelManager]:
    """A new ForkKernelManager class bound to the fork server listening at ``socket_path``.

    A new class per call, so that a caller that hands the class to papermill can read
    ``started_by`` from it after the run. ``ready_settle`` is how long IOPub must be
    quiet before the kernel counts as ready (None: jupyter_client's fixed 0.2 s).
    """
    namespace = {
        "fork_server": socket_path,
        "ready_settle": ready_settle,
        "answer_timeout": answer_timeout,
        "started_by": None,
        "__module__": __name__,
    }
    return type("ForkKernelManager", (ForkKernelManager,), namespace)


async def _read_message(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, buffer: bytearray
) -> dict[str, Any]:
    """The first message on ``sock``; what follows it stays in ``buffer``."""
    while b"\n" not in buffer:
        data = await loop.sock_recv(sock, 65536)
        if not data:
            raise ConnectionError("the fork server closed the connection")
        buffer += data
    end = buffer.index(b"\n")
    message: dict[str, Any] = json.loads(bytes(buffer[:end]))
    del buffer[: end + 1]
    return message
