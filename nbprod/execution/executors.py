"""Where the runs of a sweep execute: local worker processes or a Dask cluster.

Executors form a registry (``EXECUTORS``) that other packages extend through the
``nbprod.executors`` entry point group. Each takes run specs and reports a RunEvent
per run; a run's failure is an event, never an exception of the executor.
"""

from __future__ import annotations

import concurrent.futures as futures
import io
import multiprocessing
import os
import signal
import sys
import tarfile
import tempfile
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from nbprod.exceptions import Cancelled, NbprodError, UsageError
from nbprod.execution.kernels import kill_kernels_of
from nbprod.execution.sweep import EventHandler, RunEvent, RunSpec
from nbprod.runs.records import RunRecord, run_dir


class Executor(Protocol):
    def run(self, specs: list[RunSpec], report: EventHandler) -> None:
        """Run every spec, calling ``report`` as runs start and end; return when all ended."""


def execute_spec(spec: RunSpec, manager_factory: Callable[[], type] | None = None) -> RunRecord:
    """Run one spec in this process and return its record, whatever the outcome."""
    from nbprod.execution.execute import RunOptions, run_notebook
    from nbprod.runs.store import RunStore, store_path

    options = RunOptions(
        kernel=spec.kernel,
        timeout=spec.timeout,
        run_id=spec.run_id,
        sweep_id=spec.sweep_id,
        store=spec.store,
        kernel_manager_class=manager_factory() if manager_factory else None,
        round_trip=False,
        **spec.papermill,
    )
    try:
        return run_notebook(spec.notebook, spec.parameters, options)
    except NbprodError:
        return RunStore(store_path(Path(spec.notebook), spec.store)).get(spec.run_id)


# -- local worker processes ---------------------------------------------------------------


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group; only the parent decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminate_worker)


def _terminate_worker(signum: int, frame: object) -> None:
    kill_kernels_of(os.getpid())
    os._exit(128 + signum)


def _run_in_worker(spec: RunSpec, fork_socket: str | None) -> RunRecord:
    factory = None
    if fork_socket:
        from nbprod.execution.forkserver.handle import fork_kernel_manager

        def factory() -> type:
            return fork_kernel_manager(fork_socket)

    return execute_spec(spec, factory)


