"""The training profile: ``runtime/_profile.py`` on synthetic values, then real runs of the
examples (profile.json in the run, ``TRAINING_PROFILE`` in the installed package, the
card's section and its histograms) and a run whose calls cannot be profiled."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from nbbuild import write_notebook
from paths import EXAMPLE_NAMES
from tools import BIN, UV_CACHE, nbprod, shared_example

from nbprod.runtime import _profile
from nbprod.runtime._profile import Unprofilable, bin_counts, column_kind, profile, profile_column
from nbprod.runtime.values import decode

QUANTILE_KEYS = ["0.01", "0.05", "0.1", "0.25", "0.5", "0.75", "0.9", "0.95", "0.99"]


# -- columns ------------------------------------------------------------------------------
def test_numeric_column_with_nan_and_inf() -> None:
    values = [1.0, 2.0, np.nan, np.inf, 3.0, None, -np.inf, 4.0]
    column = profile_column(pd.Series(values, dtype="float64"))
    assert column["kind"] == "numeric" and column["dtype"] == "float64"
    assert (column["count"], column["nulls"]) == (6, 2)
    assert column["null_rate"] == pytest.approx(2 / 8)
    assert (column["min"], column["max"]) == (-math.inf, math.inf)
    assert column["mean"] is None and column["std"] is None  # inf - inf: no number, no NaN
    assert list(column["quantiles"]) == QUANTILE_KEYS
    assert not any(isinstance(q, float) and math.isnan(q) for q in column["quantiles"].values())
    assert sum(column["bins"]["counts"]) == column["count"]
    assert "NaN" not in json.dumps(column)


def test_numeric_column_statistics_and_bins() -> None:
    values = np.arange(1, 101, dtype="int64")
    column = profile_column(pd.Series(values))
    assert column["kind"] == "numeric" and column["dtype"] == "int64"
    assert (column["min"], column["max"]) == (1.0, 100.0)
    assert column["mean"] == pytest.approx(50.5)
    assert column["std"] == pytest.approx(float(np.std(values)))  # population: ddof=0
    assert column["quantiles"]["0.5"] == pytest.approx(50.5)
    edges = column["bins"]["edges"]
    assert edges == pytest.approx([float(np.quantile(values, q / 10)) for q in range(1, 10)])
    assert column["bins"]["counts"] == [10] * 10
    assert isinstance(column["count"], int) and isinstance(column["min"], float)


def test_bin_counts_puts_a_value_on_an_edge_in_the_lower_bin_and_drops_nulls() -> None:
    edges = [1.0, 2.0, 3.0]
    values = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, np.nan, None, np.inf, -np.inf]
    #          c0   c0   c1   c1   c2   c2   c3                 c3     c0
    assert bin_counts(values, edges) == [3, 2, 2, 2]
    assert bin_counts(pd.Series([1, None, 5], dtype="Int64"), edges) == [1, 0, 0, 1]
    expected = np.bincount(np.searchsorted(edges, [0.5, 2.0]), minlength=4).tolist()
    assert bin_counts(np.array([0.5, 2.0]), edges) == expected


def test_constant_column_has_one_edge() -> None:
    column = profile_column(pd.Series([7] * 5))
    assert column["bins"] == {"edges": [7.0], "counts": [5, 0]}
    assert column["std"] == 0.0 and column["quantiles"]["0.99"] == 7.0


def test_empty_numeric_column() -> None:
    column = profile_column(pd.Series([np.nan, np.nan]))
    assert (column["count"], column["nulls"], column["null_rate"]) == (0, 2, 1.0)
    assert column["min"] is None and column["bins"] == {"edges": [], "counts": [0]}


def test_bool_is_categorical() -> None:
    series = pd.Series([True, False, True, True])
    assert column_kind(series) == "categorical"
    column = profile_column(series)
    assert column["values"] == {"True": 3, "False": 1} and column["other"] == 0
    assert column["dtype"] == "bool"


def test_categorical_with_60_values_keeps_the_50_most_frequent() -> None:
    # value i appears i + 1 times: v59 is the most frequent, v0..v9 the least
    items = [f"v{i}" for i in range(60) for _ in range(i + 1)]
    series = pd.Series(items + [None] * 3, dtype="category")
    assert column_kind(series) == "categorical"
    column = profile_column(series)
    assert column["kind"] == "categorical" and column["dtype"] == "category"
    assert len(column["values"]) == 50
    assert list(column["values"])[:2] == ["v59", "v58"]  # most frequent first
    assert set(column["values"]) == {f"v{i}" for i in range(10, 60)}
    assert column["other"] == sum(range(1, 11))
    assert sum(column["values"].values()) + column["other"] == column["count"] == len(items)
    assert column["nulls"] == 3


def test_text_ids_keep_no_values() -> None:
    series = pd.Series([f"user-{i}" for i in range(200)])
    assert column_kind(series) == "text"
    column = profile_column(series)
    assert column == {
        "kind": "text",
        "dtype": str(series.dtype),
        "count": 200,
        "nulls": 0,
        "null_rate": 0.0,
        "distinct": 200,
    }


# -- values of calls as columns -----------------------------------------------------------
def test_frames_of_several_calls_are_concatenated() -> None:
    first = pd.DataFrame({"a": [1.0, 2.0], "city": ["x", "y"], 3: [0, 1]}, index=[5, 6])
    second = pd.DataFrame({"a": [3.0], "city": ["x"], 3: [1]})
    result = profile([first, second], [np.array([0, 1]), np.array([1])], "2 calls")
    assert result["format"] == _profile.FORMAT == 1
    assert (result["rows"], result["source"]) == (3, "2 calls")
    assert list(result["columns"]) == ["a", "city", "3"]
    assert result["columns"]["city"]["values"] == {"x": 2, "y": 1}
    assert result["columns"]["a"]["count"] == 3
    assert list(result["prediction"]) == ["prediction"]
    assert result["prediction"]["prediction"]["count"] == 3
    assert json.loads(json.dumps(result)) == result


def test_2d_array_inputs_and_predictions() -> None:
    inputs = [np.arange(6.0).reshape(3, 2), np.arange(4.0).reshape(2, 2)]
    predictions = [np.ones((3, 3)), np.zeros((2, 3))]
    result = profile(inputs, predictions, "arrays")
    assert result["rows"] == 5
    assert list(result["columns"]) == ["x0", "x1"]
    assert result["columns"]["x1"]["max"] == 5.0
    assert list(result["prediction"]) == ["prediction_0", "prediction_1", "prediction_2"]


def test_1d_inputs_series_and_scalar_predictions() -> None:
    named = profile([[1, 2, 3]], [pd.Series(["a", "b", "a"], name="label")], "list")
    assert list(named["columns"]) == ["x0"] and list(named["prediction"]) == ["label"]
    assert named["prediction"]["label"]["values"] == {"a": 2, "b": 1}
    unnamed = profile([pd.Series([1.5, 2.5])], [pd.Series([0, 1])], "series")
    assert list(unnamed["columns"]) == ["value"] and list(unnamed["prediction"]) == ["prediction"]
    # integer predictions are class labels: their frequencies; integer inputs stay numbers
    assert unnamed["prediction"]["prediction"]["kind"] == "categorical"
    assert unnamed["prediction"]["prediction"]["values"] == {"0": 1, "1": 1}
    scalars = profile([{"age": 30, "city": "x"}, {"age": 40, "city": "y"}], [0.2, 0.9], "dicts")
    assert scalars["rows"] == 2 and list(scalars["columns"]) == ["age", "city"]
    assert scalars["columns"]["age"]["kind"] == "numeric"
    assert scalars["prediction"]["prediction"]["count"] == 2
    assert scalars["prediction"]["prediction"]["kind"] == "numeric"


def test_values_that_are_not_columns_are_refused() -> None:
    with pytest.raises(Unprofilable, match="the input of call 2 is a 3-D array"):
        profile([np.ones((2, 2)), np.ones((2, 2, 2))], [1, 1], "images")
    with pytest.raises(Unprofilable, match="the result of call 1"):
        profile([[1.0]], [{"scores": [0.1, 0.9]}], "nested")
    with pytest.raises(Unprofilable, match="object"):
        profile([object()], [1], "objects")


# -- real runs of the examples --------------------------------------------------------------
@pytest.fixture(scope="module", params=EXAMPLE_NAMES)
def shipped(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An example run, extracted and installed in a clean venv (``tools.shared_example``)."""
    return shared_example(request.param, tmp_path_factory)


