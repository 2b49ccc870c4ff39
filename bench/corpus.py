"""Take every notebook of ``corpus/`` (real notebooks from public projects, tagged by
role) through nbprod's loop and print how far each one gets.

Stages, each timed, a failed one leaving the later ones not run:

- ``check``: static analysis finds no problem (``nbprod check``);
- ``run``: the notebook runs with its smoke parameters and is recorded (``nbprod run
  --smoke``), in a fresh kernel;
- ``extract``: the package of that run is generated (``nbprod extract``), which imports
  it, loads its artifacts and replays its parity record before handing it over;
- ``tests``: the package's own parity and ``test``-cell tests pass under pytest.

Each notebook's folder is copied into a temporary folder first, so runs and packages
never write into ``corpus/``. A notebook *passes* when every stage passes, or when
nbprod refuses it with exactly the refusal its row in ``corpus/README.md`` documents
(column "expected refusal": ``stage: text of the message``).

Run from the repository root:  .venv/bin/python bench/corpus.py [NAME ...] [--json]

``corpus/`` is gathered on each machine and never committed (gitignored): the
workplace's rule keeps other projects' files out of this repository's history, so
the corpus README lists where each notebook comes from and its licence.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbprod.exceptions import NbprodError
from nbprod.extract import extract
from nbprod.testing.nbtest import PARITY_TESTS, StageFailed, Tester, check

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
README = CORPUS / "README.md"
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
            "notebook": str(self.notebook.relative_to(CORPUS)),
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


def corpus_names() -> list[str]:
    return sorted(p.name for p in CORPUS.iterdir() if p.is_dir() and notebooks_in(p))


def notebooks_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*.ipynb")
        if not {".nbprod", ".ipynb_checkpoints"} & set(p.relative_to(folder).parts)
    )


def notebook_of(name: str) -> Path:
    found = notebooks_in(CORPUS / name)
    if len(found) != 1:
        raise SystemExit(f"corpus/{name} must hold exactly one notebook, found {len(found)}")
    return found[0]


def readme_rows() -> dict[str, dict[str, str]]:
    """The table of corpus/README.md: one dict per row, keyed by lower-case column name."""
    rows: dict[str, dict[str, str]] = {}
    header: list[str] | None = None
    for line in README.read_text().splitlines():
        if not line.startswith("|"):
            header = None if not line.strip() else header
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = [cell.lower() for cell in cells]
        elif not set("".join(cells)) <= set("-: "):
            row = dict(zip(header, cells, strict=False))
            name = row.get("name", "").strip("`")
            if name:
                rows[name] = {**row, "name": name}
    return rows


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


def run_corpus_notebook(
    name: str, tester: Tester, workdir: Path, expected_refusal: str = ""
) -> CorpusResult:
    """check → run (smoke) → extract → the package's tests, on a copy of corpus/NAME."""
    copy = workdir / name
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(CORPUS / name, copy)
    notebook = copy / notebook_of(name).relative_to(CORPUS / name)
    result = CorpusResult(name, notebook_of(name), expected_refusal)
    _timed(result, "check", lambda: check(notebook))
    if result.failed_stage:
        return result
    record = _timed(result, "run", lambda: tester.execute(notebook))
    if record is None:
        return result
    package = _timed(
        result, "extract", lambda: _extract(notebook, record.id, workdir / "pkg" / name)
    )
    if package is None:
        return result
    _timed(result, "tests", lambda: _package_tests(package))
    return result


def run_corpus(names: list[str], workdir: Path | None = None) -> list[CorpusResult]:
    rows = readme_rows()
    results = []
    with tempfile.TemporaryDirectory(prefix="nbprod-corpus-") as tmp:
        folder = workdir or Path(tmp)
        with Tester(fork=False, timeout=RUN_TIMEOUT) as tester:
            for name in names:
                refusal = rows.get(name, {}).get("expected refusal", "")
                results.append(run_corpus_notebook(name, tester, folder, refusal))
                print_row(results[-1], file=sys.stderr)
    return results


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


def print_table(results: list[CorpusResult]) -> None:
    print(f"{'notebook':28} " + " ".join(f"{s:>11}" for s in STAGES) + "   total  verdict")
    for result in results:
        print_row(result)
    passed = sum(result.passed for result in results)
    print(
        f"\n{passed}/{len(results)} notebooks pass ({passed / max(len(results), 1):.0%}); "
        f"{sum(r.seconds for r in results):.0f} s in all"
    )
    for stage in STAGES:
        done = sum(r.stages[stage].status == "passed" for r in results)
        print(f"  {stage:8} passed by {done}/{len(results)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="corpus folders (default: all)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    known = corpus_names()
    unknown = [name for name in args.names if name not in known]
    if unknown:
        raise SystemExit(f"not in corpus/: {', '.join(unknown)} (known: {', '.join(known)})")
    results = run_corpus(args.names or known)
    if args.json:
        print(json.dumps([result.to_json() for result in results], indent=2))
    else:
        print_table(results)


if __name__ == "__main__":
    main()
