"""Time a 20-run sweep of a light notebook: papermill as is against nbprod's fork server.

The notebook: a parameters cell ``C``, scikit-learn imports, LogisticRegression fit
on iris. Each mode runs it 20 times (C = 0.05, 0.10, ... 1.00), all in this one
process run, and reports the total wall time, the time a run spends outside its
cells (the run's own elapsed time minus the sum of its cells' durations recorded by
papermill in the executed notebook) and the cells' time:

(a) the papermill CLI, one process per run (the baseline);
(b) ``papermill.execute_notebook`` in a loop in one process;
(c) a 2-process pool running ``execute_notebook`` with normal kernels;
(d) the same pool with kernels forked by nbprod's fork server (its start-up and the
    notebook's imports, overlapping the workers' start, are in the total), with
    jupyter_client's stock ready wait;
(e) as (d), with the end of jupyter_client's ready wait cut from 0.2 s to 0.01 s
    (``fork_kernel_manager(..., ready_settle=0.01)``, nbprod's default);
(f) the product itself: ``nbprod run NB -p C=v1,...,v20 --workers 2`` on the same cells
    tagged by role, as a CLI process: check, fork server, recording cells (parity,
    artifacts saved with skops, metrics) and the run store all included.

One untimed run of papermill and one of nbprod first warm the disk cache and write
the bytecode caches of what they import, as any installed Python environment has them
(``PYTHONDONTWRITEBYTECODE`` is lifted for these two only). The target is (f)/(a) <= 0.1.
Nothing is stored; the temporary folder is removed at the end.

Run from the repository root:  .venv/bin/python bench/sweep.py [--runs N] [--modes af]
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from nbprod.execution.forkserver.handle import ForkServer

BIN = Path(sys.executable).parent
WORKERS = 2
# What the notebook imports at top level: the fork server imports them once.
PRELOAD = ["sklearn.datasets", "sklearn.linear_model"]
CELLS = (
    "C = 1.0",
    "from sklearn.datasets import load_iris\nfrom sklearn.linear_model import LogisticRegression",
    "X, y = load_iris(return_X_y=True)",
    "model = LogisticRegression(C=C, max_iter=500).fit(X, y)\nprint(model.score(X, y))",
)


@dataclass
class Run:
    seconds: float  # the run's own elapsed time
    cells: float  # the sum of its cells' durations
    started_by: str = "kernel"


@dataclass
class Mode:
    name: str
    total: float = 0.0
    runs: list[Run] = field(default_factory=list)

    @property
    def overhead(self) -> float:
        return sum(r.seconds - r.cells for r in self.runs) / len(self.runs)

    @property
    def steady_overhead(self) -> float:
        """The median: leaves out the first runs' wait for workers or a server to start."""
        return statistics.median(r.seconds - r.cells for r in self.runs)

    @property
    def cells(self) -> float:
        return sum(r.cells for r in self.runs) / len(self.runs)


TAGGED = (
    ("parameters", CELLS[0]),
    (None, CELLS[1]),
    ("data", CELLS[2]),
    ("train", CELLS[3]),
    ("inference", "def predict(rows):\n    return model.predict(rows)"),
    (None, "predict(X[:5])"),
)


def write_tagged_notebook(folder: Path) -> Path:
    notebook = new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    for role, source in TAGGED:
        cell = new_code_cell(source)
        if role:
            cell.metadata["tags"] = [role]
        notebook.cells.append(cell)
    path = folder / "light_tagged.ipynb"
    nbformat.write(notebook, str(path))
    return path


