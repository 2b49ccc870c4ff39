"""Store and compare the values a notebook passed to and got back from its model.

Data frames and series go to Parquet, arrays to ``.npy`` without pickle, plain
Python values to JSON; nothing is ever unpickled. ``assert_same`` is the parity
rule: labels and integers must match exactly, floats to a relative 1e-9.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

RTOL = 1e-9


class UnsupportedValue(TypeError):
    """A value nbprod cannot store without pickle."""


def encode(value: Any, folder: Path, stem: str) -> dict[str, Any]:
    """Write ``value`` under ``folder`` (files named from ``stem``); return its descriptor."""
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(value, pd.DataFrame):
        file = f"{stem}.parquet"
        frame, columns = _string_columns(value)
        frame.to_parquet(folder / file)
        return {"kind": "dataframe", "file": file, "columns": columns}
    if isinstance(value, pd.Series):
        file = f"{stem}.parquet"
        value.to_frame(name="values").to_parquet(folder / file)
        return {"kind": "series", "file": file, "name": _json_name(value.name)}
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return {"kind": "object_array", "items": _plain(value.tolist()), "shape": value.shape}
        file = f"{stem}.npy"
        np.save(folder / file, value, allow_pickle=False)
        return {"kind": "ndarray", "file": file}
    if isinstance(value, np.generic):
        return {"kind": "scalar", "dtype": value.dtype.str, "value": _plain(value.item())}
    if isinstance(value, list | tuple):
        listed = [encode(v, folder, f"{stem}_{i}") for i, v in enumerate(value)]
        return {"kind": type(value).__name__, "items": listed}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        mapped = {k: encode(v, folder, f"{stem}_{i}") for i, (k, v) in enumerate(value.items())}
        return {"kind": "dict", "items": mapped}
    return {"kind": "json", "value": _plain(value)}


def decode(descriptor: dict[str, Any], folder: Path) -> Any:
    """The value ``encode`` stored, rebuilt without pickle."""
    kind = descriptor["kind"]
    if kind == "dataframe":
        frame = pd.read_parquet(folder / descriptor["file"])
        frame.columns = pd.Index([_from_json_name(c) for c in descriptor["columns"]])
        return frame
    if kind == "series":
        series = pd.read_parquet(folder / descriptor["file"]).iloc[:, 0]
        series.name = _from_json_name(descriptor["name"])
        return series
    if kind == "ndarray":
        return np.load(folder / descriptor["file"], allow_pickle=False)
    if kind == "object_array":
        shape = tuple(descriptor["shape"])
        if len(shape) == 1:
            array = np.empty(shape[0], dtype=object)
            array[:] = descriptor["items"]
            return array
        return np.array(descriptor["items"], dtype=object).reshape(shape)
    if kind == "scalar":
        return np.dtype(descriptor["dtype"]).type(descriptor["value"])
    if kind in ("list", "tuple"):
        items = [decode(item, folder) for item in descriptor["items"]]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {k: decode(v, folder) for k, v in descriptor["items"].items()}
    if kind == "json":
        return descriptor["value"]
    raise UnsupportedValue(f"unknown stored value kind {kind!r}")


def assert_same(
    actual: Any, expected: Any, where: str = "value", rtol: float = RTOL, atol: float = 0.0
) -> None:
    """Raise AssertionError naming ``where`` unless the two values match under the parity
    rule: labels and integers exactly, floats within ``rtol`` (and ``atol``)."""
    if isinstance(expected, pd.DataFrame):
        _expect_type(actual, pd.DataFrame, where)
        pd.testing.assert_frame_equal(actual, expected, check_exact=False, rtol=rtol, atol=atol)
        for i in range(expected.shape[1]):  # pandas would compare integers within rtol too
            if expected.dtypes.iloc[i].kind not in "fc":
                pd.testing.assert_series_equal(
                    actual.iloc[:, i],
                    expected.iloc[:, i],
                    check_exact=True,
                    obj=f"{where}, column {expected.columns[i]!r},",
                )
    elif isinstance(expected, pd.Series):
        _expect_type(actual, pd.Series, where)
        pd.testing.assert_series_equal(
            actual,
            expected,
            check_exact=expected.dtype.kind not in "fc",
            rtol=rtol,
            atol=atol,
            check_names=False,
        )
    elif isinstance(expected, np.ndarray):
        actual_array = np.asarray(actual)
        if actual_array.shape != expected.shape:
            raise AssertionError(f"{where}: shape {actual_array.shape} != {expected.shape}")
        if expected.dtype.kind in "fc" and actual_array.dtype.kind in "fc":
            np.testing.assert_allclose(actual_array, expected, rtol=rtol, atol=atol, err_msg=where)
        else:
            np.testing.assert_array_equal(actual_array, expected, err_msg=where, strict=False)
    elif isinstance(expected, list | tuple) and not isinstance(actual, str):
        actual_items = list(actual)
        if len(actual_items) != len(expected):
            raise AssertionError(f"{where}: length {len(actual_items)} != {len(expected)}")
        for i, (a, e) in enumerate(zip(actual_items, expected, strict=True)):
            assert_same(a, e, f"{where}[{i}]", rtol, atol)
    elif isinstance(expected, dict):
        if set(actual) != set(expected):
            raise AssertionError(f"{where}: keys {sorted(actual)} != {sorted(expected)}")
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}[{key!r}]", rtol, atol)
    elif isinstance(expected, float | np.floating) and not isinstance(expected, bool):
        if not (
            math.isclose(float(actual), float(expected), rel_tol=rtol, abs_tol=atol)
            or (math.isnan(float(actual)) and math.isnan(float(expected)))
        ):
            raise AssertionError(
                f"{where}: {actual!r} != {expected!r} (relative tolerance {rtol:g}, "
                f"absolute {atol:g})"
            )
    elif actual != expected:
        raise AssertionError(f"{where}: {actual!r} != {expected!r}")


def _expect_type(actual: Any, kind: type, where: str) -> None:
    if not isinstance(actual, kind):
        raise AssertionError(f"{where}: expected a {kind.__name__}, got {type(actual).__name__}")


def _string_columns(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Any]]:
    """Parquet needs string column names; keep the originals beside the file."""
    columns = [_json_name(c) for c in frame.columns]
    out = frame.copy(deep=False)
    out.columns = pd.Index([f"c{i}:{c}" for i, c in enumerate(frame.columns)])
    return out, columns


def _json_name(name: Any) -> Any:
    if isinstance(name, np.generic):
        name = name.item()
    if name is None or isinstance(name, str | int | float | bool):
        return name
    return str(name)


def _from_json_name(name: Any) -> Any:
    return name


def _plain(value: Any) -> Any:
    """Check a value survives JSON exactly; refuse what would be pickled elsewhere."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as error:
        raise UnsupportedValue(
            f"cannot store a {type(value).__name__} without pickle: {error}"
        ) from error
    if json.loads(text) != value and value == value:
        raise UnsupportedValue(f"a {type(value).__name__} does not survive JSON unchanged")
    return value
