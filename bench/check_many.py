"""Time ``nbprod check`` on a repository of 200 notebooks, as a pre-commit hook runs it,
against reading and validating the same files with nbformat.

The repository is generated into a temporary folder: copies of the three example
notebooks, each perturbed (its data frame and model renamed, markdown cells added,
outputs as Jupyter saves them: printed text, HTML tables and PNG plots, some
``%time`` magics), spread over team and project folders. About a fifth have their
tags removed (exploration notebooks nbprod must skip), a few lose a tag so that
their check reports a problem, and some folders hold Jupyter checkpoints.

Each of these runs as its own process, wall clock, interleaved over the rounds (one
untimed warm-up, then the median of ``--rounds``):

(a) ``nbprod check --tagged-only <the 200 paths>``: one process, as pre-commit calls it;
(b) the baseline, the floor any notebook tool pays: a Python process that runs
    ``nbformat.read`` (which validates) on each of the 200 files;
(b2) as (b), with an explicit ``nbformat.validate`` after each read as well;
(c) for information: ``nbprod check <the repository folder>`` (searches, skips the
    checkpoints); the start-up alone (``nbprod check`` of one tiny notebook, and (b)
    on that notebook); pre-commit's split of the 200 paths over 2 processes at once.

It prints notebooks per second for each, the ratio (a)/(b) and the milliseconds per
notebook once the start-up is taken off. Every number comes from this one run; the
temporary folder is removed at the end.

Run from the repository root:  .venv/bin/python bench/check_many.py [--notebooks N] [--rounds N]
"""

from __future__ import annotations

import argparse
import base64
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbformat.v4 import new_markdown_cell, new_output

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "example_notebooks"
NBPROD = str(Path(sys.executable).parent / "nbprod")
TEAMS = ("churn", "pricing", "vision", "forecasting", "risk")
UNTAGGED_SHARE = 0.2
PROBLEM_SHARE = 0.05
NOTE = (
    "the model overfits on the smaller folds so we keep the regularisation strong and check "
    "calibration again after the holdout split changes next quarter with new labels"
)
BASELINE = """
import sys
import nbformat
for path in sys.argv[2:]:
    nb = nbformat.read(path, as_version=4)
    if sys.argv[1] == "validate":
        nbformat.validate(nb)
"""
SPLIT = 2  # pre-commit runs a hook on a share of the files per CPU; this machine's count


# ------------------------------------------------------------------ the repository


def perturbed(source: nbformat.NotebookNode, k: int, rng: random.Random) -> nbformat.NotebookNode:
    """A variant of an example notebook, as another person would have written it."""
    nb = nbformat.from_dict(source)  # a deep copy
    renames = {"df": f"{rng.choice(['raw', 'frame', 'table'])}_{k}", "model": f"estimator_{k}"}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for old, new in renames.items():
            cell.source = re.sub(rf"\b{old}\b", new, cell.source)
        if rng.random() < 0.15:
            cell.source = f"%time {cell.source}" if "\n" not in cell.source else cell.source
        cell.execution_count = None
        cell.outputs = outputs(cell.source, rng)
    for _ in range(rng.randint(1, 4)):
        note = new_markdown_cell(f"Note {k}: " + " ".join(rng.sample(NOTE.split(), 12)) + ".")
        nb.cells.insert(rng.randint(1, len(nb.cells)), note)
    for number, cell in enumerate(nb.cells, start=1):
        cell["id"] = f"nb{k}-{number}"
        if cell.cell_type == "code":
            cell.execution_count = number
    return nb


