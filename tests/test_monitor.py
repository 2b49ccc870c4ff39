"""``<pkg> monitor`` and ``nbprod monitor``: prediction logs against the training profile.

The statistics and verdicts on synthetic profiles (built with the real profile code) and
logs; the logs read from Parquet and from an Arrow stream torn by a crash; thresholds
from the notebook's metadata; the package's command in a clean venv (exit 0, 3, 2) on
logs made from the wine example's own data; ``nbprod monitor`` on the package folder
and on its wheel; the HTML report in the real headless Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from paths import EXAMPLES, ROOT
from scipy import stats
from tools import nbprod, shared_example

from nbprod.exceptions import NotebookFileError
from nbprod.notebook import MONITOR_THRESHOLDS, notebook_from_json
from nbprod.runtime import _profile
from nbprod.runtime._monitor_drift import chi_square_sf, ks_p
from nbprod.runtime.monitor import DEFAULTS, drift_report, parse_time, read_logs

NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
CHROMIUM = Path("/usr/bin/chromium")


# -- synthetic data -------------------------------------------------------------------------
def records(seed: int, n: int, *, shift: float = 0.0, rare: float = 0.10) -> pd.DataFrame:
    """Inputs of a model: three normal columns, a count, a label whose rarest value has
    the share ``rare``, a free text."""
    rng = np.random.default_rng(seed)
    shares = [share * (1 - rare) / 0.95 for share in (0.5, 0.3, 0.15)] + [rare]
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(3)})
    frame["x0"] += shift
    frame["visits"] = rng.poisson(3, size=n)
    frame["plan"] = rng.choice(["basic", "plus", "pro", "team"], size=n, p=shares)
    frame["note"] = [f"note {i} {seed}" for i in range(n)]
    return frame


def model(frame: pd.DataFrame) -> np.ndarray:
    return (frame["x1"].fillna(0) > 0).astype("int64").to_numpy()


@pytest.fixture(scope="module")
def profile() -> dict[str, Any]:
    train = records(0, 2000)
    return _profile.profile([train], [model(train)], "2000 synthetic rows")


def log_frame(inputs: pd.DataFrame, start: datetime = NOW, rejected: int = 0) -> pd.DataFrame:
    """``inputs`` as the server logs them, a minute apart, then ``rejected`` refusals."""
    n = len(inputs)
    frame = inputs.add_prefix("in.").reset_index(drop=True)
    frame.insert(0, "source", "serve")
    frame.insert(0, "rejected_field", pd.Series([None] * n, dtype=object))
    frame.insert(0, "status", np.full(n, 200, dtype="int16"))
    frame.insert(0, "latency_ms", np.full(n, 2.5))
    frame.insert(0, "timestamp", pd.date_range(start, periods=n, freq="min", tz="UTC"))
    frame.insert(0, "request_id", [f"r{i}" for i in range(n)])
    frame["out.prediction"] = model(inputs)
    if rejected:
        refused = pd.DataFrame(
            {
                "request_id": [f"x{i}" for i in range(rejected)],
                "timestamp": pd.date_range(start, periods=rejected, freq="s", tz="UTC"),
                "latency_ms": 0.5,
                "status": np.full(rejected, 422, dtype="int16"),
                "rejected_field": ["x2" if i % 3 else "plan" for i in range(rejected)],
                "source": "serve",
            }
        )
        frame = pd.concat([frame, refused], ignore_index=True)
    return frame


def verdicts(report: Any) -> dict[str, str]:
    return {column.name: column.verdict for column in report.columns}


# -- verdicts -------------------------------------------------------------------------------
def test_unchanged_data_drifts_nowhere(profile: dict[str, Any]) -> None:
    alarms = [drift_report(log_frame(records(s, 1000)), profile, {}) for s in range(1, 21)]
    assert [r.drifted_columns for r in alarms if r.drifted] == []
    report = alarms[0]
    assert [(c.name, c.role, c.kind) for c in report.columns] == [
        ("x0", "input", "numeric"),
        ("x1", "input", "numeric"),
        ("x2", "input", "numeric"),
        ("visits", "input", "numeric"),
        ("plan", "input", "categorical"),
        ("note", "input", "text"),
        ("prediction", "prediction", "categorical"),  # integer labels: their frequencies
    ]
    names = {c.name: [check.name for check in c.checks] for c in report.columns}
    assert names["x0"] == ["psi", "ks", "out_of_range", "null_rate"]
    assert names["visits"] == ["psi", "out_of_range", "null_rate"]  # ties: no KS
    assert names["plan"] == ["js", "unseen", "null_rate"]
    assert names["note"] == ["null_rate"]
    text = str(report)
    assert "no drift" in text
    assert "psi" in text and "0.2" in text and "js" in text and "0.05" in text


@pytest.mark.parametrize(
    ("change", "column", "check"),
    [
        ("shift", "x0", "ks"),
        ("rare doubles", "plan", "js"),
        ("nulls", "x2", "null_rate"),
        ("prediction", "prediction", "js"),
    ],
)
def test_each_kind_of_change_is_flagged_and_named(
    profile: dict[str, Any], change: str, column: str, check: str
) -> None:
    for seed in range(1, 11):
        inputs = records(
            seed,
            1000,
            shift=0.5 if change == "shift" else 0.0,
            rare=0.20 if change == "rare doubles" else 0.10,
        )
        if change == "nulls":
            inputs.loc[np.random.default_rng(seed).random(1000) < 0.2, "x2"] = np.nan
        logs = log_frame(inputs)
        if change == "prediction":
            logs["out.prediction"] = (inputs["x1"] > -1).astype("int64")
        report = drift_report(logs, profile, {})
        assert report.drifted_columns == [column], (seed, str(report))
        fired = next(c for c in report.columns if c.name == column)
        assert check in [c.name for c in fired.checks if c.drifted], str(report)
        assert f"DRIFT: {check}" in str(report) or f"; {check}" in str(report)


def test_values_out_of_range_and_unseen_categories_are_reported(profile: dict[str, Any]) -> None:
    inputs = records(3, 1000)
    inputs.loc[:99, "x1"] = 50.0
    inputs.loc[:149, "plan"] = "enterprise"
    report = drift_report(log_frame(inputs), profile, {})
    x1 = next(c for c in report.columns if c.name == "x1")
    plan = next(c for c in report.columns if c.name == "plan")
    assert x1.outside_range == pytest.approx(0.1, abs=0.005)
    assert "out_of_range" in x1.verdict
    assert plan.unseen == {"enterprise": 150}
    assert "unseen" in plan.verdict and "enterprise" in plan.buckets
    assert {"x1", "plan"} <= set(report.drifted_columns)


def test_thresholds_from_the_metadata_are_used_and_printed(profile: dict[str, Any]) -> None:
    shifted = log_frame(records(4, 1000, shift=0.5))
    loose = {"defaults": {"null_rate": 0.5}, "columns": {"x0": {"psi": 9, "ks": 0.9}}}
    report = drift_report(shifted, profile, loose)
    assert not report.drifted, str(report)
    x0 = next(c for c in report.columns if c.name == "x0")
    assert {c.name: c.threshold for c in x0.checks}["ks"] == 0.9
    assert "psi" in str(report) and " 9 " in str(report)
    strict = {"columns": {"x1": {"psi": 0.0001, "p_value": 1.0}}}
    report = drift_report(log_frame(records(4, 1000)), profile, strict)
    assert report.drifted_columns == ["x1"]
    assert "psi" in str(report) and "> 0.0001" in str(report)
    with pytest.raises(ValueError, match="unknown threshold 'psy'"):
        drift_report(shifted, profile, {"defaults": {"psy": 0.1}})


def test_rejections_are_counted_by_field(profile: dict[str, Any]) -> None:
    report = drift_report(log_frame(records(5, 300), rejected=30), profile, {})
    assert report.requests == 330
    assert report.rejections == {"x2": 20, "plan": 10}
    assert report.drifted and report.drifted_columns == []
    assert "rejections" in str(report) and "x2: 20" in str(report)
    quiet = drift_report(log_frame(records(5, 300), rejected=3), profile, {})
    assert not quiet.drifted and quiet.rejections == {"x2": 2, "plan": 1}


def test_since_and_until_pick_the_records_of_a_window(profile: dict[str, Any]) -> None:
    before = log_frame(records(6, 500, shift=2.0), start=NOW - timedelta(days=3))
    recent = log_frame(records(7, 500), start=NOW - timedelta(hours=10))
    logs = pd.concat([before, recent], ignore_index=True)
    assert drift_report(logs, profile, {}).drifted
    since = (NOW - timedelta(hours=24)).isoformat()
    report = drift_report(logs, profile, {}, since=since)
    assert report.requests == 500 and not report.drifted, str(report)
    report = drift_report(logs, profile, {}, until=NOW - timedelta(days=1))
    assert report.requests == 500 and report.drifted_columns == ["x0"]


def test_times_are_read_generously_and_refused_clearly() -> None:
    assert parse_time("24h", NOW) == NOW - timedelta(hours=24)
    assert parse_time("7d", NOW) == NOW - timedelta(days=7)
    assert parse_time("90 minutes ago", NOW) == NOW - timedelta(minutes=90)
    assert parse_time("2024-05-01", NOW) == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_time("2024-05-01T12:00+02:00", NOW) == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_time("yesterday", NOW) == datetime(2024, 5, 9, tzinfo=UTC)
    for bad in ("soon", "7 fortnights", "2024-13-01", ""):
        with pytest.raises(ValueError, match="is not a time"):
            parse_time(bad, NOW)


def test_a_plain_frame_of_inputs_is_compared_too(profile: dict[str, Any]) -> None:
    inputs = records(8, 1000, shift=0.5)
    report = drift_report(inputs, profile, {})
    assert report.drifted_columns == ["x0"]
    assert [c.name for c in report.columns][-1] == "note"  # no predictions given
    report = drift_report(log_frame(inputs).drop(columns=["in.x1"]), profile, {})
    assert report.drifted_columns == ["x0", "x1"]  # a logged column went missing
    assert "DRIFT: not in the logs" in str(report)


def test_the_p_values_match_scipy() -> None:
    for x, df in [(0.5, 1), (3.0, 2), (10.0, 4), (50.0, 9), (200.0, 49), (30.0, 30)]:
        assert chi_square_sf(x, df) == pytest.approx(stats.chi2.sf(x, df), rel=1e-9)
    for distance, n in [(0.05, 500), (0.1, 100), (0.2, 57), (0.3, 1000)]:
        assert ks_p(distance, n) == pytest.approx(stats.kstwo.sf(distance, n), rel=0.05, abs=1e-12)


def test_the_notebook_names_the_same_thresholds_as_the_monitor() -> None:
    assert set(MONITOR_THRESHOLDS) == set(DEFAULTS)


def notebook(monitor: Any) -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"nbprod": {"monitor": monitor}},
        "cells": [],
    }


def test_monitor_settings_are_read_from_the_metadata() -> None:
    wanted = {"defaults": {"psi": 0.25}, "columns": {"alcohol": {"psi": 0.1, "null_rate": 0.01}}}
    assert notebook_from_json(notebook(wanted), "a.ipynb").settings.monitor == wanted
    assert notebook_from_json(notebook(None), "a.ipynb").settings.monitor == {}
    for bad, named in [
        ({"default": {}}, "unknown key 'default'"),
        ({"defaults": {"psy": 1}}, "unknown threshold 'psy'"),
        ({"columns": {"age": {"psi": "high"}}}, r"columns.age.psi must be a number"),
        ({"columns": ["age"]}, "monitor.columns must be an object"),
        ([1], "monitor must be an object"),
    ]:
        with pytest.raises(NotebookFileError, match=named):
            notebook_from_json(notebook(bad), "a.ipynb")


# -- log files ------------------------------------------------------------------------------
def test_logs_are_read_from_folders_and_a_torn_stream(
    profile: dict[str, Any], tmp_path: Path
) -> None:
    day1 = tmp_path / "logs" / "2024-05-09"
    day1.mkdir(parents=True)
    logs = log_frame(records(9, 900))
    pq.write_table(pa.Table.from_pandas(logs.iloc[:300], preserve_index=False), day1 / "a.parquet")
    live = tmp_path / "logs" / "live.arrows"
    table = pa.Table.from_pandas(logs.iloc[300:], preserve_index=False)
    with pa.OSFile(str(live), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        for start in (0, 200, 400):
            writer.write_batch(table.slice(start, 200).to_batches()[0])
    whole = live.read_bytes()
    live.write_bytes(whole[: len(whole) - 500 - 8])  # the last batch torn, no end marker
    (tmp_path / "logs" / "notes.txt").write_text("not a log")
    frame = read_logs([day1 / "a.parquet", live])
    assert len(frame) == 300 + 400
    report = drift_report([tmp_path / "logs"], profile, {})
    assert report.requests == 700 and not report.drifted, str(report)
    assert report.columns[0].rows == 700
    with pytest.raises(FileNotFoundError, match="no such file"):
        drift_report([tmp_path / "nowhere"], profile, {})
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \*.parquet or \*.arrows"):
        drift_report([tmp_path / "empty"], profile, {})


# -- the HTML report ------------------------------------------------------------------------
def test_the_html_report_is_one_self_contained_file(profile: dict[str, Any]) -> None:
    inputs = records(10, 1000, shift=0.5)
    inputs.loc[:99, "plan"] = "<script>alert(1)</script>"
    html = drift_report(log_frame(inputs, rejected=4), profile, {}).to_html()
    assert html.startswith("<!doctype html>")
    for fetched in ("<script", "src=", "@import", "url(", "<link"):
        assert fetched not in html
    assert "&lt;script&gt;" in html
    assert html.count("<svg") == 6  # every column with a distribution
    assert "DRIFT" in html and "x0" in html and "schema rejections" in html


def screenshot_report(html: Path, shot: Path, height: int = 0) -> tuple[str, list[str]]:
    """Open ``html`` in headless Chromium; its text, the URLs it requested; a screenshot
    saved to ``shot``: of the whole page, or of its first ``height`` pixels."""
    from playwright.sync_api import sync_playwright
    from test_lab_browser import CHROMIUM_ARGS

    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1120, "height": height or 900})
            page.on("request", lambda request: requested.append(request.url))
            page.goto(html.as_uri())
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(shot), full_page=not height)
            text = page.inner_text("body")
        finally:
            browser.close()
    return text, requested


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_the_html_report_renders_in_chromium_without_the_network(
    profile: dict[str, Any], tmp_path: Path
) -> None:
    inputs = records(11, 1000, shift=0.5)
    inputs.loc[:199, "x2"] = np.nan
    page = tmp_path / "report.html"
    page.write_text(drift_report(log_frame(inputs), profile, {}).to_html(), encoding="utf-8")
    text, requested = screenshot_report(page, tmp_path / "report.png")
    assert requested == [page.as_uri()]
    assert "Drift report" in text and "DRIFT: x0, x2" in text
    for column in ("x0", "x1", "x2", "visits", "plan", "note", "prediction"):
        assert column in text
    assert_png(tmp_path / "report.png")


# -- the package's command, in a clean venv -------------------------------------------------
@pytest.fixture(scope="module")
def wine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The wine example extracted and installed, and logs made from its own data: as it
    is, and shifted (a harvest with more alcohol, a lab that stopped measuring colour)."""
    example = shared_example("wine_forest", tmp_path_factory)
    data = pd.read_csv(EXAMPLES / "data" / "wine.csv")
    inputs = data.drop(columns=["target"])
    root = example["root"]
    for name, frame in (("same", inputs), ("shifted", shifted_wine(inputs))):
        logs = log_frame_of(frame, data["target"])
        folder = root / name
        folder.mkdir()
        pq.write_table(pa.Table.from_pandas(logs, preserve_index=False), folder / "a.parquet")
    return example


