"""The training profile: what the notebook predicted on and what it got back, summarised.

When a run ends, the first argument of each call recorded for the parity test (what
the input schema describes) and each call's result are summarised per column: for a
number its quantiles, fixed histogram bins, min/max, mean/std and null rate; for a
label or short text its value frequencies. The profile holds summaries, never rows.
A generated package carries it (``TRAINING_PROFILE``) and its drift checks bin
production values with the very edges and rule training used (``bin_counts``).

Copied into every generated package as ``_profile.py``: it imports only the standard
library, numpy and pandas. The format is a contract with those drift checks:
``FORMAT`` changes when it does.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

FORMAT = 1
QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
# Histogram edges: the distinct deciles of the training values, so each bin held about
# a tenth of them and a shift in production shows in every part of the range.
EDGE_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# Labels and short texts keep this many most frequent values; the rest are summed.
MAX_VALUES = 50


class Unprofilable(TypeError):
    """A value the profile cannot summarise as columns (a 3-D array, an object, ...)."""


def profile(inputs: Iterable[Any], predictions: Iterable[Any], source: str) -> dict[str, Any]:
    """The profile of the inputs of some calls and of what they returned.

    ``inputs``: each call's first argument; ``predictions``: each call's result; both
    concatenated across calls. ``source`` says what was profiled. Raises
    ``Unprofilable`` naming the call whose value cannot be read as columns.
    """
    frame = _concat([_table(v, _INPUT, f"the input of call {i + 1}") for i, v in enumerate(inputs)])
    predicted = _concat(
        [_table(v, _PREDICTION, f"the result of call {i + 1}") for i, v in enumerate(predictions)]
    )
    return {
        "format": FORMAT,
        "rows": len(frame),
        "source": source,
        "columns": {name: profile_column(frame[name]) for name in frame.columns},
        "prediction": {
            name: profile_column(predicted[name], labels=True) for name in predicted.columns
        },
    }


def from_parity(record: dict[str, Any], decode: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """The profile of a parity record (``parity.json``: its ``entry`` and ``calls``),
    each stored value rebuilt by ``decode`` (``values.decode`` bound to its folder)."""
    calls = record["calls"]
    inputs = []
    for call in calls:
        arguments = [*call["args"], *call["kwargs"].values()]
        if arguments:  # the argument the input schema describes
            inputs.append(decode(arguments[0]))
    predictions = [decode(call["result"]) for call in calls]
    plural = "" if len(calls) == 1 else "s"
    return profile(
        inputs, predictions, f"{len(calls)} recorded call{plural} of {record['entry']}()"
    )


def column_kind(series: pd.Series) -> str:
    """``"numeric"``, ``"categorical"`` (at most ``MAX_VALUES`` distinct values, or many
    repeated ones) or ``"text"`` (more than ``MAX_VALUES`` distinct, mostly unique)."""
    if _is_numeric(series):
        return "numeric"
    return _categories(series)[0]


def profile_column(series: pd.Series, labels: bool = False) -> dict[str, Any]:
    """The summary of one column (nulls: NaN, None, NA, NaT; ±inf are values). With
    ``labels`` (a prediction), integers with at most ``MAX_VALUES`` distinct values are
    class labels: their frequencies, not their quantiles."""
    nulls = int(series.isna().sum())
    count = len(series) - nulls
    head = {
        "dtype": str(series.dtype),
        "count": count,
        "nulls": nulls,
        "null_rate": nulls / len(series) if len(series) else 0.0,
    }
    if _is_numeric(series) and not (labels and _is_label(series)):
        return {"kind": "numeric", **head, **_numbers(series)}
    kind, items = _categories(series)
    if kind == "text":
        return {"kind": kind, **head, "distinct": len(items)}
    kept = dict(items[:MAX_VALUES])
    return {"kind": kind, **head, "values": kept, "other": count - sum(kept.values())}


def bin_counts(values: Any, edges: Sequence[float]) -> list[int]:
    """How many of ``values`` fall in each bin of ``edges`` (nulls, and values that are
    not numbers, dropped): ``c0`` counts values <= e1, ``ci`` e_i < v <= e_(i+1), ``cm``
    values > em: ``numpy.bincount(numpy.searchsorted(edges, values), minlength=m+1)``."""
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values).ravel())
    numbers = pd.to_numeric(series, errors="coerce").dropna().to_numpy(dtype="float64")
    bounds = np.asarray(edges, dtype="float64")
    counts = np.bincount(np.searchsorted(bounds, numbers, side="left"), minlength=len(bounds) + 1)
    return [int(c) for c in counts]


# -- columns --------------------------------------------------------------------------
def _is_numeric(series: pd.Series) -> bool:
    dtype = series.dtype
    return (
        pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
        and not pd.api.types.is_complex_dtype(dtype)
    )


def _is_label(series: pd.Series) -> bool:
    return pd.api.types.is_integer_dtype(series.dtype) and series.nunique() <= MAX_VALUES


def _numbers(series: pd.Series) -> dict[str, Any]:
    values = series.dropna().to_numpy(dtype="float64")
    if not len(values):
        return {
            **dict.fromkeys(("min", "max", "mean", "std")),
            "quantiles": dict.fromkeys(map(str, QUANTILES)),
            "bins": {"edges": [], "counts": [0]},
        }
    with np.errstate(all="ignore"):  # inf - inf is NaN: said as null
        mean, std = values.mean(), values.std()
    edges = [float(e) for e in np.unique(_quantiles(values, EDGE_QUANTILES))]
    quantiles = _quantiles(values, QUANTILES)
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": _plain(mean),
        "std": _plain(std),
        "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
        "bins": {"edges": edges, "counts": bin_counts(values, edges)},
    }


def _quantiles(values: np.ndarray, at: Sequence[float]) -> np.ndarray:
    """Linear quantiles; between two equal infinities (which interpolate to NaN) the
    lower value, that infinity."""
    with np.errstate(all="ignore"):
        result = np.quantile(values, at)
        lost = np.isnan(result)
        if lost.any():
            result[lost] = np.quantile(values, np.asarray(at)[lost], method="lower")
    return np.asarray(result, dtype="float64")


def _categories(series: pd.Series) -> tuple[str, list[tuple[str, int]]]:
    """The kind of a column that is not numeric and its values by frequency (then by
    text, so that the profile is the same each run), as text."""
    present = series.dropna()
    text = pd.Series(present.to_numpy(dtype=object), dtype=object).map(str)
    counts = text.value_counts(sort=False)
    items = sorted(((str(k), int(n)) for k, n in counts.items()), key=lambda kv: (-kv[1], kv[0]))
    mostly_unique = len(items) * 2 > len(present)
    return ("text" if len(items) > MAX_VALUES and mostly_unique else "categorical"), items


def _plain(value: Any) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


# -- values as columns ----------------------------------------------------------------
@dataclass(frozen=True)
class _Names:
    """How the columns of a value that has no column names are named."""

    series: str  # a Series without a name
    single: str  # a 1-D array, a list, one value
    prefix: str  # column i of a 2-D array


_INPUT = _Names("value", "x0", "x")
_PREDICTION = _Names("prediction", "prediction", "prediction_")


def _table(value: Any, names: _Names, what: str) -> pd.DataFrame:
    """``value`` as a frame of named columns: a DataFrame by its columns, a dict of
    scalars (or a list of them: records) by key, a Series or a 1-D array as one column,
    a 2-D array as one column per position, a single value as one row."""
    if isinstance(value, pd.DataFrame):
        frame = value.reset_index(drop=True)
        frame.columns = pd.Index([str(c) for c in value.columns])
    elif isinstance(value, pd.Series):
        name = names.series if value.name is None else str(value.name)
        frame = pd.DataFrame({name: value.reset_index(drop=True)})
    elif isinstance(value, dict):
        frame = _records([value], what)
    elif isinstance(value, list | tuple) and value and all(isinstance(v, dict) for v in value):
        frame = _records(list(value), what)
    else:
        frame = _array_table(value, names, what)
    if frame.columns.duplicated().any():
        raise Unprofilable(f"{what} has two columns of the same name")
    return frame


def _records(rows: list[dict[Any, Any]], what: str) -> pd.DataFrame:
    if not all(pd.api.types.is_scalar(v) for row in rows for v in row.values()):
        raise Unprofilable(f"{what} is a dict whose values are not all single values")
    return pd.DataFrame([{str(k): v for k, v in row.items()} for row in rows])


def _array_table(value: Any, names: _Names, what: str) -> pd.DataFrame:
    if not (isinstance(value, np.ndarray | list | tuple) or pd.api.types.is_scalar(value)):
        raise Unprofilable(f"{what} is a {type(value).__name__}, not a table, array or value")
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged nested lists
        raise Unprofilable(f"{what} is not a table or an array: {error}") from None
    if array.dtype.hasobject and not all(pd.api.types.is_scalar(v) for v in array.ravel()):
        raise Unprofilable(f"{what} holds values that are not single values")
    if array.ndim > 2:
        raise Unprofilable(f"{what} is a {array.ndim}-D array: only 1-D and 2-D ones are profiled")
    if array.ndim < 2:
        return pd.DataFrame({names.single: array.reshape(-1)})
    return pd.DataFrame({f"{names.prefix}{i}": array[:, i] for i in range(array.shape[1])})


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame()
    with warnings.catch_warnings():  # a column some calls lack is all-NA in theirs: nulls
        warnings.simplefilter("ignore", FutureWarning)
        return pd.concat(frames, ignore_index=True)