def outputs(source: str, rng: random.Random) -> list[nbformat.NotebookNode]:
    """What Jupyter saves after running a cell: prints, a table, sometimes a plot."""
    found = []
    if "print(" in source:
        found.append(new_output("stream", name="stdout", text="accuracy=0.964 f1=0.958\n"))
    last = source.strip().splitlines()[-1] if source.strip() else ""
    if (
        last
        and not last.startswith(("assert", "def ", "    ", "import", "from"))
        and "=" not in last
    ):
        rows = "".join(f"<tr><td>{i}</td><td>{rng.random():.4f}</td></tr>" for i in range(20))
        found.append(
            new_output(
                "execute_result",
                data={"text/plain": "   value\n0  0.5", "text/html": f"<table>{rows}</table>"},
                execution_count=1,
            )
        )
    if "plt." in source or rng.random() < 0.1:
        png = base64.b64encode(rng.randbytes(rng.randint(20_000, 60_000))).decode()
        found.append(new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"}))
    return found


def untagged(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    for cell in nb.cells:
        cell.metadata.pop("tags", None)
    return nb


def with_problem(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The data cell loses its tag: training then reads a frame only an untagged cell defines."""
    for cell in nb.cells:
        if "data" in cell.metadata.get("tags", []):
            del cell.metadata["tags"]
    return nb


def build_repository(root: Path, count: int) -> tuple[list[Path], dict[str, int]]:
    rng = random.Random(0)
    examples = [nbformat.read(path, as_version=4) for path in sorted(EXAMPLES.glob("*.ipynb"))]
    paths, kinds = [], {"tagged": 0, "problem": 0, "untagged": 0}
    for k in range(count):
        nb = perturbed(examples[k % len(examples)], k, rng)
        draw, kind = rng.random(), "tagged"
        if draw < UNTAGGED_SHARE:
            nb, kind = untagged(nb), "untagged"
        elif draw < UNTAGGED_SHARE + PROBLEM_SHARE:
            nb, kind = with_problem(nb), "problem"
        kinds[kind] += 1
        folder = root / "projects" / TEAMS[k % len(TEAMS)] / f"project_{k % 17}"
        if kind == "untagged":
            folder = folder / "exploration"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{k:03d}_{rng.choice(['analysis', 'model', 'experiment'])}.ipynb"
        nbformat.validate(nb)
        nbformat.write(nb, str(path))
        paths.append(path)
        if k % 10 == 0:  # Jupyter's autosaved copy, which a folder search must skip
            checkpoints = folder / ".ipynb_checkpoints"
            checkpoints.mkdir(exist_ok=True)
            nbformat.write(nb, str(checkpoints / f"{path.stem}-checkpoint.ipynb"))
    return paths, kinds


TINY = (
    ("parameters", "a = 2"),
    ("train", "w = 3 * a"),
    ("inference", "def predict(x):\n    return x * w"),
    (None, "predict(1)"),
)


def tiny_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    for tag, source in TINY:
        cell = nbformat.v4.new_code_cell(source)
        if tag:
            cell.metadata["tags"] = [tag]
        nb.cells.append(cell)
    nbformat.write(nb, str(path))
    return path


# ------------------------------------------------------------------- timing


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """One command; exit 1 (problems found) is expected, anything else stops the bench."""
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv[:4])} ... exited {done.returncode}\n{done.stderr}")
    return done


def split(argvs: list[list[str]], cwd: Path) -> None:
    """Commands run at once, as pre-commit runs a hook's shares of the files."""
    processes = [
        subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for argv in argvs
    ]
    for process in processes:
        _, stderr = process.communicate()
        if process.returncode not in (0, 1):
            raise SystemExit(f"a split process exited {process.returncode}\n{stderr.decode()}")


def measure(actions: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each action: one warm-up, then rounds interleaved so that a slow
    moment of the shared machine hits every action rather than one."""
    for action in actions.values():
        action()
    times: dict[str, list[float]] = {name: [] for name in actions}
    for round_number in range(rounds):
        for name, action in actions.items():
            start = time.perf_counter()
            action()
            times[name].append(time.perf_counter() - start)
        print(f"  round {round_number + 1}/{rounds} done", file=sys.stderr, flush=True)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebooks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    count = args.notebooks
    with tempfile.TemporaryDirectory(prefix="nbprod-bench-check-") as tmp:
        root = Path(tmp)
        paths, kinds = build_repository(root / "repo", count)
        tiny = tiny_notebook(root / "tiny.ipynb")
        names = [str(path.relative_to(root)) for path in paths]
        size = sum(path.stat().st_size for path in paths)
        print(
            f"{count} notebooks, {size / 1e6:.1f} MB: {kinds['tagged']} tagged, "
            f"{kinds['problem']} tagged with a problem, {kinds['untagged']} without roles",
            flush=True,
        )
        summary = run([NBPROD, "check", "--tagged-only", *names], root).stdout.splitlines()[-1]
        print(f"nbprod check says: {summary}", flush=True)

        shares = [names[i::SPLIT] for i in range(SPLIT)]
        python = sys.executable
        actions: dict[str, Callable[[], object]] = {
            "(a) nbprod check --tagged-only PATHS": lambda: run(
                [NBPROD, "check", "--tagged-only", *names], root
            ),
            "(b) nbformat.read": lambda: run([python, "-c", BASELINE, "read", *names], root),
            "(b2) nbformat.read + validate": lambda: run(
                [python, "-c", BASELINE, "validate", *names], root
            ),
            "(c) nbprod check FOLDER": lambda: run([NBPROD, "check", "repo"], root),
            f"(c) (a) split in {SPLIT} processes at once": lambda: split(
                [[NBPROD, "check", "--tagged-only", *share] for share in shares], root
            ),
            "start-up: nbprod check TINY": lambda: run([NBPROD, "check", str(tiny)], root),
            "start-up: (b) on TINY": lambda: run([python, "-c", BASELINE, "read", str(tiny)], root),
        }
        median = measure(actions, args.rounds)
    report(median, count, args.rounds)


def report(median: dict[str, float], count: int, rounds: int) -> None:
    print(f"\nmedian of {rounds} rounds (1 warm-up), each a separate process, wall clock")
    print(f"{'':42} {'seconds':>8} {'notebooks/s':>12}")
    for name, seconds in median.items():
        rate = f"{count / seconds:12.1f}" if not name.startswith("start-up") else f"{'':12}"
        print(f"{name:42} {seconds:8.3f} {rate}")
    a, b = median["(a) nbprod check --tagged-only PATHS"], median["(b) nbformat.read"]
    b2 = median["(b2) nbformat.read + validate"]
    nbprod_start = median["start-up: nbprod check TINY"]
    baseline_start = median["start-up: (b) on TINY"]
    print(f"\n(a)/(b) = {a / b:.2f}x   (a)/(b2) = {a / b2:.2f}x")
    print(
        f"per notebook after start-up: (a) {(a - nbprod_start) / count * 1000:.1f} ms, "
        f"(b) {(b - baseline_start) / count * 1000:.1f} ms; "
        f"start-up: nbprod {nbprod_start:.2f} s, (b) {baseline_start:.2f} s"
    )


if __name__ == "__main__":
    main()
