"""A fork server: a process that did a notebook's imports once forks a fresh kernel per run.

A sweep needs an isolated kernel for every run, and a cold ipykernel plus the
notebook's imports (scikit-learn alone: ~1.3 s) would dominate a light run. The
server (``python -m nbprod.forkserver``, started by ``ForkServer``) pins BLAS and
OpenMP to one thread, imports ipykernel, what a kernel imports lazily (learned from
a throw-away kernel) and the notebook's modules, freezes the GC, and then serves
requests on a unix socket in a private folder, one JSON line each way:

- a request carries the kernel command line, environment and working folder; the
  server either refuses with a reason (another interpreter, more than one thread,
  an import-time environment variable that differs, a module in the run's folder
  that shadows a preloaded one) or forks. The child becomes an ordinary
  ``IPKernelApp`` and reports "ready" only once its sockets are bound;
- the connection then is the kernel's lease: the server relays signals over it
  (it is the kernel's parent and reaper, so it never signals a recycled pid), sends
  the exit status, and kills the kernel's process group and removes its files when
  the lease is closed. Kernels die with the server.

The server is a single-threaded poll loop: no ZMQ context, no asyncio loop, no
threads, because only a single-threaded process can be forked safely. The kernel
manager that talks to it is ``nbprod.kernels.ForkKernelManager``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import gc
import importlib
import importlib.util
import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, NoReturn

from nbprod.exceptions import NbprodError

if TYPE_CHECKING:
    from nbprod.kernels import ForkKernelManager

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
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


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
    ) -> None:
        self.preload = list(preload)
        self.start_timeout = start_timeout
        self.ready_timeout = ready_timeout
        self.stderr = stderr  # the server's and its kernels' stderr; default: inherited
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
        from nbprod.kernels import KERNEL_ENV

        self._folder = tempfile.mkdtemp(prefix="nbprod-fork-")
        self.socket_path = os.path.join(self._folder, "server.sock")
        read_end, write_end = os.pipe()
        self._report_fd = read_end
        command = [
            *(sys.executable, "-m", "nbprod.forkserver"),
            *("--socket", self.socket_path, "--parent", str(os.getpid())),
            *("--ready-fd", str(write_end), "--ready-timeout", str(self.ready_timeout)),
            *("--preload", json.dumps(self.preload)),
        ]
        env = {**os.environ, **KERNEL_ENV, **dict.fromkeys(THREAD_VARS, "1"), **SERVER_ENV}
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stderr=self.stderr,
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

    def manager_class(self, **options: Any) -> type[ForkKernelManager]:
        """A kernel manager class for papermill that forks its kernels here."""
        return fork_kernel_manager(self.socket_path, **options)


def fork_kernel_manager(socket_path: str | None, **options: Any) -> type[ForkKernelManager]:
    """A new ``ForkKernelManager`` class bound to the server at ``socket_path``.

    See ``nbprod.kernels.fork_kernel_manager``; it lives there so that the server
    process never imports jupyter_client's kernel manager.
    """
    from nbprod.kernels import fork_kernel_manager as make

    return make(socket_path, **options)


# -- the server process ------------------------------------------------------------------


@dataclass
class _Kernel:
    pid: int
    ready_fd: int | None
    deadline: float
    files: list[str]
    status: int | None = None  # exit code once reaped
    ready_data: bytes = b""


@dataclass
class _Lease:
    sock: socket.socket
    deadline: float | None  # for the request; None once it arrived
    buffer: bytearray = field(default_factory=bytearray)
    kernel: _Kernel | None = None


class _Server:
    def __init__(
        self,
        listener: socket.socket,
        socket_path: str,
        parent: int,
        ready_timeout: float,
        preloaded: list[str],
        started_env: dict[str, str],
        threadpools: Any,
    ) -> None:
        self.pid = os.getpid()
        self.parent = parent
        self.ready_timeout = ready_timeout
        self.import_env = import_time_env(started_env)
        # What the imports put in os.environ (scikit-learn sets KMP_DUPLICATE_LIB_OK):
        # a kernel that imported them itself would have it too.
        self.env_from_imports = {
            name: value
            for name, value in os.environ.items()
            if name not in started_env and name not in THREAD_VARS and name not in SERVER_ENV
        }
        self.preloaded = sorted(
            {name.partition(".")[0] for name in preloaded} - set(sys.stdlib_module_names)
        )
        self.socket_path = socket_path
        self.listener = listener
        self.listener.setblocking(False)
        self.wake_read, self.wake_write = socket.socketpair()
        self.wake_read.setblocking(False)
        self.wake_write.setblocking(False)
        self.leases: dict[int, _Lease] = {}  # by socket fd
        self.kernels: dict[int, _Kernel] = {}  # by pid, until reaped and released
        self.readies: dict[int, _Lease] = {}  # by ready pipe fd
        self.poller = select.poll()  # select.poll owns no descriptor a child would inherit
        self.poller.register(self.listener, select.POLLIN)
        self.poller.register(self.wake_read, select.POLLIN)
        self.stopping = False
        self.saved_handlers = {sig: signal.getsignal(sig) for sig in _SIGNALS}
        self.libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
        # Found once here: looking for the libraries costs each child 20 ms otherwise.
        self.threadpools = threadpools
        self.launcher = _launcher_path()  # a normal kernel's sys.argv[0]

    # The loop ------------------------------------------------------------------------

    def serve(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._stop)
        # A no-op handler so that SIGCHLD writes to the wake-up socket and ends the poll.
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wake_write.fileno(), warn_on_full_buffer=False)
        try:
            while not self.stopping and os.getppid() == self.parent:
                for fd, _ in self.poller.poll(self._poll_timeout()):
                    self._event(fd)
                self._reap()
                self._expire()
        finally:
            self._shutdown()

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _poll_timeout(self) -> int:
        # Wake at least once a second to notice a dead parent; sooner for a deadline.
        deadlines = [lease.deadline for lease in self.leases.values() if lease.deadline]
        deadlines += [k.deadline for k in self.kernels.values() if k.ready_fd is not None]
        left = min(deadlines, default=time.monotonic() + 1) - time.monotonic()
        return int(max(0.0, min(left, 1.0)) * 1000) + 1

    def _event(self, fd: int) -> None:
        if fd == self.listener.fileno():
            self._accept()
        elif fd == self.wake_read.fileno():
            while True:
                try:
                    if not self.wake_read.recv(4096):
                        break
                except BlockingIOError:
                    break
        elif fd in self.readies:
            self._ready_event(self.readies[fd])
        elif fd in self.leases:
            self._lease_event(self.leases[fd])

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            # Non-blocking: a poll event for a closed lease's descriptor number may reach
            # the new lease that reused it, and must then not wait.
            sock.setblocking(False)
            lease = _Lease(sock, time.monotonic() + REQUEST_TIMEOUT)
            self.leases[sock.fileno()] = lease
            self.poller.register(sock, select.POLLIN)

    def _lease_event(self, lease: _Lease) -> None:
        try:
            data = lease.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._end_lease(lease)
            return
        lease.buffer += data
        try:
            messages = take_messages(lease.buffer)
        except ValueError:
            self._end_lease(lease)
            return
        for message in messages:
            if lease.deadline is not None:
                lease.deadline = None
                self._fork(lease, message)
            elif "signal" in message and lease.kernel and lease.kernel.status is None:
                # Still our unreaped child: its pid cannot have been recycled.
                with contextlib.suppress(OSError):
                    os.killpg(lease.kernel.pid, int(message["signal"]))

    def _send(self, lease: _Lease, message: dict[str, Any]) -> bool:
        # Messages are small: a client that cannot take one within a second is stuck.
        lease.sock.settimeout(1.0)
        try:
            lease.sock.sendall(encode(message))
        except OSError:
            return False
        finally:
            lease.sock.setblocking(False)
        return True

    def _refuse(self, lease: _Lease, reason: str) -> None:
        self._send(lease, {"error": reason, "refused": True})
        self._end_lease(lease)

    def _end_lease(self, lease: _Lease) -> None:
        """The client is gone or done: its kernel goes too."""
        fd = lease.sock.fileno()
        if self.leases.pop(fd, None) is None:
            return
        self.poller.unregister(fd)
        lease.sock.close()
        kernel, lease.kernel = lease.kernel, None
        if kernel is None:
            return
        if kernel.status is None:
            with contextlib.suppress(OSError):
                os.killpg(kernel.pid, signal.SIGKILL)
        self._close_ready(kernel)
        for path in kernel.files:
            with contextlib.suppress(OSError):
                os.unlink(path)
        if kernel.status is not None:
            self.kernels.pop(kernel.pid, None)

    # Fork requests ---------------------------------------------------------------------

    def _fork(self, lease: _Lease, request: dict[str, Any]) -> None:
        reason = self._refusal(request)
        if reason:
            self._refuse(lease, reason)
            return
        read_end, write_end = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        # Signals blocked across fork(): none may run the server's handlers in the child.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            pid = os.fork()
        except OSError as error:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(read_end)
            os.close(write_end)
            self._refuse(lease, f"fork() failed: {error}")
            return
        if pid == 0:
            os.close(read_end)
            self._child(request, write_end, mask)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(write_end)
        os.set_blocking(read_end, False)
        kernel = _Kernel(
            pid,
            read_end,
            time.monotonic() + self.ready_timeout,
            _kernel_files(request["connection_file"]),
        )
        lease.kernel = kernel
        self.kernels[pid] = kernel
        self.readies[read_end] = lease
        self.poller.register(read_end, select.POLLIN)

    def _refusal(self, request: dict[str, Any]) -> str | None:
        """Why this request cannot get a faithful forked kernel, if it cannot."""
        argv = request.get("argv") or []
        if argv[:1] != [sys.executable]:
            return f"the kernel runs on {argv[:1]}, the fork server on {sys.executable}"
        if argv[1:3] != LAUNCHER:
            return "the kernel command is not `python -m ipykernel_launcher`"
        threads = thread_count()
        if threads != 1:
            return f"the fork server has {threads} threads (an import started them)"
        env = import_time_env(request.get("env") or {})
        for name in sorted(set(env) | set(self.import_env)):
            if env.get(name) != self.import_env.get(name):
                return f"${name} differs from the fork server's and is read at import time"
        cwd = Path(request.get("cwd") or ".")
        if not cwd.is_dir():
            return f"no such folder: {cwd}"
        for name in self.preloaded:
            if _module_in(cwd, name):
                return f"the run's folder has its own `{name}`, which the fork server imported"
        if not os.path.isfile(request.get("connection_file", "")):
            return "no connection file"
        return None

    def _ready_event(self, lease: _Lease) -> None:
        kernel = lease.kernel
        assert kernel is not None and kernel.ready_fd is not None
        chunk = b"-"
        while chunk and not kernel.ready_data.startswith(b"R"):
            try:
                chunk = os.read(kernel.ready_fd, 65536)
            except BlockingIOError:
                return
            kernel.ready_data += chunk
        if kernel.ready_data.startswith(b"R"):
            self._close_ready(kernel)
            reply = {"pid": kernel.pid, "start_time": process_start_time(kernel.pid)}
            if not self._send(lease, reply):
                self._end_lease(lease)
        elif not chunk:  # the child closed the pipe without saying ready
            self._close_ready(kernel)
            detail = kernel.ready_data[1:].decode(errors="replace").strip()
            message = "the forked kernel failed to start"
            self._refuse(lease, f"{message}: {detail}" if detail else message)

    def _close_ready(self, kernel: _Kernel) -> None:
        if kernel.ready_fd is not None:
            self.poller.unregister(kernel.ready_fd)
            self.readies.pop(kernel.ready_fd, None)
            os.close(kernel.ready_fd)
            kernel.ready_fd = None

    def _expire(self) -> None:
        now = time.monotonic()
        for lease in list(self.leases.values()):
            kernel = lease.kernel
            if lease.deadline is not None and now > lease.deadline:
                self._end_lease(lease)
            elif kernel and kernel.ready_fd is not None and now > kernel.deadline:
                waited = f"{self.ready_timeout:g} s"
                self._refuse(lease, f"the forked kernel did not bind its sockets in {waited}")

    def _reap(self) -> None:
        for kernel in list(self.kernels.values()):
            if kernel.status is not None:
                continue
            try:
                pid, status = os.waitpid(kernel.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = kernel.pid, 255 << 8
            if pid == 0:
                continue
            kernel.status = os.waitstatus_to_exitcode(status)
            lease = next((x for x in self.leases.values() if x.kernel is kernel), None)
            if lease is not None and kernel.ready_fd is not None:
                self._ready_event(lease)  # the pipe tells whether it got as far as ready
            if lease is None or lease.kernel is None:
                self.kernels.pop(kernel.pid, None)
            elif not self._send(lease, {"exit": kernel.status}):
                self._end_lease(lease)

    def _shutdown(self) -> None:
        if os.getpid() != self.pid:  # never the cleanup of a child that got back here
            os._exit(1)
        signal.set_wakeup_fd(-1)
        for lease in list(self.leases.values()):
            self._end_lease(lease)
        deadline = time.monotonic() + 5
        while self.kernels and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.01)
        self.listener.close()
        self.wake_read.close()
        self.wake_write.close()
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)

    # The child ---------------------------------------------------------------------------

    def _child(
        self, request: dict[str, Any], ready: int, mask: set[int | signal.Signals]
    ) -> NoReturn:
        """Become the kernel; never return into the server's code."""
        status = 1
        try:
            os.setsid()
            self._forget_server(mask)
            stdin = os.open(os.devnull, os.O_RDONLY)
            os.dup2(stdin, 0)
            os.close(stdin)
            env = {**self.env_from_imports, **request["env"], "JPY_PARENT_PID": str(self.pid)}
            os.environ.clear()
            os.environ.update(env)
            os.chdir(request["cwd"])
            argv = list(request["argv"][3:])
            sys.argv = [self.launcher, *argv]
            _reseed()
            _restore_thread_limits(self.threadpools, env)
            from ipykernel.kernelapp import IPKernelApp

            # JPY_PARENT_PID was read when ipykernel was imported: hand the parent over.
            app = IPKernelApp.instance(parent_handle=self.pid)
            app.initialize(argv)
            os.write(ready, b"R")
            os.close(ready)
            ready = -1
            app.start()
            # Stop the channel threads before exit handlers run: otherwise the control
            # thread may still be flushing and stall the exit for seconds.
            for thread in (app.control_thread, app.shell_channel_thread):
                if thread is not None and thread.is_alive():
                    thread.stop()
                    thread.join(timeout=2)
            status = 0
        except SystemExit as error:
            status = error.code if isinstance(error.code, int) else 1
            if ready >= 0:
                os.write(ready, f"Ekernel start-up exited with status {error.code}".encode())
        except BaseException:
            detail = traceback.format_exc()
            if ready >= 0:
                os.write(ready, b"E" + detail.encode()[-8000:])
            elif sys.__stderr__ is not None:
                sys.__stderr__.write(detail)
        finally:
            try:
                atexit._run_exitfuncs()  # a normal kernel's interpreter would run them
                for stream in (sys.__stdout__, sys.__stderr__):
                    if stream is not None:
                        stream.flush()
            finally:
                os._exit(status)

    def _forget_server(self, mask: set[int | signal.Signals]) -> None:
        """Drop everything of the server's: descriptors, signal handlers, the mask."""
        signal.set_wakeup_fd(-1)
        for sig, handler in self.saved_handlers.items():
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for lease in self.leases.values():
            lease.sock.close()
        for fd in self.readies:
            os.close(fd)
        self.listener.close()
        self.wake_read.close()
        self.wake_write.close()
        if self.libc is not None:
            # Die with the server even when stuck in native code, where ipykernel's
            # parent poller thread would never run.
            self.libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != self.pid:
            os._exit(1)


