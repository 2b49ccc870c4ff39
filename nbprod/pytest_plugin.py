"""Notebooks as pytest items: ``pytest --nbprod [PATHS]``.

Each notebook with nbprod roles yields three items, ``check``, ``execute`` and
``parity``; each later one needs the earlier one and is skipped, naming it, when
it failed. With ``--nbprod-all`` notebooks without roles are executed too (only
executed: there is nothing to check or extract). Without ``--nbprod`` the plugin
collects nothing, so installing nbprod never changes another project's test run.

The items call the library (``analyze``, ``run_notebook``, ``extract``) exactly as
``nbprod check``, ``nbprod run --smoke`` and ``nbprod extract`` do. What one item
learns about a notebook is kept in the session, keyed by path, and recomputed when
missing: under ``-k``, ``--lf`` or ``pytest-xdist`` a ``parity`` item may run
without its ``execute`` item having run in the same process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .analysis import analyze
from .exceptions import ExecutionFailed, NbprodError
from .facts import Problem
from .notebook import load_notebook
from .runs import RunRecord, run_dir

EXECUTED = "executed.ipynb"
PARITY_TIMEOUT = 600.0  # seconds for the generated package's own test run


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nbprod", "notebooks as tests (nbprod)")
    group.addoption(
        "--nbprod",
        action="store_true",
        help="Collect notebooks with nbprod roles: check, execute (smoke parameters), parity.",
    )
    group.addoption(
        "--nbprod-all",
        action="store_true",
        help="With --nbprod, also execute notebooks without roles (implies --nbprod).",
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.File | None:
    config = parent.config
    enabled = config.getoption("nbprod", False) or config.getoption("nbprod_all", False)
    if not enabled or file_path.suffix != ".ipynb" or _is_generated(file_path):
        return None
    try:
        has_roles = any(cell.role for cell in load_notebook(file_path).cells)
    except NbprodError:
        has_roles = True  # collected so that its check item says what is wrong
    if has_roles:
        return NotebookFile.from_parent(parent, path=file_path)
    if config.getoption("nbprod_all", False):
        return PlainNotebookFile.from_parent(parent, path=file_path)
    return None


def _is_generated(path: Path) -> bool:
    """Run folders (``.nbprod/runs/...``) and Jupyter's checkpoints hold copies."""
    return any(part in (".nbprod", ".ipynb_checkpoints") for part in path.parts)


# -- what is known about one notebook in this session ----------------------------------


@dataclass
class _Outcome:
    """The result of one stage: ``failed`` names why the next stage cannot run."""

    failed: str | None = None
    record: RunRecord | None = None


_STATE = pytest.StashKey[dict[tuple[Path, str], _Outcome]]()


def _remember(item: pytest.Item, stage: str, outcome: _Outcome) -> _Outcome:
    item.session.stash.setdefault(_STATE, {})[(item.path, stage)] = outcome
    return outcome


def _recall(item: pytest.Item, stage: str) -> _Outcome | None:
    return item.session.stash.get(_STATE, {}).get((item.path, stage))


def _checked(item: pytest.Item) -> _Outcome:
    known = _recall(item, "check")
    if known is not None:
        return known
    try:
        problems = analyze(load_notebook(item.path)).errors
    except NbprodError as error:
        raise NotebookFailure(str(error)) from None
    if problems:
        raise NotebookFailure(_problems_text(problems))
    return _remember(item, "check", _Outcome())


def _executed(item: pytest.Item) -> _Outcome:
    known = _recall(item, "execute")
    if known is not None:
        return known
    _require(item, "check")
    from .execute import run_notebook

    smoke = dict(load_notebook(item.path).settings.smoke)
    try:
        record = run_notebook(item.path, smoke)
    except ExecutionFailed as error:
        _remember(item, "execute", _Outcome(failed="execute failed"))
        raise NotebookFailure(_execution_text(item.path, error)) from None
    except BaseException:
        _remember(item, "execute", _Outcome(failed="execute failed"))
        raise
    item.add_report_section("call", "nbprod", _executed_line(item.path, record.id))
    return _remember(item, "execute", _Outcome(record=record))


def _require(item: pytest.Item, stage: str) -> _Outcome:
    """The outcome of an earlier stage, computed here if this process has not seen it."""
    known = _recall(item, stage)
    if known is None:
        compute = _checked if stage == "check" else _executed
        try:
            known = compute(item)
        except NotebookFailure:
            known = _remember(item, stage, _Outcome(failed=f"{stage} failed"))
    if known.failed:
        # Not a way to green: the earlier item of this notebook already failed the run;
        # this one cannot run without its result, and says which item to read.
        pytest.skip(f"{known.failed}: see {item.path.name}::{stage}")
    return known


