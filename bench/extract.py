"""Time ``nbprod check`` + ``nbprod extract`` against ``jupyter nbconvert --to script``.

What it measures: on one synthetic, realistically tagged notebook of 300 code cells
(plus markdown), the wall-clock time a user waits for

- ``nbprod check NB`` followed by ``nbprod extract NB --run ID -o DIR --force``, each
  as the CLI subprocess a user would start;
- the same work in-process (``analyze(load_notebook(NB))`` + ``extract(...)``), which
  leaves out interpreter start-up and imports;
- the baseline ``jupyter nbconvert --to script NB`` (also a CLI subprocess), the
  cheapest way to get a notebook's code out as a file.

The notebook is generated into a temporary folder, executed once with
``run_notebook`` (untimed: extract packages a run), and each command is then run
once untimed as a warm-up and ``REPEATS`` times timed. The report is the median of
those repeats and the ratios against nbconvert, all measured in this one process
run: no stored baselines, no thresholds. The temporary folder is removed at the end.

Run from the repository root:  .venv/bin/python bench/extract.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from textwrap import dedent

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nbprod.analysis.analyzer import analyze
from nbprod.execution.execute import run_notebook
from nbprod.extract import extract
from nbprod.notebook import load_notebook

REPEATS = 5
CODE_CELLS = 300
FEATURE_CELLS = 80
TRAIN_CELLS = 120
COLUMNS = 8  # numeric columns x0..x7 of the synthetic frame
BIN = Path(sys.executable).parent  # the venv's bin folder: nbprod and jupyter live here


# ------------------------------------------------------------------ the notebook


def code(source: str, *tags: str) -> nbformat.NotebookNode:
    cell = new_code_cell(dedent(source).strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def md(source: str) -> nbformat.NotebookNode:
    return new_markdown_cell(dedent(source).strip("\n"))


def _column(k: int) -> str:
    return f"x{k % COLUMNS}"


def feature_cells() -> Iterator[nbformat.NotebookNode]:
    """Constants and small helpers, later helpers calling earlier ones."""
    yield code(
        f"""
        FEATURE_COLUMNS = [f"x{{i}}" for i in range({COLUMNS})]
        SEGMENTS = ("a", "b", "c")
        """,
        "features",
    )
    for k in range(1, FEATURE_CELLS - 1):
        kind = k % 4
        if kind == 1:
            yield code(
                f"""
                SCALE_{k} = {1 + k / 100:.2f}
                OFFSET_{k} = {k / 10:.1f}
                """,
                "features",
            )
        elif kind == 2:
            yield code(
                f'''
                def scaled_{k}(frame):
                    """`{_column(k)}` rescaled with the constants of the cell above."""
                    return frame["{_column(k)}"] * SCALE_{k - 1} + OFFSET_{k - 1}
                ''',
                "features",
            )
        elif kind == 3:
            yield code(
                f"""
                def ratio_{k}(frame):
                    denominator = frame["{_column(k + 3)}"].abs() + 1.0
                    return scaled_{k - 1}(frame) / denominator
                """,
                "features",
            )
        else:
            previous = f"combo_{k - 4}(frame)" if k >= 8 else "0.0"
            yield code(
                f"""
                def combo_{k}(frame):
                    return np.tanh(ratio_{k - 1}(frame)) + 0.1 * {previous}
                """,
                "features",
            )
    combos = [k for k in range(1, FEATURE_CELLS - 1) if k % 4 == 0]
    combo_lines = "".join(f'    X["combo_{k}"] = combo_{k}(frame)\n' for k in combos[-6:])
    yield code(
        dedent(
            '''
            def make_features(frame):
                """Raw records -> model inputs: the numeric columns, one-hot segment, combos."""
                X = frame[FEATURE_COLUMNS].astype(float).copy()
                for segment in SEGMENTS:
                    X[f"segment_{segment}"] = (frame["segment"] == segment).astype(float)
            '''
        )
        + combo_lines
        + "    return X",
        "features",
    )


def train_cells() -> Iterator[tuple[nbformat.NotebookNode, str]]:
    """The split, one model fit, then many cheap pandas statements (cell, name defined)."""
    yield (
        code(
            """
            X_raw = df.drop(columns=["target"])
            y = df["target"]
            X_train_raw, X_test_raw, y_train, y_test = train_test_split(
                X_raw, y, test_size=test_size, random_state=seed, stratify=y
            )
            """,
            "train",
        ),
        "X_train_raw",
    )
    yield (
        code(
            """
            clip_bounds = {
                column: (float(X_train_raw[column].quantile(0.01)),
                         float(X_train_raw[column].quantile(0.99)))
                for column in FEATURE_COLUMNS
            }
            """,
            "train",
        ),
        "clip_bounds",
    )
    yield (
        code(
            """
            model = LogisticRegression(C=C, max_iter=max_iter)
            model.fit(make_features(X_train_raw), y_train)
            """,
            "train",
        ),
        "model",
    )
    yield code("running_total = 0.0", "train"), "running_total"
    for k in range(TRAIN_CELLS - 4):
        column, other = _column(k), _column(k + 1)
        kind = k % 6
        if kind == 0:
            source, name = (
                f'summary_{k} = X_train_raw.groupby("segment")["{column}"].agg(["mean", "std"])',
                f"summary_{k}",
            )
        elif kind == 1:
            source, name = (
                f'q_{k} = float(X_train_raw["{column}"].quantile({0.05 + (k % 9) / 10:.2f}))',
                f"q_{k}",
            )
        elif kind == 2:
            source, name = (
                f'corr_{k} = X_train_raw[["{column}", "{other}"]].corr().iloc[0, 1]',
                f"corr_{k}",
            )
        elif kind == 3:
            source, name = (
                f'counts_{k} = pd.cut(X_train_raw["{column}"], bins=5).value_counts().sort_index()',
                f"counts_{k}",
            )
        elif kind == 4:
            source, name = (
                f"frame_{k} = X_train_raw.assign(z=lambda d: d[{column!r}] * {k % 7 + 1})"
                f'.query("z > 0")\n'
                f"running_total += len(frame_{k})",
                f"frame_{k}",
            )
        else:
            source, name = (
                f"means_{k} = {{c: float(X_train_raw[c].mean()) for c in FEATURE_COLUMNS}}\n"
                f'means_{k}["{column}"] = float(X_train_raw["{column}"].median())',
                f"means_{k}",
            )
        yield code(source, "train"), name


def exploration(k: int, name: str | None) -> nbformat.NotebookNode:
    """An untagged cell: displays, magics, scratch work, reading what came before."""
    column = _column(k)
    variants = [
        "df.describe()",
        f'%time df.groupby("segment")["{column}"].mean()',
        f"!echo exploring step {k}",
        f'scratch_{k} = df["{column}"].rolling(5).mean()\nscratch_{k}.tail()',
        f'%%time\ntotals = df.groupby("segment").sum(numeric_only=True)\ntotals["{column}"]',
        f"print({name!r}, type({name}).__name__)" if name else "df.head()",
    ]
    return code(variants[k % len(variants)])


def build_notebook() -> nbformat.NotebookNode:
    explored = iter(range(10_000))
    cells: list[nbformat.NotebookNode] = [
        md(
            """
            # Synthetic churn-like classifier

            Generated by `bench/extract.py`: a tagged notebook of 300 code cells.
            """
        ),
        code(
            """
            import numpy as np
            import pandas as pd
            from sklearn.linear_model import LogisticRegression
            from sklearn.model_selection import train_test_split
            """
        ),
        code(
            """
            n_rows = 2000
            seed = 0
            C = 1.0
            max_iter = 500
            test_size = 0.25
            threshold = 0.5
            """,
            "parameters",
        ),
        md("## Data\n\nA frame drawn from numpy with a fixed seed: no files, no downloads."),
        code("rng = np.random.default_rng(seed)", "data"),
        code(
            f"""
            df = pd.DataFrame(
                rng.normal(size=(n_rows, {COLUMNS})), columns=[f"x{{i}}" for i in range({COLUMNS})]
            )
            """,
            "data",
        ),
        code('df["segment"] = rng.choice(["a", "b", "c"], size=n_rows)', "data"),
        code(
            """
            logit = df["x0"] - 0.5 * df["x1"] + 0.25 * df["x2"] * df["x3"]
            logit = logit + 0.5 * (df["segment"] == "a")
            """,
            "data",
        ),
        code(
            'df["target"] = (logit + rng.normal(scale=0.5, size=n_rows) > 0).astype(int)',
            "data",
        ),
    ]
    cells += [exploration(next(explored), None) for _ in range(3)]
    cells.append(md("## Features"))
    for index, cell in enumerate(feature_cells()):
        cells.append(cell)
        if index % 3 == 2:
            cells.append(exploration(next(explored), None))
        if index % 20 == 19:
            cells.append(md(f"### Feature helpers, part {index // 20 + 2}"))
    cells.append(md("## Training"))
    for index, (cell, name) in enumerate(train_cells()):
        cells.append(cell)
        if index % 3 == 2:
            cells.append(exploration(next(explored), name))
        if index % 25 == 24:
            cells.append(md(f"### Training statistics, part {index // 25 + 2}"))
    cells += [
        md("## Evaluation"),
        # imports sit anywhere in real notebooks; nbprod makes them available to every role
        code("from sklearn.metrics import accuracy_score, f1_score, roc_auc_score"),
        code("X_test = make_features(X_test_raw)", "metrics"),
        code("y_test_pred = model.predict(X_test)", "metrics"),
        code("y_test_score = model.predict_proba(X_test)[:, 1]", "metrics"),
        code("accuracy = float(accuracy_score(y_test, y_test_pred))", "metrics"),
        code("f1 = float(f1_score(y_test, y_test_pred))", "metrics"),
        code("auc = float(roc_auc_score(y_test, y_test_score))", "metrics"),
        code("positive_rate = float(y_test_pred.mean())", "metrics"),
        code("mean_score = float(y_test_score.mean())", "metrics"),
        code(
            "segment_accuracy = {\n"
            "    s: float((y_test_pred[mask] == y_test[mask]).mean())\n"
            '    for s, mask in ((s, (X_test_raw["segment"] == s).to_numpy()) for s in SEGMENTS)\n'
            "}",
            "metrics",
        ),
        code('print(f"accuracy={accuracy:.3f} f1={f1:.3f} auc={auc:.3f}")', "metrics"),
        md("## Prediction"),
        code(
            '''
            def predict(records):
                """Class (0/1) of raw records with the columns of `df` ("target" ignored)."""
                clipped = records.copy()
                for column, (low, high) in clip_bounds.items():
                    clipped[column] = clipped[column].clip(low, high)
                scores = model.predict_proba(make_features(clipped))[:, 1]
                return (scores >= threshold).astype(int)
            ''',
            "inference",
        ),
        md("Example call on raw records:"),
        code("predict(df.head())"),
        md("## Tests"),
        code("assert 0.6 < accuracy <= 1.0", "test"),
        code("assert len(predict(df.head(3))) == 3", "test"),
        code("assert set(predict(df.head(50))) <= {0, 1}", "test"),
        code("assert scaled_2(df.head()).shape == (5,)", "test"),
        code("assert list(make_features(df.head(2)).columns[:8]) == FEATURE_COLUMNS", "test"),
    ]
    missing = CODE_CELLS - sum(cell.cell_type == "code" for cell in cells)
    if missing < 0:
        raise AssertionError(f"the generator made {-missing} code cells too many")
    cells += [exploration(next(explored), None) for _ in range(missing)]
    return _notebook(cells)


def _notebook(cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.nbformat, nb.nbformat_minor = 4, 5
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    # as Jupyter saves it: nbconvert --to script reads the exporter and extension from here
    nb.metadata["language_info"] = {
        "name": "python",
        "version": f"{sys.version_info.major}.{sys.version_info.minor}",
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3",
        "codemirror_mode": {"name": "ipython", "version": 3},
    }
    nb.metadata["nbprod"] = {"name": "synthetic_bench"}
    for index, cell in enumerate(cells):
        cell["id"] = f"bench-{index:03d}"
    nb.cells = cells
    nbformat.validate(nb)
    return nb


# ------------------------------------------------------------------- timing


def run_cli(argv: list[str]) -> None:
    """Run one command; a failure stops the benchmark with the command's own output."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv)} exited with {done.returncode}\n{done.stdout}{done.stderr}"
        )


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def measure(actions: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """One untimed warm-up of each action, then REPEATS timed rounds, interleaved so that
    a slow moment of the machine hits every action rather than one."""
    for action in actions.values():
        action()
    times: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(REPEATS):
        for name, action in actions.items():
            times[name].append(timed(action))
    return times


def summed(first: list[float], second: list[float]) -> list[float]:
    """Per-round totals of two steps run one after the other."""
    return [a + b for a, b in zip(first, second, strict=True)]


def main() -> None:
    if not (BIN / "jupyter-nbconvert").exists():
        raise SystemExit(
            "nbconvert is missing (it is in the dev extras); install it with\n"
            "  .venv/bin/uv pip install --python .venv/bin/python nbconvert"
        )
    with tempfile.TemporaryDirectory(prefix="nbprod-bench-") as tmp:
        root = Path(tmp)
        path = root / "synthetic_bench.ipynb"
        node = build_notebook()
        nbformat.write(node, str(path))
        markdown = sum(cell.cell_type == "markdown" for cell in node.cells)

        started = time.perf_counter()
        record = run_notebook(path)
        run_seconds = time.perf_counter() - started

        nbprod, jupyter = str(BIN / "nbprod"), str(BIN / "jupyter")
        cli_out, lib_out, script_out = root / "cli_pkg", root / "lib_pkg", root / "script"
        actions: dict[str, Callable[[], object]] = {
            "nbprod check (CLI)": lambda: run_cli([nbprod, "check", str(path)]),
            "nbprod extract (CLI)": lambda: run_cli(
                [nbprod, "extract", str(path), "--run", record.id, "-o", str(cli_out), "--force"]
            ),
            "analyze (in-process)": lambda: analyze(load_notebook(path)),
            "extract (in-process)": lambda: extract(path, record.id, lib_out, force=True),
            # not part of the comparison: how much of the CLI's time is importing
            "import nbprod.extract (python -c)": lambda: run_cli(
                [sys.executable, "-c", "import nbprod.extract"]
            ),
            "nbconvert --to script": lambda: run_cli(
                [jupyter, "nbconvert", "--to", "script", str(path), "--output-dir", str(script_out)]
            ),
        }
        times = measure(actions)

    times["check + extract (CLI)"] = summed(
        times["nbprod check (CLI)"], times["nbprod extract (CLI)"]
    )
    times["analyze + extract (in-process)"] = summed(
        times["analyze (in-process)"], times["extract (in-process)"]
    )
    median = {name: statistics.median(values) for name, values in times.items()}
    baseline = median["nbconvert --to script"]

    print(
        f"notebook: {CODE_CELLS} code cells + {markdown} markdown cells; "
        f"run {record.id} took {run_seconds:.1f} s (untimed set-up)"
    )
    print(f"{'':34} {'median':>9} {'min':>9} {'max':>9}   ({REPEATS} repeats, 1 warm-up)")
    rows = [
        "nbprod check (CLI)",
        "nbprod extract (CLI)",
        "check + extract (CLI)",
        "analyze (in-process)",
        "extract (in-process)",
        "analyze + extract (in-process)",
        "import nbprod.extract (python -c)",
        "nbconvert --to script",
    ]
    for name in rows:
        values = times[name]
        print(f"{name:34} {median[name]:8.3f}s {min(values):8.3f}s {max(values):8.3f}s")
    print()
    cli, lib = median["check + extract (CLI)"], median["analyze + extract (in-process)"]
    print(f"check+extract (CLI) / nbconvert --to script = {cli / baseline:.2f}x")
    print(f"analyze+extract (in-process) / nbconvert --to script = {lib / baseline:.2f}x")


if __name__ == "__main__":
    main()
