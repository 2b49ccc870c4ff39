"""The input schema of a model: recorded from what the notebook passed, enforced after.

While the notebook runs, every value given to the inference entry point is
*observed*: for a data frame its columns, their dtypes and, for categorical and
low-cardinality text columns, the values seen; for an array its dtype and width.
The generated package ships that schema and ``conform()`` checks each input
against it before the model sees it, answering a missing column, a wrong type or an
empty input with a ``SchemaError`` that names the field. The schema is plain JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# Text columns with at most this many distinct values are recorded with their values.
MAX_CATEGORIES = 50


class SchemaError(ValueError):
    """An input does not match the schema; ``field`` names the column at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# -- recording ----------------------------------------------------------------------------
def observe(schema: dict[str, Any] | None, value: Any) -> dict[str, Any]:
    """``schema`` widened by one more input ``value`` (``None`` starts a new one)."""
    seen = _describe(value)
    if schema is None or schema.get("kind") != seen.get("kind"):
        return seen if schema is None else {"kind": "mixed"}
    if seen["kind"] == "dataframe":
        return _merge_frames(schema, seen)
    if seen["kind"] == "array" and seen.get("features") != schema.get("features"):
        return {**schema, "features": None}
    return schema


def _describe(value: Any) -> dict[str, Any]:
    if isinstance(value, pd.DataFrame):
        return {"kind": "dataframe", "columns": [_column(n, value[n]) for n in value.columns]}
    if isinstance(value, pd.Series):
        return {"kind": "series", "name": _plain_name(value.name), **_dtype(value)}
    if isinstance(value, np.ndarray) and value.ndim in (1, 2):
        features = int(value.shape[1]) if value.ndim == 2 else None
        return {"kind": "array", "ndim": value.ndim, "features": features, **_dtype(value)}
    return {"kind": "other", "type": type(value).__name__}


def _column(name: Any, series: pd.Series) -> dict[str, Any]:
    column = {"name": _plain_name(name), **_dtype(series), "nullable": bool(series.isna().any())}
    if isinstance(series.dtype, pd.CategoricalDtype):
        column["categories"] = [_plain(c) for c in series.dtype.categories]
    elif column["type"] == "string":
        distinct = series.dropna().unique()
        if len(distinct) <= MAX_CATEGORIES:
            column["values"] = sorted(str(v) for v in distinct)
    return column


def _dtype(values: pd.Series | np.ndarray) -> dict[str, str]:
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return {"type": "category", "dtype": "category"}
    if pd.api.types.is_bool_dtype(dtype):
        kind = "boolean"
    elif pd.api.types.is_integer_dtype(dtype):
        kind = "integer"
    elif pd.api.types.is_float_dtype(dtype):
        kind = "number"
    elif pd.api.types.is_datetime64_any_dtype(dtype):
        kind = "datetime"
    elif pd.api.types.is_string_dtype(dtype) and _all_text(values):
        kind = "string"
    else:
        kind = "other"
    return {"type": kind, "dtype": str(dtype)}


def _all_text(values: pd.Series | np.ndarray) -> bool:
    items = values.dropna() if isinstance(values, pd.Series) else values.ravel()
    return all(isinstance(v, str) for v in items)


