"""Notebooks as tests: the stages ``check``, ``execute`` and ``parity`` of one notebook.

Shared by the pytest plugin (``pytest --nbprod``) and ``nbprod test``:

- ``check``: static analysis finds no problem (warnings do not fail it);
- ``execute``: the notebook runs with its smoke parameters and is recorded as a run,
  exactly as ``nbprod run --smoke`` would record it; kernels are forked by one warm
  fork server per ``Tester``, as in a sweep;
- ``parity``: the package extracted from that run passes its own tests of predictions
  (equal to the notebook's) and of the ``test`` cells, imported from the generated
  source by this interpreter (the notebook ran on it, so it has what the package needs).

A notebook without roles can only be executed (``execute_plain``). A failing stage
raises ``StageFailed`` whose text says everything: the cell, its source with the
failing line marked, the error, and where the executed notebook is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbprod.analysis.analyzer import analyze
from nbprod.analysis.facts import Problem
from nbprod.analysis.parsing import leading_blank_lines
from nbprod.exceptions import ExecutionFailed, NbprodError, PackageBroken
from nbprod.execution.execute import run_budget
from nbprod.execution.failures import ANSI, error_heading, error_traceback, traceback_line
from nbprod.execution.nbmake_settings import FOLLOWS, add_follow_ups, execution_settings
from nbprod.notebook import declared_kernel, load_notebook
from nbprod.runs.records import EXECUTED, RunRecord, run_dir

if TYPE_CHECKING:
    from nbprod.execution.forkserver.handle import ForkServer

STAGES = ("check", "execute", "parity")
PARITY_TIMEOUT = 600.0  # seconds for the generated package's own test run
# The package's tests of the notebook's predictions and of its `test` cells. Its HTTP
# tests need the [serve] extra; `nbprod publish` runs them in the package's own venv.
PARITY_TESTS = ("tests/test_parity.py", "tests/test_notebook.py")
TRACEBACK_LINES = 40  # of the kernel's traceback, from its end


class StageFailed(Exception):
    """A stage failed; the text is the whole report (no traceback of nbprod's own)."""


@dataclass
class StageResult:
    stage: str
    status: str  # "passed", "failed", or "not run" (an earlier stage failed)
    seconds: float = 0.0
    text: str = ""
    record: RunRecord | None = None


@dataclass
class NotebookResult:
    path: Path
    tagged: bool
    stages: dict[str, StageResult] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(result.status != "failed" for result in self.stages.values())

    @property
    def seconds(self) -> float:
        return sum(result.seconds for result in self.stages.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "tagged": self.tagged,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "stages": {
                name: {
                    "status": result.status,
                    "seconds": round(result.seconds, 3),
                    "error": result.text or None,
                    "run": result.record.id if result.record else None,
                }
                for name, result in self.stages.items()
            },
        }


def check(path: Path) -> None:
    """The ``check`` stage: raise StageFailed listing the problems, if any."""
    try:
        problems = analyze(load_notebook(path)).errors
    except NbprodError as error:
        raise StageFailed(_error_text(error)) from None
    if problems:
        raise StageFailed(problems_text(problems))


class Tester:
    """Executes notebooks for tests; one fork server, started on first need, serves all.

    ``expect()`` names notebooks that will be executed, so that the fork server imports
    their modules once; ``fork=False`` starts every kernel as a new process.
    """

    def __init__(self, fork: bool = True, keep: bool = False, timeout: float | None = None) -> None:
        self.fork = fork
        self.keep = keep  # keep extracted packages and executed copies that passed
        self.timeout = timeout  # seconds for one notebook's run (and any one cell)
        self._expected: list[Path] = []
        self._server: ForkServer | None = None
        self._scratch: str | None = None

    def __enter__(self) -> Tester:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def expect(self, paths: Iterable[Path]) -> None:
        self._expected += [path for path in paths if path not in self._expected]

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    # -- stages ---------------------------------------------------------------------------

    def execute(self, path: Path) -> RunRecord:
        """The ``execute`` stage: a recorded run with the smoke parameters."""
        from nbprod.execution.execute import RunOptions, run_notebook

        try:
            notebook = load_notebook(path)
            options = RunOptions(
                timeout=self.timeout,
                kernel_manager_class=self._manager_class(path),
                round_trip=False,  # the parity stage extracts and checks the package next
            )
            return run_notebook(path, dict(notebook.settings.smoke), options)
        except ExecutionFailed as error:
            raise StageFailed(execution_text(path, error)) from None
        except NbprodError as error:
            raise StageFailed(_error_text(error)) from None

    def parity(self, path: Path, record: RunRecord) -> Path:
        """The ``parity`` stage: the package extracted from ``record`` passes its tests.

        Returns the package's folder (removed again unless ``keep``); a failure keeps it.
        """
        from nbprod.extract import extract

        folder = Path(tempfile.mkdtemp(prefix=f"nbprod-{record.package}-"))
        broken = ""  # what extract's own check of the package found
        try:
            try:
                extracted = extract(path, record.id, folder / record.package).path
            except PackageBroken as error:
                # extract hands over no broken package; this stage keeps one to look at
                broken = _error_text(error) + "\n"
                extracted = extract(path, record.id, folder / record.package, verify=False).path
        except NbprodError as error:
            shutil.rmtree(folder, ignore_errors=True)
            raise StageFailed(_error_text(error)) from None
        env = {**os.environ, "PYTHONPATH": str(extracted / "src")}
        env.pop("PYTEST_ADDOPTS", None)  # the caller's options are not the package's
        tests = [name for name in PARITY_TESTS if (extracted / name).is_file()]
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
        try:
            result = subprocess.run(
                command,
                cwd=extracted,
                env=env,
                capture_output=True,
                text=True,
                timeout=PARITY_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise StageFailed(
                f"the tests of the package extracted from run {record.id} did not finish "
                f"in {PARITY_TIMEOUT:g} s\npackage: {extracted}\n{executed_line(path, record.id)}"
            ) from None
        if result.returncode != 0:
            raise StageFailed(
                f"{broken}the package extracted from run {record.id} fails its tests "
                f"(pytest exit code {result.returncode}):\n{result.stdout}{result.stderr}\n"
                f"package: {extracted}\n{executed_line(path, record.id)}"
            )
        if broken:
            raise StageFailed(f"{broken}package: {extracted}\n{executed_line(path, record.id)}")
        if not self.keep:
            shutil.rmtree(folder, ignore_errors=True)
        return extracted

    def execute_plain(self, path: Path) -> Path:
        """Run every cell of a notebook without roles into a copy; return the copy's path.

        nbclient runs it as nbmake does: a cell tagged ``raises-exception`` may raise,
        one tagged ``skip-execution`` is not run. The copy, partial when a cell failed,
        is removed when the run passes (unless ``keep``), kept when it fails.
        """
        import nbformat
        from jupyter_client.kernelspec import NoSuchKernel
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

        try:
            node = nbformat.read(str(path), as_version=4)
        except Exception as error:  # nbformat's reading errors have no common base
            raise StageFailed(f"{path} cannot be read as a notebook: {error}") from None
        execution = execution_settings(node.metadata)
        numbers = add_follow_ups(node)  # the user's cell number of every cell that runs
        timeout = execution.timeout or self.timeout  # the notebook's own wins, as in nbmake
        kernel, language = _plain_kernel(node, path)
        manager = self._manager_class(path) if kernel == _kernel_name(path) else None
        options: dict[str, Any] = {"kernel_manager_class": manager} if manager else {}
        started: list[int] = []

        def on_cell_start(cell: object, cell_index: int, **_: object) -> None:
            started.append(cell_index)

        if timeout:
            options["timeout_func"] = run_budget(timeout)  # for the run, as tagged ones
        client = NotebookClient(
            node,
            kernel_name=kernel,
            allow_errors=execution.allow_errors,
            shutdown_kernel="immediate",  # as papermill's runs: no stray interrupt noise
            resources={"metadata": {"path": str(path.parent)}},
            on_cell_start=on_cell_start,
            **options,
        )
        output = Path(tempfile.mkdtemp(prefix="nbprod-plain-")) / path.name
        try:
            client.execute()
        except CellExecutionError as error:
            cell = node.cells[started[-1]]
            traceback = error_traceback(cell)
            raise StageFailed(
                "\n".join(
                    [
                        f"{_plain_label(cell, numbers[started[-1]])}: "
                        f"{error_heading(error.ename, error.evalue)}",
                        *_marked_source(cell.source, _user_line(traceback, cell.source)),
                        *_kernel_traceback(traceback),
                        *_captured_stderr(cell),
                        f"executed notebook: {output}",
                    ]
                )
            ) from None
        except NoSuchKernel:
            raise StageFailed(
                f"the notebook's kernel `{kernel}` ({language}) is not installed here\n"
                f"  fix: install that kernel (see `jupyter kernelspec list`), "
                "or leave the notebook out of the paths"
            ) from None
        except (DeadKernelError, CellTimeoutError) as error:
            index = started[-1] if started else 0
            if isinstance(error, DeadKernelError):
                what = "the kernel died while running this cell"
            else:
                what = f"the run went past its timeout of {timeout or 0:g} s in this cell"
            cell = node.cells[index] if node.cells else None
            raise StageFailed(
                "\n".join(
                    [
                        f"{_plain_label(cell, numbers[index] if numbers else 1)}: {what}",
                        *_marked_source(cell.source if cell else "", None),
                        f"executed notebook: {output}",
                    ]
                )
            ) from None
        except Exception as error:  # nbclient's other errors, e.g. a kernel that never started
            raise StageFailed(
                f"{type(error).__name__}: {error}\nexecuted notebook: {output}"
            ) from None
        finally:
            nbformat.write(node, str(output))
        if not self.keep:
            shutil.rmtree(output.parent, ignore_errors=True)
        return output

    def test(self, path: Path, tagged: bool) -> NotebookResult:
        """Every stage of one notebook in order; a failed stage leaves the rest not run."""
        result = NotebookResult(path, tagged)
        if not tagged:
            result.stages["execute"] = _timed("execute", lambda: self.execute_plain(path))
            return result
        checked = _timed("check", lambda: check(path))
        result.stages["check"] = checked
        executed = StageResult("execute", "not run")
        if checked.status == "passed":
            executed = _timed("execute", lambda: self.execute(path))
        result.stages["execute"] = executed
        record = executed.record
        parity = StageResult("parity", "not run")
        if record is not None:
            parity = _timed("parity", lambda: self.parity(path, record))
        result.stages["parity"] = parity
        return result

    # -- kernels --------------------------------------------------------------------------

    def _manager_class(self, path: Path) -> type | None:
        """A fork-server kernel manager (a new class per run: it records how it started).

        The fork server pays for itself from the second notebook on: one notebook alone
        gets a kernel of its own, started as a new process.
        """
        from nbprod.execution.kernels import kernel_manager_for

        self.expect([path])
        if not self.fork or (self._server is None and len(self._expected) < 2):
            return kernel_manager_for(_kernel_name(path))
        return self._fork_server().manager_class()

    def _fork_server(self) -> ForkServer:
        if self._server is None:
            from nbprod.execution.forkserver.handle import ForkServer
            from nbprod.execution.sweep import RUNTIME_MODULES, notebook_imports
            from nbprod.testing.discover import has_roles

            # nbprod's recorder (skops.io loads most of sklearn) runs in tagged notebooks only
            tagged = any(has_roles(notebook) for notebook in self._expected)
            modules = list(RUNTIME_MODULES) if tagged else []
            for notebook in self._expected:
                try:
                    modules += notebook_imports(notebook)
                except NbprodError:
                    continue  # its own stage reports what is wrong with it
            self._scratch = tempfile.mkdtemp(prefix="nbprod-test-")
            log = Path(self._scratch) / "forkserver.log"
            self._server = ForkServer(dict.fromkeys(modules), log=log).start(wait=False)
        return self._server


def _timed(stage: str, action: Callable[[], object]) -> StageResult:
    started = time.perf_counter()
    try:
        value = action()
    except StageFailed as failure:
        return StageResult(stage, "failed", time.perf_counter() - started, str(failure))
    record = value if isinstance(value, RunRecord) else None
    return StageResult(stage, "passed", time.perf_counter() - started, record=record)


def _plain_label(cell: Any, number: int) -> str:
    """``cell N``, or which of its nbmake settings failed when it is one added after N."""
    if cell is not None and FOLLOWS in cell.get("metadata", {}):
        return f"cell {number} (its nbmake mock/post_cell_execute)"
    return f"cell {number}"


def _plain_kernel(node: Any, path: Path) -> tuple[str, str]:
    """The kernel and language a notebook without roles runs on.

    Python notebooks run on this interpreter (forked kernels, like every nbprod run),
    whatever their kernelspec is called; a notebook in another language runs on its
    own kernel, which must be installed (as nbmake and papermill run it).
    """
    name, language = declared_kernel(node.metadata)
    if language == "python" or not name:
        return _kernel_name(path), "python"
    return name, language


def _kernel_name(path: Path) -> str:
    from nbprod.execution.kernels import CURRENT_PYTHON

    try:
        return load_notebook(path).settings.kernel or CURRENT_PYTHON
    except NbprodError:
        return CURRENT_PYTHON


# -- failure text -------------------------------------------------------------------------


def problems_text(problems: list[Problem]) -> str:
    count = len(problems)
    lines = [f"nbprod check found {count} problem{'s' * (count != 1)}:"]
    for problem in problems:
        lines.append(str(problem))
    return "\n".join(lines)


def execution_text(path: Path, error: ExecutionFailed) -> str:
    """The failing cell as pytest shows a failing test: the source, ``>`` at the line,
    the error, the kernel's traceback, and the executed notebook."""
    lines = [str(error)]
    cell = next((c for c in load_notebook(path).cells if c.number == error.cell), None)
    if cell is not None:
        lines += [f"--- {cell.label} ---", *_marked_source(cell.source, error.line)]
    if error.run_id is not None:
        failed = _failed_cell(run_dir(path, error.run_id) / EXECUTED)
        if failed is not None:
            lines += [*_kernel_traceback(error_traceback(failed)), *_captured_stderr(failed)]
        lines.append(executed_line(path, error.run_id))
    return "\n".join(lines)


def executed_line(path: Path, run_id: str) -> str:
    return f"executed notebook: {run_dir(path, run_id) / EXECUTED}"


def _error_text(error: NbprodError) -> str:
    return f"{error}\n  fix: {error.hint}" if error.hint else str(error)


def _marked_source(source: str, line: int | None) -> list[str]:
    """The cell's lines, indented as pytest indents code, ``>`` before the failing one."""
    lines = source.splitlines() or [""]
    return [f"{'>' if number == line else ' '}   {text}" for number, text in enumerate(lines, 1)]


def _failed_cell(executed: Path) -> Any:
    """The first cell of an executed notebook with an error that stopped the run."""
    import nbformat

    try:
        node = nbformat.read(str(executed), as_version=4)
    except (OSError, ValueError):
        return None
    return next((cell for cell in node.cells if error_traceback(cell)), None)


def _captured_stderr(cell: Any) -> list[str]:
    """What the failing cell wrote to stderr (a shell command's own error, a warning),
    its last lines, as pytest shows a failing test's captured stderr."""
    text = "".join(
        str(output.get("text", ""))
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stderr"
    )
    lines = ANSI.sub("", text).strip("\n").splitlines()
    if not lines:
        return []
    if len(lines) > TRACEBACK_LINES:
        lines = ["...", *lines[-TRACEBACK_LINES:]]
    return ["--- captured stderr ---", *lines]


def _kernel_traceback(traceback: list[str]) -> list[str]:
    """The kernel's traceback without colours, its last lines, prefixed like pytest's E."""
    text = ANSI.sub("", "\n".join(traceback)).strip("\n")
    if not text:
        return []
    lines = text.splitlines()
    if len(lines) > TRACEBACK_LINES:
        lines = ["...", *lines[-TRACEBACK_LINES:]]
    return ["--- kernel traceback ---", *(f"E   {line}" for line in lines)]


def _user_line(traceback: list[str], source: str) -> int | None:
    """The failing line as the user counts it in the cell (see ``leading_blank_lines``)."""
    line = traceback_line(traceback)
    return line + leading_blank_lines(source) if line else None