class LocalExecutor:
    """One process per worker (default: one per core), each running one kernel at a time.

    With ``fork=True`` a fork server that has already imported the notebook's modules
    forks a brand-new kernel for every run (see ``forkserver/``), so runs do not
    pay for kernel start-up and imports; runs fall back to normal kernels where
    forking is refused, and their record says why.
    """

    def __init__(
        self,
        workers: int | None = None,
        fork_socket: str | None = None,
        fork: bool = True,
        log: Path | None = None,
        preload: list[str] | None = None,
    ) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.fork_socket = fork_socket
        self.fork = fork
        self.log = log
        self.preload = preload  # the fork server's imports (default: from the notebook)
        self._server: Any = None  # the ForkServer this executor started
        self._pool: futures.ProcessPoolExecutor | None = None

    def start(self, notebook: str, sweep_id: str, runs: int) -> None:
        """Get ready for ``runs`` runs: start the fork server (it imports the notebook's
        modules without being waited for) and the worker processes, so that both work
        while the caller checks the notebook and records the runs. ``run`` starts what
        nobody started, and stops everything once the runs are over."""
        try:
            if self.fork and not self.fork_socket and self._server is None:
                from nbprod.execution.forkserver.handle import ForkServer
                from nbprod.execution.sweep import preload_modules

                log = self.log or Path(tempfile.gettempdir()) / f"nbprod-{sweep_id}.log"
                preload = self.preload or preload_modules(notebook)
                self._server = ForkServer(preload, log=log).start(wait=False)
            if self._pool is None:
                self._pool = _worker_pool(min(self.workers, runs) or 1)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the fork server (it kills its kernels) and the workers."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def run(self, specs: list[RunSpec], report: EventHandler) -> None:
        if not specs:
            return
        try:
            self.start(specs[0].notebook, specs[0].sweep_id, len(specs))
            socket = self.fork_socket or (self._server.socket_path if self._server else None)
            assert self._pool is not None
            self._run(self._pool, specs, socket, report)
        finally:
            self.close()

    def _run(
        self,
        pool: futures.ProcessPoolExecutor,
        specs: list[RunSpec],
        fork_socket: str | None,
        report: EventHandler,
    ) -> None:
        pending = {pool.submit(_run_in_worker, spec, fork_socket): spec for spec in specs}
        started: set[str] = set()
        try:
            waiting = set(pending)
            while waiting:
                done, waiting = futures.wait(waiting, 0.5, futures.FIRST_COMPLETED)
                for future in list(waiting):
                    spec = pending[future]
                    if future.running() and spec.run_id not in started:
                        started.add(spec.run_id)
                        report(RunEvent(spec.run_id, "running"))
                for future in done:
                    spec = pending[future]
                    report(_finished(spec, future))
        except BaseException:
            # Ctrl-C or an error of the caller: stop everything, kernels included.
            processes = list(getattr(pool, "_processes", {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join(timeout=10)
            raise
        pool.shutdown(wait=True)


def _worker_pool(workers: int) -> futures.ProcessPoolExecutor:
    """``workers`` processes, started now. On Linux they are forks of this process after
    it imported what a run needs (papermill, nbclient), so they start in milliseconds and
    exit without an interpreter's shutdown; elsewhere each starts a new interpreter."""
    if sys.platform == "linux":
        import papermill  # noqa: F401  (the workers inherit it)

        import nbprod.execution.execute  # noqa: F401

        context = multiprocessing.get_context("fork")
    else:
        context = multiprocessing.get_context("spawn")
    pool = futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init)
    pool.submit(int)  # starts the workers: with fork, before any thread of the pool's
    return pool


def _finished(spec: RunSpec, future: futures.Future[RunRecord]) -> RunEvent:
    try:
        record = future.result()
    except BaseException as error:  # the worker itself died
        return RunEvent(spec.run_id, "failed", error=f"the worker process failed: {error!r}")
    return RunEvent(spec.run_id, record.status, record=record)


# -- Dask ----------------------------------------------------------------------------------


def _run_on_dask_worker(spec: RunSpec, notebook_bytes: bytes) -> tuple[RunRecord, bytes]:
    """Run on a cluster worker; return the record and the run folder as a tar.gz.

    The notebook runs in place when the worker sees the same file (a shared file
    system, where its data lives too), else from a private copy. The worker writes
    to a private store; the client files the record and the folder locally.
    """
    notebook = Path(spec.notebook)
    with tempfile.TemporaryDirectory(prefix="nbprod-dask-") as scratch:
        if not (notebook.is_file() and notebook.read_bytes() == notebook_bytes):
            notebook = Path(scratch) / notebook.name
            notebook.write_bytes(notebook_bytes)
        local = RunSpec(
            notebook=str(notebook),
            parameters=spec.parameters,
            run_id=spec.run_id,
            sweep_id=spec.sweep_id,
            kernel=spec.kernel,
            timeout=spec.timeout,
            store=str(Path(scratch) / "runs.db"),
        )
        record = execute_spec(local)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            archive.add(run_dir(notebook, spec.run_id), arcname=".")
        return record, buffer.getvalue()


class DaskExecutor:
    """Sends each run to a Dask cluster; records and artifacts come back to this store."""

    def __init__(self, scheduler: str | None = None, workers: int | None = None) -> None:
        # `workers` is accepted for a uniform CLI; the cluster decides its own parallelism.
        if not scheduler:
            raise UsageError(
                "the dask executor needs a scheduler address",
                "pass --scheduler tcp://HOST:PORT (or set dask.address in [tool.nbprod])",
            )
        self.scheduler = scheduler

    def run(self, specs: list[RunSpec], report: EventHandler) -> None:
        from distributed import Client, as_completed

        from nbprod.runs.store import RunStore, store_path

        with Client(self.scheduler, timeout="30s") as client:
            submitted = {}
            for spec in specs:
                payload = Path(spec.notebook).read_bytes()
                future = client.submit(_run_on_dask_worker, spec, payload, pure=False)
                submitted[future] = spec
                report(RunEvent(spec.run_id, "running"))
            try:
                for future in as_completed(submitted):
                    spec = submitted[future]
                    try:
                        record, archive = future.result()
                    except Exception as error:
                        report(RunEvent(spec.run_id, "failed", error=f"dask: {error!r}"))
                        continue
                    folder = run_dir(Path(spec.notebook), spec.run_id)
                    if not (folder / "run.json").is_file():
                        folder.mkdir(parents=True, exist_ok=True)
                        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
                            tar.extractall(folder, filter="data")
                    record.notebook = spec.notebook
                    RunStore(store_path(Path(spec.notebook), spec.store)).save(record, folder)
                    report(RunEvent(spec.run_id, record.status, record=record))
            except BaseException:
                client.cancel(list(submitted))
                raise


ExecutorFactory = Callable[..., Executor]
EXECUTORS: dict[str, ExecutorFactory] = {"local": LocalExecutor, "dask": DaskExecutor}


def executor(name: str, **options: Any) -> Executor:
    """The executor registered under ``name`` (built in, or an ``nbprod.executors`` plugin)."""
    factories = dict(EXECUTORS)
    for point in entry_points(group="nbprod.executors"):
        factories.setdefault(point.name, point.load())
    if name not in factories:
        raise UsageError(f"unknown executor {name!r}", f"choose one of: {', '.join(factories)}")
    return factories[name](**options)


__all__ = ["EXECUTORS", "Cancelled", "DaskExecutor", "LocalExecutor", "executor"]
