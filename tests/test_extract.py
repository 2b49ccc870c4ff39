"""The generated package: its code, its tests, and extraction's all-or-nothing writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tools
from nbbuild import write_notebook
from tools import nbprod

from nbprod.exceptions import UsageError
from nbprod.extract import generate

pytestmark = pytest.mark.slow


def run_and_extract(
    tmp_path: Path, *cells: tuple[str | None, str], params: tuple[str, ...] = (), name: str = "demo"
) -> Path:
    package = tmp_path / "pkg"
    tools.run_and_extract(write_notebook(tmp_path / f"{name}.ipynb", *cells), package, *params)
    return package


def in_package(package: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """This Python in the generated project, importing the package from its source
    (the dev environment has every dependency the package pins)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=package,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(package / "src")},
        timeout=300,
    )


def package_pytest(package: Path) -> subprocess.CompletedProcess[str]:
    """The generated tests, run against the package's source."""
    return in_package(package, "-m", "pytest", "-q", "-p", "no:cacheprovider")


def package_python(package: Path, code: str) -> str:
    result = in_package(package, "-c", code)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_synthesized_entry_point_returns_the_last_expression(tmp_path: Path) -> None:
    package = run_and_extract(
        tmp_path,
        ("data", "rows = [float(v) for v in (1.5, 2.5, 4.0)]"),
        ("train", "scale = sum(rows) / len(rows)"),
        ("inference", "[r * scale for r in rows]"),
    )
    pipeline = (package / "src" / "demo" / "pipeline.py").read_text()
    assert "def predict(rows):" in pipeline
    assert "    return [r * scale for r in rows]" in pipeline
    assert package_python(package, "import demo; print(demo.predict([3.0]))") == "[8.0]"
    tests = package_pytest(package)
    assert tests.returncode == 0, tests.stdout


def test_multiline_strings_keep_their_text_when_indented_into_train(tmp_path: Path) -> None:
    package = run_and_extract(
        tmp_path,
        ("data", 'text = """a\nb\n  c"""'),
        ("train", "w = len(text)"),
        ("inference", "def predict(x):\n    return x * w"),
        (None, "predict(2)"),
    )
    metrics = package_python(
        package, "import demo; from demo import pipeline; demo.train(); print(pipeline.w)"
    )
    assert metrics == str(len("a\nb\n  c"))


def test_display_in_training_code_works_outside_jupyter(tmp_path: Path) -> None:
    package = run_and_extract(
        tmp_path,
        ("data", "xs = [1, 2]\ndisplay(xs)"),
        ("train", "w = sum(xs)"),
        ("inference", "def predict(x):\n    return x + w"),
        (None, "predict(1)"),
    )
    output = package_python(package, "import demo; demo.train(); print(demo.predict(1))")
    assert output.splitlines() == ["[1, 2]", "4"], "display() prints outside Jupyter"


def test_artifact_that_is_an_instance_of_a_notebook_class(tmp_path: Path) -> None:
    package = run_and_extract(
        tmp_path,
        (
            "features",
            "class Scale:\n    def __init__(self, k):\n        self.k = k\n"
            "    def __call__(self, x):\n        return x * self.k",
        ),
        ("train", "scaler = Scale(3)"),
        ("inference", "def predict(x):\n    return scaler(x)"),
        (None, "predict(4)"),
    )
    manifest = json.loads((package / "src/demo/artifacts/manifest.json").read_text())
    assert manifest["artifacts"]["scaler"]["trusted"] == ["demo.pipeline.Scale"]
    assert package_python(package, "import demo; print(demo.predict(5))") == "15"
    assert package_pytest(package).returncode == 0