# -- items -----------------------------------------------------------------------------


class NotebookFailure(Exception):
    """A failure whose text already says everything: shown without a traceback."""


class NotebookFile(pytest.File):
    """A notebook with nbprod roles: check, then execute, then parity."""

    def collect(self) -> Iterator[pytest.Item]:
        yield CheckItem.from_parent(self, name="check")
        yield ExecuteItem.from_parent(self, name="execute")
        yield ParityItem.from_parent(self, name="parity")


class PlainNotebookFile(pytest.File):
    """A notebook without roles (``--nbprod-all``): it only has to run."""

    def collect(self) -> Iterator[pytest.Item]:
        yield PlainExecuteItem.from_parent(self, name="execute")


class NotebookItem(pytest.Item):
    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str | Any:
        if isinstance(excinfo.value, NotebookFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        # Not the bare node id: pytest would turn the dot of ".ipynb" into "::".
        return self.path, None, f"{self.path.name}::{self.name} (nbprod)"


class CheckItem(NotebookItem):
    """Static analysis finds no problem (warnings do not fail it)."""

    def runtest(self) -> None:
        try:
            _checked(self)
        except NotebookFailure:
            _remember(self, "check", _Outcome(failed="check failed"))
            raise


class ExecuteItem(NotebookItem):
    """The notebook runs with its smoke parameters, as ``nbprod run --smoke`` runs it."""

    def runtest(self) -> None:
        _require(self, "check")
        _executed(self)


class ParityItem(NotebookItem):
    """The package extracted from that run passes its own tests (parity, test cells)."""

    def runtest(self) -> None:
        record = _require(self, "execute").record
        assert record is not None
        from .extract import extract

        folder = Path(tempfile.mkdtemp(prefix=f"nbprod-{record.package}-"))
        extracted = extract(self.path, record.id, folder / record.package)
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
            cwd=extracted.path,
            env={**os.environ, "PYTHONPATH": str(extracted.path / "src")},
            capture_output=True,
            text=True,
            timeout=PARITY_TIMEOUT,
        )
        if result.returncode != 0:
            raise NotebookFailure(
                f"the package extracted from run {record.id} fails its tests "
                f"(exit code {result.returncode}):\n{result.stdout}{result.stderr}\n"
                f"package: {extracted.path}\n"
                f"{_executed_line(self.path, record.id)}"
            )
        shutil.rmtree(folder, ignore_errors=True)


class PlainExecuteItem(NotebookItem):
    """Runs every cell of a notebook without roles into a temporary copy."""

    def runtest(self) -> None:
        import papermill
        from papermill.exceptions import PapermillExecutionError

        from .kernels import CURRENT_PYTHON, kernel_manager_for

        output = Path(tempfile.mkdtemp(prefix="nbprod-plain-")) / self.path.name
        manager = kernel_manager_for(CURRENT_PYTHON)
        options: dict[str, Any] = {"kernel_manager_class": manager} if manager else {}
        try:
            papermill.execute_notebook(
                str(self.path),
                str(output),
                kernel_name=CURRENT_PYTHON,
                language="python",
                cwd=str(self.path.parent),
                progress_bar=False,
                **options,
            )
        except PapermillExecutionError as error:
            raise NotebookFailure(
                f"cell {error.cell_index + 1}: {error.ename}: {error.evalue}\n"
                f"{_indented(error.source)}\nexecuted notebook: {output}"
            ) from None
        except Exception as error:  # a dead kernel or a timeout: nbclient's own errors
            raise NotebookFailure(
                f"{type(error).__name__}: {error}\nexecuted notebook: {output}"
            ) from None


# -- failure text ----------------------------------------------------------------------


def _problems_text(problems: list[Problem]) -> str:
    count = len(problems)
    lines = [f"nbprod check found {count} problem{'s' * (count != 1)}:"]
    lines += [str(problem) for problem in problems]
    return "\n".join(lines)


def _execution_text(path: Path, error: ExecutionFailed) -> str:
    cell = next((c for c in load_notebook(path).cells if c.number == error.cell), None)
    lines = [str(error)]
    if cell is not None:
        lines += [f"--- {cell.label} ---", _indented(cell.source)]
    if error.run_id is not None:
        lines.append(_executed_line(path, error.run_id))
    return "\n".join(lines)


def _executed_line(path: Path, run_id: str) -> str:
    return f"executed notebook: {run_dir(path, run_id) / EXECUTED}"


def _indented(source: str) -> str:
    return "\n".join(f"    {line}" for line in source.splitlines())