def shifted_wine(inputs: pd.DataFrame) -> pd.DataFrame:
    shifted = inputs.copy()
    shifted["alcohol"] += 1.2 * inputs["alcohol"].std()
    shifted.loc[shifted.index % 4 == 0, "color_intensity"] = np.nan
    return shifted


def log_frame_of(inputs: pd.DataFrame, predictions: pd.Series) -> pd.DataFrame:
    """Log records of the wine model; its labels stand in for its predictions (the
    forest gets nearly all of them right), so no model runs here."""
    n = len(inputs)
    frame = inputs.add_prefix("in.")
    frame.insert(0, "source", "predict")
    frame.insert(0, "rejected_field", pd.Series([None] * n, dtype=object))
    frame.insert(0, "status", np.full(n, 200, dtype="int16"))
    frame.insert(0, "latency_ms", 1.0)
    frame.insert(0, "timestamp", pd.date_range(NOW, periods=n, freq="min", tz="UTC"))
    frame.insert(0, "request_id", [f"r{i}" for i in range(n)])
    frame["out.prediction"] = predictions.to_numpy()
    return frame


def package_monitor(
    wine: dict[str, Any], *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(wine["python"]), "-m", "wine_forest", "monitor", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
def test_the_package_exits_0_on_unchanged_logs_and_3_on_drift(wine: dict[str, Any]) -> None:
    root = wine["root"]
    same = package_monitor(wine, root / "same")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "no drift" in same.stdout and "alcohol" in same.stdout
    shifted = package_monitor(wine, root / "shifted", "--html", root / "shifted.html")
    assert shifted.returncode == 3, shifted.stdout + shifted.stderr
    drifted = {line.split()[0] for line in shifted.stdout.splitlines() if "DRIFT" in line}
    assert drifted == {"alcohol", "color_intensity"}, shifted.stdout
    assert "null_rate 0.253 > 0.05" in shifted.stdout
    as_json = package_monitor(wine, root / "shifted", "--json", "--since", "2024-05-10")
    assert as_json.returncode == 3
    assert json.loads(as_json.stdout)["drifted_columns"] == ["alcohol", "color_intensity"]
    window = package_monitor(wine, root / "shifted", "--until", "2024-05-09")
    assert window.returncode == 0 and "0 logged requests" in window.stdout, window.stdout


@pytest.mark.slow
def test_the_package_exits_2_on_usage_errors(wine: dict[str, Any], tmp_path: Path) -> None:
    for args, said in [
        ((wine["root"] / "nowhere",), "no such file"),
        ((wine["root"] / "same", "--since", "last tuesday-ish"), "is not a time"),
        ((), "the following arguments are required"),
    ]:
        done = package_monitor(wine, *args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert said in done.stderr
    # The same package without a profile (as one extracted from an older run)
    copy = tmp_path / "wine_forest"
    shutil.copytree(wine["package_dir"] / "src" / "wine_forest", copy)
    (copy / "profile.json").write_text("null")
    done = package_monitor(wine, wine["root"] / "same", env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 2 and "no training profile" in done.stderr, done.stderr


@pytest.mark.slow
def test_nbprod_monitor_reads_the_package_folder_and_the_wheel(
    wine: dict[str, Any], tmp_path: Path
) -> None:
    root = wine["root"]
    folder = nbprod("monitor", wine["package_dir"], root / "same")
    assert folder.returncode == 0, folder.stdout + folder.stderr
    project = shutil.copytree(wine["package_dir"], tmp_path / "project")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", tmp_path / "dist", project],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = next((tmp_path / "dist").glob("*.whl"))
    drifted = nbprod("monitor", wheel, root / "shifted", "--json")
    assert drifted.returncode == 3, drifted.stdout + drifted.stderr
    assert json.loads(drifted.stdout)["drifted_columns"] == ["alcohol", "color_intensity"]
    missing = nbprod("monitor", tmp_path, root / "same")
    assert missing.returncode == 2 and "no profile.json" in missing.stderr


@pytest.mark.slow
def test_the_report_of_shifted_wine_in_chromium(wine: dict[str, Any], tmp_path: Path) -> None:
    """The README's screenshot (copied to docs/ with NBPROD_UPDATE_DOCS=1)."""
    page = tmp_path / "wine.html"
    done = package_monitor(wine, wine["root"] / "shifted", "--html", page)
    assert done.returncode == 3, done.stderr
    text, requested = screenshot_report(page, tmp_path / "monitor-report.png", height=1250)
    assert requested == [page.as_uri()]
    assert "DRIFT: alcohol, color_intensity" in text and "proline" in text
    assert_png(tmp_path / "monitor-report.png")
    if os.environ.get("NBPROD_UPDATE_DOCS") == "1":
        shutil.copy(tmp_path / "monitor-report.png", ROOT / "docs" / "monitor-report.png")
