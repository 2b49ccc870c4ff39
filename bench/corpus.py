"""Take every notebook of the corpus (real notebooks from source distributions on PyPI,
tagged by role: ``corpus/corpus.toml``) through nbprod's loop and print how far each
one gets.

Stages, each timed, a failed one leaving the later ones not run:

- ``check``: static analysis finds no problem (``nbprod check``);
- ``run``: the notebook runs with its smoke parameters and is recorded (``nbprod run
  --smoke``), in a fresh kernel;
- ``extract``: the package of that run is generated (``nbprod extract``), which imports
  it, loads its artifacts and replays its parity record before handing it over;
- ``tests``: the package's own parity and ``test``-cell tests pass under pytest.

The notebooks are materialised first (``corpus/materialise.py``: downloaded from PyPI
once, into ``.cache/corpus/``); each one's folder is then copied into a temporary folder,
so runs and packages never write into the cache. A notebook *passes* when every stage
passes, or when nbprod refuses it with exactly the refusal its manifest entry documents
(``expected_refusal = "stage: text of the message"``).

Run from the repository root:
    .venv/bin/python bench/corpus.py [NAME ...] [--json] [--jobs N]

``--jobs N`` runs N notebooks at once, each in a worker process with its own ``Tester``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbprod.exceptions import NbprodError
from nbprod.extract import extract
from nbprod.testing.nbtest import PARITY_TESTS, StageFailed, Tester, check

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from corpus import materialise as corpus  # noqa: E402  (the repository root, just above)

STAGES = ("check", "run", "extract", "tests")
RUN_TIMEOUT = 300.0  # seconds for one smoke run
TESTS_TIMEOUT = 600.0  # seconds for the package's own tests
MESSAGE_LINES = 12  # of a failure, kept in the result


@dataclass
class Stage:
    status: str = "not run"  # "passed", "failed" or "not run"
    seconds: float = 0.0
    message: str = ""

    @property
    def summary(self) -> str:
        """The first line of the message that says what went wrong."""
        lines = [line.strip() for line in self.message.splitlines() if line.strip()]
        problems = [line for line in lines if line.startswith("cell ")]
        return (problems or lines or [""])[0]


@dataclass
class CorpusResult:
    name: str
    notebook: Path
    expected_refusal: str = ""
    stages: dict[str, Stage] = field(default_factory=lambda: {s: Stage() for s in STAGES})

    @property
    def failed_stage(self) -> str | None:
        return next((s for s, r in self.stages.items() if r.status == "failed"), None)

    @property
    def refused_as_documented(self) -> bool:
        stage = self.failed_stage
        if stage is None or not self.expected_refusal:
            return False
        where, _, text = self.expected_refusal.partition(":")
        return where.strip() == stage and text.strip() in self.stages[stage].message

    @property
    def passed(self) -> bool:
        if self.expected_refusal:
            return self.refused_as_documented
        return all(stage.status == "passed" for stage in self.stages.values())

    @property
    def seconds(self) -> float:
        return sum(stage.seconds for stage in self.stages.values())

    def outcome(self) -> str:
        """``passed``, or ``<stage> failed: <first line>`` for the first failed stage."""
        stage = self.failed_stage
        if stage is None:
            return "passed"
        return f"{stage} failed: {self.stages[stage].summary}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "notebook": str(self.notebook),
            "passed": self.passed,
            "expected_refusal": self.expected_refusal or None,
            "seconds": round(self.seconds, 2),
            "stages": {
                name: {
                    "status": stage.status,
                    "seconds": round(stage.seconds, 2),
                    "message": stage.message or None,
                }
                for name, stage in self.stages.items()
            },
        }


# ------------------------------------------------------------------ the corpus


def corpus_names(manifest: corpus.Manifest | None = None) -> list[str]:
    return sorted((manifest or corpus.load_manifest()).notebooks)


def notebooks_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*.ipynb")
        if not {".nbprod", ".ipynb_checkpoints"} & set(p.relative_to(folder).parts)
    )


# ------------------------------------------------------------------ the stages


def _timed(result: CorpusResult, stage: str, action: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    try:
        value = action()
    except StageFailed as failure:
        result.stages[stage] = Stage("failed", time.perf_counter() - started, str(failure))
        return None
    result.stages[stage] = Stage("passed", time.perf_counter() - started)
    return value


def _extract(notebook: Path, run_id: str, output: Path) -> Path:
    try:
        return extract(notebook, run_id, output, force=True).path
    except NbprodError as error:
        raise StageFailed(f"{type(error).__name__}: {error}") from None


def _package_tests(package: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(package / "src")}
    env.pop("PYTEST_ADDOPTS", None)
    tests = [name for name in PARITY_TESTS if (package / name).is_file()]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    try:
        done = subprocess.run(
            command, cwd=package, env=env, capture_output=True, text=True, timeout=TESTS_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise StageFailed(f"the package's tests did not finish in {TESTS_TIMEOUT:g} s") from None
    if done.returncode != 0:
        failures = [line for line in done.stdout.splitlines() if line.startswith(("E ", "FAILED"))]
        raise StageFailed("\n".join([*failures, done.stdout[-2000:], done.stderr[-2000:]]))


def run_corpus_notebook(entry: corpus.Entry, tester: Tester, workdir: Path) -> CorpusResult:
    """check → run (smoke) → extract → the package's tests, on a copy of the notebook's
    materialised folder."""
    copy = workdir / entry.name
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(corpus.folder_of(entry.name), copy, ignore=shutil.ignore_patterns(corpus.STAMP))
    notebook = copy / entry.notebook
    result = CorpusResult(entry.name, Path(entry.path), entry.expected_refusal)
    _timed(result, "check", lambda: check(notebook))
    if result.failed_stage:
        return result
    record = _timed(result, "run", lambda: tester.execute(notebook))
    if record is None:
        return result
    package = _timed(
        result, "extract", lambda: _extract(notebook, record.id, workdir / "pkg" / entry.name)
    )
    if package is None:
        return result
    _timed(result, "tests", lambda: _package_tests(package))
    return result


def _run_alone(name: str, workdir: Path) -> CorpusResult:
    """One notebook with a Tester of its own, in a worker process of ``run_corpus``."""
    with Tester(fork=False, timeout=RUN_TIMEOUT) as tester:
        return run_corpus_notebook(corpus.load_manifest().entry(name), tester, workdir)


def run_corpus(names: list[str], workdir: Path | None = None, jobs: int = 1) -> list[CorpusResult]:
    """Each named notebook through the loop, ``jobs`` at once.

    Several at once run in worker processes, not threads: the check and extract stages
    parse Python with ``ast`` in-process, and CPython 3.11's parser state is not safe
    across threads (a later ``ast.parse`` fails with "AST constructor recursion depth
    mismatch").
    """
    manifest = corpus.materialise_all(names)
    entries = [manifest.entry(name) for name in names]
    with tempfile.TemporaryDirectory(prefix="nbprod-corpus-") as tmp:
        folder = workdir or Path(tmp)
        if jobs <= 1:
            results = []
            with Tester(fork=True, timeout=RUN_TIMEOUT) as tester:
                for entry in entries:
                    results.append(run_corpus_notebook(entry, tester, folder))
                    print_row(results[-1], file=sys.stderr)
            return results
        # fork: the workers find this module as it is loaded here (also under pytest)
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = [pool.submit(_run_alone, entry.name, folder) for entry in entries]
            for future in as_completed(futures):
                print_row(future.result(), file=sys.stderr)
            return [future.result() for future in futures]


# ------------------------------------------------------------------ the report


def _cell(stage: Stage) -> str:
    mark = {"passed": "ok", "failed": "FAIL", "not run": "-"}[stage.status]
    return f"{mark} {stage.seconds:5.1f}s" if stage.status != "not run" else "-"


def print_row(result: CorpusResult, file: Any = sys.stdout) -> None:
    cells = [f"{_cell(result.stages[s]):>11}" for s in STAGES]
    verdict = "PASS" if result.passed else "fail"
    print(
        f"{result.name:28} {' '.join(cells)} {result.seconds:6.1f}s  {verdict}  "
        f"{'' if result.outcome() == 'passed' else result.outcome()[:160]}",
        file=file,
        flush=True,
    )


def print_table(results: list[CorpusResult], wall: float | None = None) -> None:
    print(f"{'notebook':28} " + " ".join(f"{s:>11}" for s in STAGES) + "   total  verdict")
    for result in results:
        print_row(result)
    passed = sum(result.passed for result in results)
    print(
        f"\n{passed}/{len(results)} notebooks pass ({passed / max(len(results), 1):.0%}); "
        f"{sum(r.seconds for r in results):.0f} s in all"
        + (f", {wall:.0f} s of wall time" if wall is not None else "")
        + f"; slowest {max((r.seconds for r in results), default=0):.1f} s"
    )
    for stage in STAGES:
        done = sum(r.stages[stage].status == "passed" for r in results)
        print(f"  {stage:8} passed by {done}/{len(results)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebooks of corpus/corpus.toml (default: all)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks run at once (processes)")
    args = parser.parse_args()
    known = corpus_names()
    unknown = [name for name in args.names if name not in known]
    if unknown:
        raise SystemExit(f"not in the corpus: {', '.join(unknown)} (known: {', '.join(known)})")
    started = time.perf_counter()
    try:
        results = run_corpus(args.names or known, jobs=args.jobs)
    except corpus.CorpusError as error:
        raise SystemExit(f"corpus: {error}") from None
    if args.json:
        print(json.dumps([result.to_json() for result in results], indent=2))
    else:
        print_table(results, time.perf_counter() - started)


if __name__ == "__main__":
    main()
