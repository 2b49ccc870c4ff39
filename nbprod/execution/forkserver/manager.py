"""The kernel manager whose kernels a fork server forks: ``ForkKernelManager`` (a
``CurrentPythonKernelManager`` that falls back to a normal kernel whenever the server
cannot give a faithful one) and ``ForkProvisioner``, which asks the server over its
socket and holds the kernel's lease. ``fork_kernel_manager`` makes a class bound to one
server, for papermill.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import uuid
from typing import Any, ClassVar

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from traitlets import DottedObjectName, default

from nbprod.execution.forkserver.protocol import encode, process_start_time, take_messages
from nbprod.execution.kernels import CurrentPythonKernelManager, QuickReadyKernelClient

CONNECT_TIMEOUT = 5.0  # seconds to reach the fork server and hand over a request
ANSWER_TIMEOUT = 60.0  # seconds for its answer; it gives up on a kernel after 30 s itself


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