def _kernel_files(connection_file: str) -> list[str]:
    """The connection file and, for the ipc transport, the kernel's socket files."""
    files = [connection_file]
    try:
        info = json.loads(Path(connection_file).read_text())
    except (OSError, ValueError):
        return files
    if info.get("transport") == "ipc":
        ports = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
        files += [f"{info['ip']}-{info[port]}" for port in ports if port in info]
    return files


def _module_in(folder: Path, name: str) -> bool:
    """Whether ``import name`` would find a module in ``folder`` (a kernel's ``''``)."""
    return (
        (folder / f"{name}.py").is_file()
        or (folder / name / "__init__.py").is_file()
        or any(folder.glob(f"{name}.*.so"))
    )


def _launcher_path() -> str:
    spec = importlib.util.find_spec("ipykernel_launcher")
    return spec.origin if spec and spec.origin else "ipykernel_launcher"


def _reseed() -> None:
    # Every child would otherwise draw the same numbers from numpy's global generator.
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _threadpools() -> Any:
    """threadpoolctl's view of the loaded BLAS/OpenMP libraries, if it is installed."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def _restore_thread_limits(threadpools: Any, env: dict[str, str]) -> None:
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


def _learn_kernel_imports(folder: str, timeout: float) -> list[str]:
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


def _import_all(names: Iterable[str]) -> dict[str, str]:
    """Import each module; return the failures, which only cost speed."""
    failed = {}
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as error:  # any import error: the kernel will meet it itself
            failed[name] = f"{type(error).__name__}: {error}"
    return failed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nbprod.forkserver")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--ready-timeout", type=float, default=READY_TIMEOUT)
    parser.add_argument("--preload", default="[]", help="JSON list of modules to import")
    args = parser.parse_args(argv)
    started_env = dict(os.environ)
    # As ipykernel_launcher does: the script's folder is not the kernel's sys.path[0].
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    os.environ.update({**dict.fromkeys(THREAD_VARS, "1"), **SERVER_ENV})
    preload: list[str] = json.loads(args.preload)
    folder = os.path.dirname(args.socket)
    # Listen before importing: requests queue up meanwhile, instead of finding no server.
    # The parent waits for the socket file: it appears (renamed) only once it listens, since
    # a connection between bind() and listen() would be refused.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.socket + ".binding")
    listener.listen(64)
    os.rename(args.socket + ".binding", args.socket)
    _import_all(["ipykernel.kernelapp", "ipykernel.ipkernel"])
    _import_all(_learn_kernel_imports(folder, args.ready_timeout))
    failed = _import_all(preload)
    imported = [name for name in preload if name not in failed]
    # threadpoolctl is the server's tool, not the notebook's: a kernel must not inherit
    # what importing it put in os.environ (KMP_DUPLICATE_LIB_OK).
    before = set(os.environ)
    threadpools = _threadpools()
    for name in set(os.environ) - before:
        del os.environ[name]
    server = _Server(
        listener, args.socket, args.parent, args.ready_timeout, imported, started_env, threadpools
    )
    # Imports done: keep the collector off these objects so children share their pages.
    gc.freeze()
    report = {
        "imported": imported,
        "failed": failed,
        "threads": thread_count(),
    }
    os.write(args.ready_fd, json.dumps(report).encode())
    os.close(args.ready_fd)
    server.serve()


if __name__ == "__main__":
    main()
