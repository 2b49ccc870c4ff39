"""Run selectors: best:METRIC knows which way a metric improves; ties go to the newest."""

from __future__ import annotations

from pathlib import Path

from nbprod.runs.records import RunRecord
from nbprod.runs.store import RunStore


def record(run_id: str, started: float, **metrics: float) -> RunRecord:
    return RunRecord(
        id=run_id,
        notebook="/nb.ipynb",
        notebook_sha256="0" * 64,
        package="nb",
        status="succeeded",
        parameters={},
        started=started,
        kernel="python3",
        finished=started + 1,
        metrics=metrics,
    )


def test_best_maximises_scores_and_minimises_errors(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    store.save(record("a", 1, accuracy=0.9, rmse=3.0))
    store.save(record("b", 2, accuracy=0.8, rmse=2.0))
    assert store.select("best:accuracy").id == "a"
    assert store.select("best:rmse").id == "b"
    assert store.select("max:rmse").id == "a"
    assert store.select("min:accuracy").id == "b"


def test_equal_scores_select_the_newest_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    for run_id, started in [("old", 1), ("new", 3), ("middle", 2)]:
        store.save(record(run_id, started, accuracy=1.0, loss=0.5))
    assert store.select("best:accuracy").id == "new"
    assert store.select("best:loss").id == "new"
