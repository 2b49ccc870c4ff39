"""A fork server: a process that did a notebook's imports once forks a fresh kernel per run.

A sweep needs an isolated kernel for every run, and a cold ipykernel plus the
notebook's imports (scikit-learn alone: ~1.3 s) would dominate a light run. The
server (``python -m nbprod.execution.forkserver.server``, started by ``ForkServer``) pins BLAS and
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
manager that talks to it is ``manager.ForkKernelManager``.
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
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from nbprod.execution.forkserver.preload import (
    KernelImports,
    import_all,
    load_runtime,
    restore_thread_limits,
    thread_pools,
)
from nbprod.execution.forkserver.protocol import (
    LAUNCHER,
    READY_TIMEOUT,
    REQUEST_TIMEOUT,
    SERVER_ENV,
    THREAD_VARS,
    encode,
    import_time_env,
    process_start_time,
    take_messages,
    thread_count,
)

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


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
            restore_thread_limits(self.threadpools, env)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nbprod.execution.forkserver.server")
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
    import_all(["ipykernel.kernelapp", "ipykernel.ipkernel"])
    # The throw-away kernel learns what kernels import while this process imports the
    # notebook's modules: two cores, two things at once.
    learning = KernelImports(folder)
    failed = import_all(preload)
    import_all(learning.result(args.ready_timeout))
    imported = [name for name in preload if name not in failed]
    runtime_error = load_runtime()
    if runtime_error is not None:
        failed["nbprod runtime"] = runtime_error
    # threadpoolctl is the server's tool, not the notebook's: a kernel must not inherit
    # what importing it put in os.environ (KMP_DUPLICATE_LIB_OK).
    before = set(os.environ)
    threadpools = thread_pools()
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
