"""Run a notebook once with papermill in a real kernel, recording what nbprod needs.

Reads top to bottom: load and check, resolve parameters, instrument, execute in
the notebook's own folder, then record the outcome (artifacts, parity, metrics,
or the failing cell) in the run's folder. The user's notebook is only read.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from nbprod.analysis.analyzer import Analysis, analyze
from nbprod.exceptions import Cancelled, ExecutionFailed, NbprodError, UsageError
from nbprod.execution.failures import cell_failure, failing_cell
from nbprod.execution.instrument import INJECTED, SOURCE_CELL, instrument, instrument_plain, strip
from nbprod.execution.kernels import CURRENT_PYTHON, kernel_manager_for
from nbprod.notebook import Notebook, declared_kernel, load_notebook
from nbprod.runs.records import EXECUTED, SOURCE, RunRecord, new_run_id, run_dir, save_record
from nbprod.runs.store import RunStore, store_path
from nbprod.runtime.artifacts import sha256

PAPERMILL_MARKER = "papermill-error-cell-tag"  # papermill's "an exception was encountered" cells


def parse_parameter(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` with VALUE read as a Python literal (a bare word stays a string)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise UsageError(
            f"bad parameter {text!r}", "write parameters as NAME=VALUE, e.g. -p alpha=0.5"
        )
    try:
        return name, ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return name, value.strip()


def resolve_parameters(analysis: Analysis, overrides: dict[str, Any]) -> dict[str, Any]:
    """The notebook's defaults with ``overrides`` applied. With a cell tagged
    ``parameters``, a name it does not assign is refused (a typo would otherwise be
    injected and ignored); without one, any name goes, injected at the top of the
    notebook as papermill injects it."""
    known = analysis.parameters
    unknown = sorted(set(overrides) - set(known))
    if unknown and analysis.role_cells("parameters"):
        names = ", ".join(unknown)
        choices = ", ".join(known) or "none: the notebook has no cell tagged `parameters`"
        raise UsageError(f"unknown parameter {names}", f"the notebook's parameters are: {choices}")
    values = {name: p.value for name, p in known.items()}
    values.update(overrides)
    return values


@dataclass
class RunOptions:
    """How to run: the kernel, time limits, where to record, which run this is."""

    kernel: str | None = None
    timeout: float | None = None  # seconds for the whole run (and any one cell)
    # papermill's options, as `papermill` spells them on its command line
    execution_timeout: float | None = None  # seconds for any one cell
    start_timeout: float = 60.0  # seconds for the kernel to start
    cwd: str | os.PathLike[str] | None = None  # the kernel's folder (default: the notebook's)
    log_output: bool = False  # cell outputs to the log (stderr) as they come
    report_mode: bool = False  # the executed notebook hides its input cells
    output: str | None = None  # a copy of the executed notebook, through papermill's I/O
    run_id: str | None = None
    sweep_id: str | None = None
    store: str | os.PathLike[str] | None = None  # default: .nbprod/runs.db beside it
    kernel_manager_class: type | None = None  # e.g. a fork-server manager for sweeps
    # Generate and check the run's package at the end (see _round_trip). Sweeps skip it
    # (it would add seconds to every run; extract and publish still check the one
    # chosen), as does the parity stage of `nbprod test`, which does it next anyway.
    round_trip: bool = True


def run_notebook(
    notebook: str | Path | Notebook,
    overrides: dict[str, Any] | None = None,
    options: RunOptions | None = None,
    *,
    analysis: Analysis | None = None,
    **option_fields: Any,
) -> RunRecord:
    """Execute ``path`` once; return the run's record (raises ExecutionFailed on failure).

    The executed notebook, the record and what was captured are kept in the run's
    folder, and the record in the run store, whatever the outcome.
    """
    options = options or RunOptions(**option_fields)
    notebook = notebook if isinstance(notebook, Notebook) else load_notebook(notebook)
    analysis = analysis or analyze(notebook)
    # Any notebook runs, as papermill runs it; one with check problems (no roles, no
    # inference cell, ...) is recorded as not extractable, with those problems as reasons.
    reasons = [str(problem) for problem in analysis.errors]
    parameters = resolve_parameters(analysis, overrides or {})
    kernel = options.kernel or notebook.settings.kernel or _declared_kernel(notebook)
    run_id = options.run_id or new_run_id()
    folder = run_dir(notebook.path, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    store = RunStore(store_path(notebook.path, options.store))
    record = RunRecord(
        id=run_id,
        notebook=str(notebook.path),
        notebook_sha256=sha256(notebook.path),
        package=analysis.package,
        status="running",
        parameters=parameters,
        started=time.time(),
        kernel=kernel,
        sweep_id=options.sweep_id,
        not_extractable=reasons,
    )
    _record(store, folder, record)
    shutil.copyfile(notebook.path, folder / SOURCE)
    (folder / "parameters.json").write_text(
        json.dumps(parameters, indent=2, default=repr), encoding="utf-8"
    )
    round_trip = options.round_trip and record.extractable
    warm = _warm_probe(kernel) if round_trip else None
    try:
        # papermill injects only what was given, as `papermill IN OUT -p ...` does; the
        # record holds every parameter's value
        given = dict(overrides or {})
        _execute(notebook, analysis, given, folder, kernel, options, record.extractable)
        if record.extractable:
            _check_references(analysis, folder)
    except ExecutionFailed as error:
        _failed(record, error, folder)
        raise
    except (KeyboardInterrupt, Cancelled) as error:
        from nbprod.execution.kernels import kill_kernels_of  # the loop was cut short

        kill_kernels_of(os.getpid())
        record.status = "cancelled"
        record.error = {"cell": None, "role": None, "line": None, "message": "cancelled"}
        raise Cancelled(f"run {run_id} was cancelled") from error
    except BaseException as error:
        record.status = "failed"
        record.error = {"cell": None, "role": None, "line": None, "message": repr(error)}
        raise
    else:
        record.status = "succeeded"
        _collect(folder, record)
    finally:
        record.finished = time.time()
        started_by = getattr(options.kernel_manager_class, "started_by", None)
        if started_by and started_by != "fork":
            record.notes.append(f"kernel: {started_by}")  # a fork was refused: say why
        record.kernel_start = started_by or "process"
        _record(store, folder, record)
        if options.output:
            write_output(folder / EXECUTED, options.output)
        if warm is not None and record.status != "succeeded":
            warm.close()
    if round_trip and record.status == "succeeded":
        try:
            _round_trip(analysis, record, warm)
        except ExecutionFailed as error:
            _failed(record, error, folder)
            _record(store, folder, record)
            raise
    return record


def write_output(executed: Path, output: str) -> None:
    """Copy the executed notebook to ``output``, a path or any URL papermill's I/O layer
    writes (s3://, gs://, abfs://, http://, ...), as ``papermill IN OUT`` does."""
    from papermill.iorw import write_ipynb

    if not executed.is_file():
        return
    try:
        write_ipynb(nbformat.read(str(executed), as_version=4), output)
    except Exception as error:  # papermill's handlers raise their storage's own errors
        raise UsageError(
            f"the executed notebook could not be written to {output}: "
            f"{type(error).__name__}: {error}",
            "check the path, or the credentials of its storage; the run itself is recorded",
        ) from error


def prepare_only(
    notebook: Notebook,
    output: str,
    parameters: dict[str, Any],
    kernel: str | None = None,
    report_mode: bool = False,
) -> None:
    """Write ``notebook`` with ``parameters`` injected to ``output`` without running it
    (``papermill --prepare-only``); nothing is recorded."""
    import papermill

    papermill.execute_notebook(
        str(notebook.path),
        output,
        parameters=parameters or None,
        prepare_only=True,
        kernel_name=kernel or notebook.settings.kernel or _declared_kernel(notebook),
        language=_language(notebook),
        report_mode=report_mode,
        progress_bar=False,
    )


def _failed(record: RunRecord, error: ExecutionFailed, folder: Path) -> None:
    """Mark the run failed by ``error``, which learns the run it belongs to."""
    error.run_id, error.run_folder = record.id, folder
    record.status = "failed"
    record.error = {
        "cell": error.cell,
        "role": error.role,
        "line": error.line,
        "ename": error.ename,
        "evalue": error.evalue,
        "message": error.message,
    }


def _round_trip(analysis: Analysis, record: RunRecord, warm: Any) -> None:
    """Save → load in a fresh process → predict equals: the package of this run is
    generated into a scratch folder and checked as extract checks it, so a run that
    cannot become a working package says so now. The probe process was started with
    the kernel (``warm``) and has imported the heavy libraries in the meantime."""
    import tempfile

    from nbprod.exceptions import PackageBroken
    from nbprod.extract import extract

    scratch = Path(tempfile.mkdtemp(prefix="nbprod-round-trip-"))
    try:
        extract(record.notebook, record.id, scratch / "package", probe=warm)
    except PackageBroken as error:
        artifact = next((a for a in analysis.artifacts if f"`{a}`" in error.message), None)
        if artifact is not None:
            where = analysis.artifacts[artifact]
            cell, role, line = where.info.number, where.role, where.line
        else:
            cell = analysis.entry.cell if analysis.entry else 0
            role, line = "inference", None
        raise ExecutionFailed(
            f"the run cannot become a working package: {error.message}",
            error.hint,
            cell=cell,
            role=role,
            line=line,
        ) from None
    except NbprodError:
        return  # no package can be made yet (no recorded call, ...): extract says why
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if warm is not None:
            warm.close()


def _warm_probe(kernel: str) -> Any:
    from nbprod.extract.verify import WarmProbe, interpreter

    return WarmProbe(interpreter(kernel))


def _record(store: RunStore, folder: Path, record: RunRecord) -> None:
    save_record(folder, record)
    store.save(record, folder)


def _execute(
    notebook: Notebook,
    analysis: Analysis,
    parameters: dict[str, Any],
    folder: Path,
    kernel: str,
    options: RunOptions,
    extractable: bool,
) -> None:
    import papermill  # imported here: it takes a second, and `nbprod check` never needs it
    from papermill.exceptions import PapermillExecutionError

    output = folder / EXECUTED
    if extractable:
        prepared = instrument(notebook.node, analysis, str(folder), analysis.package)
    elif _language(notebook) == "python":
        prepared = instrument_plain(notebook.node, analysis, str(folder))
    else:  # another language's kernel: nbprod's recorder is Python, so it records nothing
        prepared = copy.deepcopy(notebook.node)
    live: dict[int, nbformat.NotebookNode] = {}  # cells as the kernel ran them

    def started(cell: nbformat.NotebookNode, cell_index: int, **_: Any) -> None:
        live[cell_index] = cell

    # "immediate": the run is over once the last cell replied; a graceful shutdown
    # interrupts the kernel first and makes it print a stray KeyboardInterrupt.
    engine_options: dict[str, Any] = {"on_cell_start": started, "shutdown_kernel": "immediate"}
    timeout = options.timeout
    if timeout:
        engine_options["timeout_func"] = run_budget(timeout, options.execution_timeout)
    manager = options.kernel_manager_class or kernel_manager_for(kernel)
    if manager is not None:
        engine_options["kernel_manager_class"] = manager
    try:
        papermill.execute_notebook(
            prepared,
            str(output),
            parameters=parameters or None,
            kernel_name=kernel,
            # Real notebooks often lack language metadata; papermill refuses them without it.
            language=_language(notebook),
            cwd=str(options.cwd or notebook.path.parent),
            progress_bar=False,
            request_save_on_cell_execute=False,
            execution_timeout=options.execution_timeout or timeout,
            start_timeout=options.start_timeout,
            log_output=options.log_output,
            report_mode=options.report_mode,
            **engine_options,
        )
    except PapermillExecutionError as error:
        executed = _strip_output(output, notebook.path)
        # papermill fails a run on any error output, even one nbclient allowed: a cell
        # tagged raises-exception is expected to raise, and the run went on past it
        if executed is None or executed.metadata.get("nbprod_failing") is not None:
            raise cell_failure(notebook, executed, error.ename, error.evalue) from None
    except (DeadKernelError, CellTimeoutError) as error:
        partial = _partial_notebook(prepared, live)
        running = live[max(live)] if live else None
        number = int(running.metadata.get(SOURCE_CELL, 0)) if running is not None else 0
        nbformat.write(strip(partial), str(output))
        cell = next((c for c in notebook.cells if c.number == number), None)
        if isinstance(error, DeadKernelError):
            message = "the kernel died while running this cell"
            hint = "look for os._exit, running out of memory, or a crash in native code"
        elif options.execution_timeout and not timeout:
            message = f"the cell went past --execution-timeout ({options.execution_timeout:g} s)"
            hint = "make the cell faster, or pass a larger --execution-timeout"
        elif options.execution_timeout:
            message = (
                f"the cell went past the run's time limits (--execution-timeout "
                f"{options.execution_timeout:g} s a cell, --timeout {timeout:g} s in all)"
            )
            hint = "make the cell faster, or pass larger limits"
        else:
            message = f"the run went past its timeout of {timeout or 0:g} s in this cell"
            hint = "make the cell faster, or pass a larger --timeout"
        raise ExecutionFailed(
            message, hint, cell=number, role=cell.role if cell else None
        ) from None
    _strip_output(output, notebook.path)


def _declared_kernel(notebook: Notebook) -> str:
    """The notebook's own kernel when it is not Python (papermill's choice), else the
    Python nbprod runs on (``CURRENT_PYTHON``): a ``python3`` kernelspec on disk may
    point at another interpreter."""
    name, language = declared_kernel(notebook.metadata)
    return name if name and language != "python" else CURRENT_PYTHON


def _language(notebook: Notebook) -> str:
    return declared_kernel(notebook.metadata)[1]


def run_budget(seconds: float, per_cell: float | None = None) -> Any:
    """One time budget for the user's cells: each may use what the earlier ones left,
    and no more than ``per_cell`` seconds.

    It starts with the first user cell, so nbprod's own recording cells do not eat it.
    """
    deadline: list[float] = []

    def cell_timeout(cell: nbformat.NotebookNode) -> int:
        if cell.metadata.get(INJECTED):
            return 600
        if not deadline:
            deadline.append(time.monotonic() + seconds)
        left = max(1, round(deadline[0] - time.monotonic()))
        return min(left, round(per_cell)) if per_cell else left

    return cell_timeout


def _strip_output(output: Path, source: Path) -> nbformat.NotebookNode | None:
    """The executed notebook without nbprod's cells, naming its source as papermill
    does (papermill was handed the instrumented notebook itself, not its path)."""
    if not output.is_file():
        return None
    executed = nbformat.read(str(output), as_version=4)
    if isinstance(executed.metadata.get("papermill"), dict):
        executed.metadata.papermill["input_path"] = str(source)
    failing = failing_cell(executed)
    executed.cells = [
        c for c in executed.cells if PAPERMILL_MARKER not in c.metadata.get("tags", [])
    ]
    nbformat.write(strip(executed), str(output))
    if failing is not None:
        executed.metadata["nbprod_failing"] = failing
    return executed


def _partial_notebook(
    prepared: nbformat.NotebookNode, live: dict[int, nbformat.NotebookNode]
) -> nbformat.NotebookNode:
    """The notebook with the outputs of the cells that ran before the kernel was lost."""
    partial = copy.deepcopy(prepared)
    for index, cell in live.items():
        if index < len(partial.cells):
            partial.cells[index] = copy.deepcopy(cell)
    return partial


def _check_references(analysis: Analysis, folder: Path) -> None:
    """A run whose artifacts refer to code the package would not have fails now, naming
    the cell, instead of at extract or, worse, in production."""
    from nbprod.extract.verify import unresolved_references

    manifest_path = folder / "artifacts" / "manifest.json"
    local_path = folder / "local_modules.json"
    if not manifest_path.is_file():
        return
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    local = json.loads(local_path.read_text(encoding="utf-8")) if local_path.is_file() else {}
    lambdas_path = folder / "lambdas.json"
    lambdas = json.loads(lambdas_path.read_text(encoding="utf-8")) if lambdas_path.is_file() else []
    problems = unresolved_references(analysis, manifest, set(local), lambdas)
    if problems:
        first = problems[0]
        raise ExecutionFailed(
            first.message,
            first.hint,
            cell=first.cell,
            role=first.role,
            line=first.line,
            name=first.name,
        )


def _collect(folder: Path, record: RunRecord) -> None:
    metrics = folder / "metrics.json"
    if metrics.is_file():
        record.metrics = json.loads(metrics.read_text(encoding="utf-8"))
    manifest = folder / "artifacts" / "manifest.json"
    if manifest.is_file():
        entries = json.loads(manifest.read_text(encoding="utf-8"))["artifacts"]
        record.artifacts = {name: entry["sha256"] for name, entry in entries.items()}
    notes = folder / "notes.json"
    if notes.is_file():
        record.notes = json.loads(notes.read_text(encoding="utf-8"))
    if record.extractable and (folder / "parity" / "parity.json").is_file():
        _write_profile(folder, record)


def _write_profile(folder: Path, record: RunRecord) -> None:
    """The training profile of the recorded calls (``profile.json``), the reference of
    the package's drift checks; a value it cannot summarise leaves a note, never a
    failed run."""
    from nbprod.runtime import _profile  # pandas: imported only when a run ends
    from nbprod.runtime.values import decode

    parity = folder / "parity"
    try:
        calls = json.loads((parity / "parity.json").read_text(encoding="utf-8"))
        profile = _profile.from_parity(calls, lambda stored: decode(stored, parity))
        (folder / "profile.json").write_text(json.dumps(profile, indent=1), encoding="utf-8")
    except Exception as error:  # the profile serves monitoring; the run stands without it
        record.notes.append(f"no training profile: {error}")