def nbprod_sweep(folder: Path, values: list[float], env: dict[str, str] | None = None) -> list[Run]:
    """One `nbprod run` sweep of all values, as a user runs it."""
    notebook = write_tagged_notebook(folder)
    grid = ",".join(str(v) for v in values)
    result = subprocess.run(
        [
            str(BIN / "nbprod"),
            "run",
            str(notebook),
            "-p",
            f"C={grid}",
            "--workers",
            str(WORKERS),
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    runs = json.loads(result.stdout)["runs"]
    return [
        Run(r["duration"], cell_seconds(Path(r["folder"]) / "executed.ipynb"), r["kernel_start"])
        for r in runs
    ]


def write_notebook(folder: Path) -> Path:
    notebook = new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    notebook.metadata["language_info"] = {"name": "python"}
    for source in CELLS:
        notebook.cells.append(new_code_cell(source))
    notebook.cells[0].metadata["tags"] = ["parameters"]
    path = folder / "light.ipynb"
    nbformat.write(notebook, str(path))
    return path


def cell_seconds(executed: Path) -> float:
    """The sum of the cells' durations papermill recorded in the executed notebook."""
    notebook = nbformat.read(str(executed), as_version=4)
    return sum(
        float(cell.metadata.get("papermill", {}).get("duration") or 0.0)
        for cell in notebook.cells
        if cell.cell_type == "code"
    )


def run_cli(notebook: Path, output: Path, c: float, env: dict[str, str] | None = None) -> Run:
    started = time.perf_counter()
    subprocess.run(
        [str(BIN / "papermill"), str(notebook), str(output), "-p", "C", str(c), "-k", "python3"],
        check=True,
        capture_output=True,
        cwd=notebook.parent,
        env=env,
    )
    return Run(time.perf_counter() - started, cell_seconds(output))


def run_in_process(
    notebook: str,
    output: str,
    c: float,
    fork_socket: str | None = None,
    ready_settle: float | None = None,
) -> Run:
    """One execute_notebook run; with ``fork_socket``, on a kernel from that fork server."""
    import papermill

    options: dict[str, object] = {}
    started_by = "kernel"
    manager = None
    if fork_socket is not None:
        from nbprod.execution.forkserver.manager import fork_kernel_manager

        manager = fork_kernel_manager(fork_socket, ready_settle=ready_settle)
        options["kernel_manager_class"] = manager
    started = time.perf_counter()
    papermill.execute_notebook(
        notebook,
        output,
        parameters={"C": c},
        kernel_name="python3",
        cwd=str(Path(notebook).parent),
        progress_bar=False,
        **options,
    )
    seconds = time.perf_counter() - started
    if manager is not None:
        started_by = str(manager.started_by)
    return Run(seconds, cell_seconds(Path(output)), started_by)


def in_pool(
    notebook: Path,
    outputs: Path,
    values: list[float],
    fork_socket: str | None = None,
    ready_settle: float | None = None,
) -> list[Run]:
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        jobs = [
            pool.submit(
                run_in_process,
                *(str(notebook), str(outputs / f"{i}.ipynb"), c, fork_socket, ready_settle),
            )
            for i, c in enumerate(values)
        ]
        return [job.result() for job in jobs]


@contextmanager
def kernels_quiet() -> Iterator[TextIO]:
    """Send what kernels and workers write to stderr (warnings, log lines) to /dev/null;
    yield the real stderr for progress."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        with open(saved, "w", closefd=False) as progress:
            yield progress
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def timed(name: str, work: Callable[[], list[Run]], progress: TextIO) -> Mode:
    print(f"  {name} ...", file=progress, flush=True)
    started = time.perf_counter()
    runs = work()
    return Mode(name, time.perf_counter() - started, runs)


def forked(notebook: Path, outputs: Path, values: list[float], settle: float | None) -> list[Run]:
    """A pool on a fork server that is started (imports included) inside the timing.

    The server imports while the pool's workers start: requests wait for it.
    """
    with ForkServer(PRELOAD).start(wait=False) as server:
        return in_pool(notebook, outputs, values, server.socket_path, settle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--modes", default="abcdef", help="which modes to time; (a) always")
    arguments = parser.parse_args()
    runs, chosen = arguments.runs, set(arguments.modes) | {"a"}
    values = [round(0.05 * (i + 1), 2) for i in range(runs)]
    with tempfile.TemporaryDirectory(prefix="nbprod-bench-") as tmp:
        folder = Path(tmp)
        notebook = write_notebook(folder)
        for name in "abcdef":
            (folder / name).mkdir()
        (folder / "warm").mkdir()
        with kernels_quiet() as progress:
            print(f"{runs} runs of {notebook.name}; warming up", file=progress, flush=True)
            caching = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            run_cli(notebook, folder / "warm.ipynb", 1.0, env=caching)
            nbprod_sweep(folder / "warm", values[:2], env=caching)

            def cli_loop() -> list[Run]:
                outputs = folder / "a"
                return [run_cli(notebook, outputs / f"{i}.ipynb", c) for i, c in enumerate(values)]

            def in_process_loop() -> list[Run]:
                outputs = folder / "b"
                return [
                    run_in_process(str(notebook), str(outputs / f"{i}.ipynb"), c)
                    for i, c in enumerate(values)
                ]

            plans: list[tuple[str, str, Callable[[], list[Run]]]] = [
                ("a", "(a) papermill CLI, one per run", cli_loop),
                ("b", "(b) execute_notebook, one process", in_process_loop),
                (
                    "c",
                    f"(c) execute_notebook, {WORKERS} processes",
                    lambda: in_pool(notebook, folder / "c", values),
                ),
                (
                    "d",
                    f"(d) fork server, {WORKERS} processes",
                    lambda: forked(notebook, folder / "d", values, None),
                ),
                (
                    "e",
                    "(e) as (d), ready wait 0.01 s",
                    lambda: forked(notebook, folder / "e", values, 0.01),
                ),
                (
                    "f",
                    f"(f) nbprod run sweep, {WORKERS} workers",
                    lambda: nbprod_sweep(folder / "f", values),
                ),
            ]
            modes = {key: timed(name, work, progress) for key, name, work in plans if key in chosen}
    report(modes, runs)


def report(modes: dict[str, Mode], runs: int) -> None:
    print(f"\n{runs} runs of a light notebook (LogisticRegression on iris), {os.cpu_count()} cores")
    print("seconds; 'outside cells' is a run's elapsed time minus its cells' (mean, median)")
    print(f"{'mode':<38}{'total':>7}{'per run':>9}{'outside cells':>18}{'cells':>7}")
    for mode in modes.values():
        print(
            f"{mode.name:<38}{mode.total:>7.1f}{mode.total / runs:>9.2f}"
            f"{mode.overhead:>11.2f}{mode.steady_overhead:>7.2f}{mode.cells:>7.2f}"
        )
    for key in "def":
        forked = modes.get(key)
        fallbacks = [r.started_by for r in forked.runs if r.started_by != "fork"] if forked else []
        if forked and fallbacks:
            print(f"{forked.name}: {len(fallbacks)} runs not forked: {fallbacks[0]}")
    a, c = modes["a"], modes.get("c")
    print()
    for key in "def":
        timed_mode = modes.get(key)
        if timed_mode is None:
            continue
        total = timed_mode.total
        against_c = f"   ({key})/(c) = {total / c.total:.3f}" if c else ""
        print(f"({key})/(a) = {total / a.total:.3f}{against_c}")
    if "f" in modes:
        verdict = "met" if modes["f"].total / a.total <= 0.1 else "NOT met"
        print(f"target (f)/(a) <= 0.1: {verdict}")


if __name__ == "__main__":
    main()