def _merge_frames(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    new_columns = {c["name"]: c for c in new["columns"]}
    columns = []
    for column in old["columns"]:
        other = new_columns.get(column["name"])
        if other is None:
            continue  # only columns every call had are required
        merged = dict(column, nullable=column["nullable"] or other["nullable"])
        if other["dtype"] != column["dtype"]:
            merged.update(_wider(column, other))
        for key in ("categories", "values"):
            if key in column and key in other:
                union = sorted({*map(str, column[key]), *map(str, other[key])})
                if key == "values" and len(union) > MAX_CATEGORIES:
                    del merged[key]
                else:
                    merged[key] = union if key == "values" else _union(column[key], other[key])
            else:
                merged.pop(key, None)
        columns.append(merged)
    return {"kind": "dataframe", "columns": columns}


def _wider(a: dict[str, Any], b: dict[str, Any]) -> dict[str, str]:
    if {a["type"], b["type"]} <= {"integer", "number"}:
        return {"type": "number", "dtype": "float64"}
    return {"type": "other", "dtype": "object"}


def _union(a: list[Any], b: list[Any]) -> list[Any]:
    return list(dict.fromkeys([*a, *b]))


# -- enforcing ------------------------------------------------------------------------
def conform(value: Any, schema: dict[str, Any] | None) -> Any:
    """``value`` checked against ``schema``, with safe conversions, ready for the model.

    Data frames keep exactly the recorded columns, in the recorded order, with the
    recorded dtypes; lists of records and dicts of columns become data frames first.
    Raises ``SchemaError`` naming the field for a missing column, a value of the
    wrong type, or an empty input.
    """
    kind = (schema or {}).get("kind")
    if kind == "dataframe":
        assert schema is not None
        return _conform_frame(value, schema)
    if kind == "array":
        assert schema is not None
        return _conform_array(value, schema)
    return value


def frame_from_json(payload: Any, schema: dict[str, Any] | None) -> Any:
    """An input for ``conform`` from decoded JSON: records, columns, or one record.

    Accepted: ``[{"col": v, ...}, ...]``, ``{"records": [...]}``,
    ``{"columns": {"col": [v, ...]}}``, ``{"inputs": [[...], ...]}`` (arrays), or a
    single ``{"col": v, ...}`` record.
    """
    if isinstance(payload, dict):
        if "records" in payload:
            payload = payload["records"]
        elif "columns" in payload:
            columns = payload["columns"]
            if not isinstance(columns, dict):
                raise SchemaError('"columns" must map each column name to a list of values')
            lengths = {len(v) if isinstance(v, list) else 1 for v in columns.values()}
            if len(lengths) > 1:
                raise SchemaError('every list in "columns" must have the same length')
            return pd.DataFrame({k: v if isinstance(v, list) else [v] for k, v in columns.items()})
        elif "inputs" in payload:
            payload = payload["inputs"]
        elif (schema or {}).get("kind") == "dataframe":
            payload = [payload]
    if (schema or {}).get("kind") == "array":
        return payload
    if not isinstance(payload, list):
        raise SchemaError(
            'expected a JSON list of records, {"records": [...]} or {"columns": {...}}'
        )
    if payload and not all(isinstance(r, dict) for r in payload):
        raise SchemaError("every record must be a JSON object of column: value")
    return pd.DataFrame.from_records(payload)


def _conform_frame(value: Any, schema: dict[str, Any]) -> pd.DataFrame:
    columns: list[dict[str, Any]] = schema["columns"]
    names = [c["name"] for c in columns]
    if isinstance(value, list) and all(isinstance(r, dict) for r in value):
        value = pd.DataFrame.from_records(value)
    elif isinstance(value, dict):
        value = pd.DataFrame(value)
    if not isinstance(value, pd.DataFrame):
        raise SchemaError(
            f"expected a table with columns {_listing(names)}, got {type(value).__name__}"
        )
    if len(value) == 0:
        raise SchemaError("the input has no rows; send at least one record")
    columns_index, dtypes = _compiled(schema)
    if value.columns.equals(columns_index) and _dtypes(value) == dtypes:
        return value  # the fast path: exactly what the notebook passed
    # JSON keys are text: a column recorded as 0 arrives as "0"
    text_names = {str(n): n for n in names if not isinstance(n, str) and n not in value.columns}
    if any(text in value.columns for text in text_names):
        value = value.rename(columns=text_names)
    missing = [n for n in names if n not in value.columns]
    if missing:
        raise SchemaError(
            f"missing column{'s' if len(missing) > 1 else ''} {_listing(missing)} "
            f"(the model needs {_listing(names)})",
            field=str(missing[0]),
        )
    frame = value[names].copy() if list(value.columns) != names else value.copy()
    for column in columns:
        frame[column["name"]] = _conform_column(frame[column["name"]], column)
    return frame


def _conform_column(series: pd.Series, column: dict[str, Any]) -> pd.Series:
    name, kind, dtype = column["name"], column["type"], column["dtype"]
    if str(series.dtype) == dtype and kind != "category":
        return series
    if kind in ("integer", "number", "boolean"):
        if kind == "boolean":
            bad = series.dropna().map(lambda v: not isinstance(v, bool | np.bool_))
        else:
            bad = series.dropna().map(_not_a_number)
        if bad.any():
            row = bad.idxmax()
            raise _wrong(name, _a(kind), series, row)
        if kind == "integer":
            numbers = pd.to_numeric(series)
            if series.isna().any():
                return numbers.astype("float64")
            if not (numbers == numbers.round()).all():
                row = (numbers != numbers.round()).idxmax()
                raise _wrong(name, "an integer", series, row)
            return numbers.astype(dtype)
        if kind == "number":
            return pd.to_numeric(series).astype(dtype)
        return series.astype(dtype) if not series.isna().any() else series
    if kind == "string":
        bad = series.dropna().map(lambda v: not isinstance(v, str))
        if bad.any():
            row = bad.idxmax()
            raise _wrong(name, "text", series, row)
        return series.astype(object) if dtype == "object" else series.astype(dtype)
    if kind == "category":
        allowed = column.get("categories") or []
        unseen = series.dropna().map(lambda v: v not in allowed)
        if unseen.any():
            row = unseen.idxmax()
            raise SchemaError(
                f"column {name!r}: {_plain(series[row])!r} in row {row} is not one of the "
                f"categories seen in training ({_listing(allowed)})",
                field=str(name),
            )
        return pd.Series(pd.Categorical(series, categories=allowed), index=series.index)
    if kind == "datetime":
        try:
            return pd.to_datetime(series).astype(dtype)
        except (ValueError, TypeError) as error:
            message = f"column {name!r}: expected a date/time: {error}"
            raise SchemaError(message, field=str(name)) from None
    return series


_COMPILED: dict[int, tuple[dict[str, Any], pd.Index, list[Any]]] = {}


def _compiled(schema: dict[str, Any]) -> tuple[pd.Index, list[Any]]:
    """The schema's column index and dtypes as pandas objects, built once per schema
    (comparing them is what keeps ``conform`` cheap for one-row requests)."""
    cached = _COMPILED.get(id(schema))
    if cached is None or cached[0] is not schema:
        columns = schema["columns"]
        dtypes = []
        for column in columns:
            try:
                if column["type"] == "category":
                    dtypes.append(pd.CategoricalDtype(column.get("categories")))
                else:
                    dtypes.append(pd.api.types.pandas_dtype(column["dtype"]))
            except TypeError:
                dtypes.append(None)  # a dtype this pandas does not know: never the fast path
        cached = (schema, pd.Index([c["name"] for c in columns]), dtypes)
        _COMPILED[id(schema)] = cached
    return cached[1], cached[2]


def _dtypes(frame: pd.DataFrame) -> list[Any]:
    """The frame's column dtypes. ``frame.dtypes`` builds a Series (about 50 us, half of
    the one-row budget of ``predict()``); the block manager has them as a plain array.
    The package pins pandas, and the public route stays as the fallback."""
    try:
        return list(frame._mgr.get_dtypes())
    except AttributeError:
        return frame.dtypes.tolist()


def _conform_array(value: Any, schema: dict[str, Any]) -> np.ndarray:
    if isinstance(value, pd.DataFrame):
        value = value.to_numpy()
    try:
        array = np.asarray(value, dtype=schema["dtype"] if schema["type"] != "other" else None)
    except (TypeError, ValueError) as error:
        raise SchemaError(f"expected an array of {schema['dtype']}: {error}") from None
    if array.ndim == 1 and schema["ndim"] == 2:
        array = array.reshape(1, -1)
    if array.ndim != schema["ndim"]:
        raise SchemaError(f"expected a {schema['ndim']}-D array, got {array.ndim}-D")
    if array.shape[0] == 0:
        raise SchemaError("the input has no rows; send at least one row")
    features = schema.get("features")
    if features is not None and array.shape[1] != features:
        raise SchemaError(f"expected {features} values per row, got {array.shape[1]}")
    return array


def _wrong(name: Any, expected: str, series: pd.Series, row: Any) -> SchemaError:
    shown = _plain(series[row])
    return SchemaError(
        f"column {name!r}: expected {expected}, got {shown!r} in row {row}", field=str(name)
    )


def _not_a_number(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return True
    return not isinstance(value, int | float | np.integer | np.floating)


def _a(kind: str) -> str:
    return {"integer": "an integer", "number": "a number", "boolean": "true or false"}[kind]


def _listing(names: list[Any]) -> str:
    shown = ", ".join(repr(n) for n in names[:12])
    return shown + (f" and {len(names) - 12} more" if len(names) > 12 else "")


def _plain_name(name: Any) -> Any:
    return name if isinstance(name, str | int | type(None)) else str(name)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