def test_parameters_become_a_typed_config_with_the_run_values(tmp_path: Path) -> None:
    package = run_and_extract(
        tmp_path,
        ("parameters", "a = 2\nname = 'x'\nrates = [0.1, 0.2]"),
        ("train", "w = a * len(rates)"),
        ("inference", "def predict(x):\n    return x * w"),
        (None, "predict(1)"),
        params=("-p", "a=5"),
    )
    config = (package / "src/demo/config.py").read_text()
    assert "    a: int = 5" in config
    assert "    name: str = 'x'" in config
    assert "    rates: list[Any] = field(default_factory=lambda: [0.1, 0.2])" in config
    assert "notebook's own\ndefaults differ for a" in config
    assert package_python(package, "import demo; print(demo.predict(1))") == "10"
    retrained = package_python(
        package,
        "import demo; demo.train(demo.Params(a=1)); print(demo.predict(1))",
    )
    assert retrained == "2"


def test_test_cells_become_package_tests_that_can_fail(tmp_path: Path) -> None:
    package = run_and_extract(
        tmp_path,
        ("data", "xs = [1, 2, 3]"),
        ("train", "w = sum(xs)"),
        ("inference", "def predict(x):\n    return x * w"),
        (None, "predict(2)"),
        ("test", "assert predict(1) == w\nassert xs == [1, 2, 3]"),
    )
    tests = (package / "tests/test_notebook.py").read_text()
    assert "def test_cell_5() -> None:" in tests
    assert 'xs = recorded(5, "xs")' in tests
    passing = package_pytest(package)
    assert passing.returncode == 0, passing.stdout
    assert "6 passed" in passing.stdout or "passed" in passing.stdout

    # The parity test must catch a package that predicts differently.
    parity = package / "tests/parity/parity.json"
    record = json.loads(parity.read_text())
    record["calls"][0]["result"]["value"] = 13
    parity.write_text(json.dumps(record))
    failing = package_pytest(package)
    assert failing.returncode == 1
    assert "predict() result (skops): 12 != 13" in failing.stdout


def test_interrupted_extract_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = write_notebook(
        tmp_path / "demo.ipynb",
        ("train", "w = 2"),
        ("inference", "def predict(x):\n    return x * w"),
        (None, "predict(1)"),
    )
    run = json.loads(nbprod("run", notebook, "--json").stdout)

    def interrupted(path: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(generate, "_check_compiles", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate.extract(notebook, run["id"], tmp_path / "pkg")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".nbprod", "demo.ipynb"]


def test_extract_refuses_an_existing_folder_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    with pytest.raises(UsageError, match="already exists"):
        generate.extract(tmp_path / "missing.ipynb", "latest", tmp_path / "pkg")


def test_entry_point_never_called_is_called_on_a_data_sample(tmp_path: Path) -> None:
    package = run_and_extract(
        tmp_path,
        (None, "import pandas as pd"),
        ("data", "df = pd.DataFrame({'x': [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})"),
        ("train", "w = df.x.mean()"),
        ("inference", "def predict(records):\n    return records.x * w"),
    )
    parity = json.loads((package / "tests/parity/parity.json").read_text())
    assert [c["source"] for c in parity["calls"]] == ["sample of df"]
    assert package_pytest(package).returncode == 0


DASK_SCORING = """
import dask.dataframe as dd
import pandas as pd
from distributed import Client, LocalCluster

import demo

frame = pd.DataFrame({"x": [float(i) for i in range(40)]})
expected = demo.predict_partition(frame)
if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        scored = dd.from_pandas(frame, npartitions=4).map_partitions(
            demo.predict_partition, meta={"prediction": "f8"}
        ).compute()
    pd.testing.assert_frame_equal(scored.sort_index(), expected)
    assert list(expected["prediction"][:3]) == list(demo.predict(frame.head(3)))
    print("partitions", len(scored))
"""


def test_dask_partitions_score_like_predict(tmp_path: Path) -> None:
    package = run_and_extract(
        tmp_path,
        (None, "import pandas as pd"),
        ("data", "df = pd.DataFrame({'x': [1.0, 2.0, 3.0]})"),
        ("train", "w = df.x.sum()"),
        ("inference", "def predict(records):\n    return (records.x * w).to_numpy()"),
        (None, "predict(df)"),
    )
    script = package / "score_on_dask.py"
    script.write_text(DASK_SCORING)
    result = in_package(package, str(script))
    assert result.returncode == 0, result.stderr
    assert "partitions 40" in result.stdout
