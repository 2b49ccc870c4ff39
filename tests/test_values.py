"""Recorded values survive storage exactly, without pickle; the parity rule is strict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nbprod.runtime.values import UnsupportedValue, assert_same, decode, encode


def round_trip(value: Any, folder: Path) -> Any:
    return decode(encode(value, folder, "v"), folder)


@pytest.mark.parametrize(
    "value",
    [
        pd.DataFrame({"a": [1.1, 2.2], "b": ["x", "y"], "c": [True, False]}),
        pd.DataFrame({0: [1, 2], 1: [3, 4]}),
        pd.DataFrame({"band": pd.Categorical(["s", "m", "s"], categories=["s", "m", "l"])}),
        pd.DataFrame({"t": pd.to_datetime(["2024-01-01", "2024-06-30"])}, index=[10, 20]),
        np.array([0.1, 0.2, 1 / 3]),
        np.array([[1, 2], [3, 4]], dtype=np.int32),
        np.array(["setosa", "virginica"], dtype=object),
        np.float64(0.1),
        3,
        "label",
        None,
        [1, 2.5, "x"],
        (np.array([1, 2]), 0.5),
        {"proba": np.array([0.25, 0.75]), "label": "b"},
    ],
    ids=lambda v: type(v).__name__,
)
def test_round_trip_is_exact(value: Any, tmp_path: Path) -> None:
    back = round_trip(value, tmp_path)
    assert_same(back, value)
    assert type(back) is type(value)


def test_series_keeps_name_and_index(tmp_path: Path) -> None:
    series = pd.Series([1.5, 2.5], index=["a", "b"], name="score")
    back = round_trip(series, tmp_path)
    pd.testing.assert_series_equal(back, series)


def test_arrays_are_stored_without_pickle(tmp_path: Path) -> None:
    encode(np.arange(3), tmp_path, "v")
    np.load(tmp_path / "v.npy", allow_pickle=False)


def test_objects_that_need_pickle_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedValue, match="without pickle"):
        encode(object(), tmp_path, "v")


def test_floats_match_to_relative_1e_9() -> None:
    assert_same(np.array([1.0 + 1e-12]), np.array([1.0]))
    with pytest.raises(AssertionError):
        assert_same(np.array([1.0 + 1e-6]), np.array([1.0]))
    assert_same(0.3, 0.1 + 0.2)
    with pytest.raises(AssertionError, match="relative tolerance"):
        assert_same(0.30001, 0.3)


def test_labels_and_integers_match_exactly() -> None:
    with pytest.raises(AssertionError):
        assert_same(np.array([0, 1, 1]), np.array([0, 1, 2]))
    with pytest.raises(AssertionError):
        assert_same(np.array(["a", "b"], dtype=object), np.array(["a", "c"], dtype=object))
    with pytest.raises(AssertionError, match="shape"):
        assert_same(np.array([1, 2]), np.array([1, 2, 3]))


def test_frames_compare_columns_and_dtypes() -> None:
    expected = pd.DataFrame({"p": [0.5, 0.25]})
    assert_same(pd.DataFrame({"p": [0.5, 0.25 + 1e-15]}), expected)
    with pytest.raises(AssertionError):
        assert_same(pd.DataFrame({"q": [0.5, 0.25]}), expected)
    with pytest.raises(AssertionError, match="expected a DataFrame"):
        assert_same(np.array([0.5, 0.25]), expected)


@pytest.mark.parametrize("rtol", [1e-9, 1e-4])
def test_integers_in_frames_and_series_match_exactly_whatever_the_float_tolerance(
    rtol: float,
) -> None:
    expected = pd.DataFrame({"ppb": [1_000_000_000, 2], "p": [0.5, 0.25]})
    close_floats = pd.DataFrame({"ppb": [1_000_000_000, 2], "p": [0.5, 0.25 * (1 + rtol / 10)]})
    assert_same(close_floats, expected, rtol=rtol)
    with pytest.raises(AssertionError, match="ppb"):
        assert_same(
            pd.DataFrame({"ppb": [1_000_000_001, 2], "p": [0.5, 0.25]}), expected, rtol=rtol
        )
    with pytest.raises(AssertionError):
        assert_same(pd.Series([1_000_000_001]), pd.Series([1_000_000_000]), rtol=rtol)
    assert_same(pd.Series([1.0 + rtol / 10]), pd.Series([1.0]), rtol=rtol)
