"""Notebooks as pytest items: ``pytest --nbprod [PATHS]``.

Each notebook with nbprod roles yields three items, ``check``, ``execute`` and
``parity`` (the stages of ``nbprod.testing.nbtest``); each later one needs the earlier one
and is skipped, naming it, when it failed. With ``--nbprod-all`` notebooks without
roles are executed too (only executed: there is nothing to check or extract).
Without ``--nbprod`` the plugin collects nothing and imports nothing of nbprod's
own, so installing nbprod never changes or slows another project's test run.

What one item learns about a notebook is kept in the session, keyed by path, and
recomputed when missing: under ``-k`` or ``--lf`` a ``parity`` item may run without
its ``execute`` item. Under ``pytest-xdist`` the items of one notebook go to the
same worker (see ``pytest_xdist_make_scheduler``), and each worker has its own
fork server and kernels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from nbprod.testing.discover import has_roles, is_generated

if TYPE_CHECKING:
    from nbprod.runs.records import RunRecord
    from nbprod.testing.nbtest import Tester


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
        help="Also execute notebooks without roles (implies --nbprod).",
    )
    group.addoption(
        "--nbprod-no-fork",
        action="store_true",
        help="Start every kernel as a new process instead of forking warm ones.",
    )
    group.addoption(
        "--nbprod-timeout",
        type=float,
        metavar="SECONDS",
        help="Fail a notebook whose run takes longer (default: no limit).",
    )
    group.addoption(
        "--nbprod-keep",
        action="store_true",
        help="Keep the extracted packages and executed copies of notebooks that pass.",
    )


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("nbprod", False) or config.getoption("nbprod_all", False))


_TESTER = pytest.StashKey["Tester"]()


def _tester(config: pytest.Config) -> Tester:
    """This process's tester (one fork server per pytest process, per xdist worker too)."""
    tester = config.stash.get(_TESTER, None)
    if tester is None:
        from nbprod.testing.nbtest import Tester

        tester = Tester(
            fork=not config.getoption("nbprod_no_fork"),
            keep=config.getoption("nbprod_keep"),
            timeout=config.getoption("nbprod_timeout"),
        )
        config.stash[_TESTER] = tester
        config.add_cleanup(tester.close)
    return tester


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.File | None:
    config = parent.config
    if not _enabled(config) or file_path.suffix != ".ipynb" or is_generated(file_path):
        return None
    if has_roles(file_path):
        return NotebookFile.from_parent(parent, path=file_path)
    if config.getoption("nbprod_all", False):
        return PlainNotebookFile.from_parent(parent, path=file_path)
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Tell the tester which notebooks will run, so its fork server imports their modules."""
    if not _enabled(session.config):
        return
    running = [item.path for item in session.items if isinstance(item, ExecuteItem | ParityItem)]
    if running:
        _tester(session.config).expect(dict.fromkeys(running))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``-n`` with the default ``--dist load``: every item of a notebook to one worker
    (it runs the notebook once), all other tests distributed one by one as before."""
    if not _enabled(config) or config.getoption("dist", "load") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    # xdist ships no type information, so its class is Any to mypy: subclassing it is
    # the documented way to choose scopes (LoadScopeScheduling._split_scope).
    class NotebookScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            file, _, _ = nodeid.partition("::")
            return file if file.endswith(".ipynb") else nodeid

    return NotebookScheduling(config, log)


# -- what is known about one notebook in this session ----------------------------------


@dataclass
class _Outcome:
    """The result of one stage: ``failed`` names why the next stage cannot run."""

    failed: str | None = None
    text: str = ""  # the failure's report, shown again by the stage's own item
    record: RunRecord | None = None


_STATE = pytest.StashKey[dict[tuple[Path, str], _Outcome]]()


def _remember(item: pytest.Item, stage: str, outcome: _Outcome) -> _Outcome:
    item.session.stash.setdefault(_STATE, {})[(item.path, stage)] = outcome
    return outcome


def _recall(item: pytest.Item, stage: str) -> _Outcome | None:
    return item.session.stash.get(_STATE, {}).get((item.path, stage))


def _run_stage(item: pytest.Item, stage: str) -> _Outcome:
    """Run a stage of the item's notebook once per session; raise its failure each time."""
    from nbprod.testing.nbtest import StageFailed, check, executed_line

    known = _recall(item, stage)
    if known is not None:
        if known.text:
            raise StageFailed(known.text)
        return known
    if stage == "execute":
        _require(item, "check")
    try:
        if stage == "check":
            check(item.path)
            return _remember(item, stage, _Outcome())
        record = _tester(item.config).execute(item.path)
    except StageFailed as failure:
        _remember(item, stage, _Outcome(failed=f"{stage} failed", text=str(failure)))
        raise
    except BaseException:  # an interrupt or an internal error: the stage did not pass
        _remember(item, stage, _Outcome(failed=f"{stage} did not finish"))
        raise
    item.add_report_section("call", "nbprod", executed_line(item.path, record.id))
    return _remember(item, stage, _Outcome(record=record))


def _require(item: pytest.Item, stage: str) -> _Outcome:
    """The outcome of an earlier stage, computed here if this process has not seen it."""
    from nbprod.testing.nbtest import StageFailed

    try:
        known = _run_stage(item, stage)
    except StageFailed:
        known = _recall(item, stage) or _Outcome(failed=f"{stage} failed")
    if known.failed:
        # Not a way to green: the earlier item of this notebook already failed the run, so
        # the session fails; this one cannot run without that result and names the item.
        pytest.skip(f"{known.failed}: see {item.path.name}::{stage}")
    return known


# -- items -----------------------------------------------------------------------------


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
        from nbprod.testing.nbtest import StageFailed

        if isinstance(excinfo.value, StageFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        # Not the bare node id: pytest would turn the dot of ".ipynb" into "::".
        return self.path, None, f"{self.path.name}::{self.name} (nbprod)"


class CheckItem(NotebookItem):
    """Static analysis finds no problem (warnings do not fail it)."""

    def runtest(self) -> None:
        _run_stage(self, "check")


class ExecuteItem(NotebookItem):
    """The notebook runs with its smoke parameters, as ``nbprod run --smoke`` runs it."""

    def runtest(self) -> None:
        _run_stage(self, "execute")


class ParityItem(NotebookItem):
    """The package extracted from that run passes its own tests (parity, test cells)."""

    def runtest(self) -> None:
        record = _require(self, "execute").record
        assert record is not None
        _tester(self.config).parity(self.path, record)


class PlainExecuteItem(NotebookItem):
    """Runs every cell of a notebook without roles into a temporary copy."""

    def runtest(self) -> None:
        _tester(self.config).execute_plain(self.path)