def _recorded_inputs(run_dir: Path) -> pd.DataFrame:
    parity = run_dir / "parity"
    calls = json.loads((parity / "parity.json").read_text())["calls"]
    frames = [decode(call["args"][0], parity) for call in calls]
    assert all(isinstance(f, pd.DataFrame) for f in frames)
    return pd.concat(frames, ignore_index=True)


def _walk(value: Any, path: str = "") -> list[tuple[str, Any]]:
    found = [(path, value)]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _walk(item, f"{path}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _walk(item, f"{path}[{i}]")
    return found


@pytest.mark.slow
def test_run_folder_has_a_profile_of_the_recorded_calls(shipped: dict) -> None:
    run_dir = shipped["run_dir"]
    result = json.loads((run_dir / "profile.json").read_text())
    inputs = _recorded_inputs(run_dir)
    schema = json.loads((run_dir / "parity" / "schema.json").read_text())
    assert result["format"] == 1 and result["rows"] == len(inputs) > 0
    assert "recorded call" in result["source"]
    assert schema["kind"] == "dataframe"
    assert {c["name"] for c in schema["columns"]} <= set(result["columns"])
    for column in schema["columns"]:
        summary = result["columns"][column["name"]]
        values = inputs[column["name"]]
        expected = {"integer": "numeric", "number": "numeric"}.get(column["type"])
        assert summary["kind"] == (expected or column_kind(values)), column
        assert summary["count"] == values.notna().sum() and summary["nulls"] == values.isna().sum()
        assert summary["count"] + summary["nulls"] == result["rows"]
        if summary["kind"] == "numeric":
            assert summary["min"] == pytest.approx(values.min())
            assert summary["max"] == pytest.approx(values.max())
            assert summary["mean"] == pytest.approx(values.mean())
            assert summary["std"] == pytest.approx(values.std(ddof=0))
            _assert_numeric_shape(summary)
            assert summary["bins"]["counts"] == bin_counts(values, summary["bins"]["edges"])
        elif summary["kind"] == "categorical":
            assert sum(summary["values"].values()) + summary["other"] == summary["count"]
            assert summary["values"] == values.dropna().astype(str).value_counts().to_dict()
    calls = json.loads((run_dir / "parity" / "parity.json").read_text())["calls"]
    parity = run_dir / "parity"
    returned = sum(len(np.asarray(decode(c["result"], parity))) for c in calls)
    assert result["prediction"] and all(
        p["count"] + p["nulls"] == returned for p in result["prediction"].values()
    )
    for p in result["prediction"].values():
        if p["kind"] == "numeric":
            _assert_numeric_shape(p)
    # summaries, never rows: no list longer than the bins, no more than 50 values a column
    for path, item in _walk(result):
        if isinstance(item, list):
            assert len(item) <= 10, path
        if path.endswith("/values"):
            assert len(item) <= 50, path
    assert "NaN" not in (run_dir / "profile.json").read_text()


def _assert_numeric_shape(summary: dict[str, Any]) -> None:
    quantiles = [summary["quantiles"][k] for k in QUANTILE_KEYS]
    assert quantiles == sorted(quantiles)
    assert summary["min"] <= quantiles[0] and quantiles[-1] <= summary["max"]
    edges, counts = summary["bins"]["edges"], summary["bins"]["counts"]
    assert 1 <= len(edges) <= 9 and all(a < b for a, b in pairwise(edges))
    assert len(counts) == len(edges) + 1 and sum(counts) == summary["count"]


@pytest.mark.slow
def test_installed_package_carries_the_run_profile(shipped: dict) -> None:
    probe = (
        "import json, {p}; "
        "print(json.dumps({{'profile': {p}.TRAINING_PROFILE, 'info': {p}.info()['profile'], "
        "'exported': 'TRAINING_PROFILE' in {p}.__all__}}))"
    ).format(p=shipped["name"])
    result = subprocess.run(
        [str(shipped["python"]), "-c", probe],
        capture_output=True,
        text=True,
        cwd=shipped["root"],
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    recorded = json.loads((shipped["run_dir"] / "profile.json").read_text())
    assert shown["profile"] == recorded and shown["exported"]
    assert shown["info"]["rows"] == recorded["rows"]
    assert shown["info"]["columns"] == {n: c["kind"] for n, c in recorded["columns"].items()}
    where = f"import {shipped['name']}._profile as m; print(m.__file__)"
    site = subprocess.run(
        [str(shipped["python"]), "-c", where],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(site).read_text() == Path(_profile.__file__).read_text()


@pytest.mark.slow
def test_card_shows_the_profile_with_a_histogram_per_column(shipped: dict) -> None:
    package = shipped["package_dir"]
    card = (package / "README.md").read_text()
    recorded = json.loads((shipped["run_dir"] / "profile.json").read_text())
    section = card[card.index("### Training profile") : card.index("### Parameters")]
    assert f"{recorded['rows']} rows" in section
    images = []
    for group, key in (("input", "columns"), ("prediction", "prediction")):
        for name, column in recorded[key].items():
            line = next(x for x in section.splitlines() if x.startswith(f"| {group} | `{name}` |"))
            assert f"| {column['kind']} |" in line
            if column["kind"] != "text":
                images.append(line[line.index("](") + 2 : line.rindex(")")])
    assert images
    for image in images:
        assert image.startswith("profile/") and image.endswith(".svg")
        svg = ET.parse(package / image).getroot()
        assert svg.tag == "{http://www.w3.org/2000/svg}svg"
        assert svg.findall("{http://www.w3.org/2000/svg}rect")


@pytest.mark.slow
def test_sdist_holds_the_histograms(shipped: dict) -> None:
    project = shipped["root"] / "project"
    shutil.copytree(shipped["package_dir"], project)
    out = shipped["root"] / "dist"
    env = {**os.environ, "UV_CACHE_DIR": UV_CACHE}
    build = subprocess.run(
        [str(BIN / "uv"), "build", "--sdist", "--out-dir", str(out), str(project)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    with tarfile.open(next(out.glob("*.tar.gz"))) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    svgs = {str(p.relative_to(project)) for p in (project / "profile").glob("*.svg")}
    assert svgs and svgs <= names


# -- a run whose calls cannot be profiled -----------------------------------------------------
@pytest.mark.slow
def test_run_with_unprofilable_calls_succeeds_with_a_note(tmp_path: Path) -> None:
    notebook = write_notebook(
        tmp_path / "images.ipynb",
        ("data", "import numpy as np\nimages = np.arange(16.0).reshape(4, 2, 2)"),
        ("train", "w = 2.0"),
        ("inference", "def predict(batch):\n    return batch.sum(axis=(1, 2)) * w"),
        (None, "predict(images)"),
    )
    run = nbprod("run", notebook, "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(run.stdout)
    assert summary["status"] == "succeeded"
    folder = Path(summary["folder"])
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert not (folder / "profile.json").exists()
    assert any(
        n.startswith("no training profile: the input of call 1 is a 3-D array")
        for n in record["notes"]
    ), record["notes"]
    package = tmp_path / "pkg"
    extract = nbprod("extract", notebook, "--run", summary["id"], "-o", package)
    assert extract.returncode == 0, extract.stdout + extract.stderr
    shown = subprocess.run(
        [sys.executable, "-c", "import images; print(images.TRAINING_PROFILE)"],
        capture_output=True,
        text=True,
        cwd=package,
        env={**os.environ, "PYTHONPATH": str(package / "src")},
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "None"
    assert "The run recorded no training profile" in (package / "README.md").read_text()
    assert not (package / "profile").exists()
