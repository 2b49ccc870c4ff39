"""The input schema: recorded from the notebook's inputs, enforced on later ones."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nbprod.runtime.schema import SchemaError, conform, frame_from_json, observe


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [31, 45, 52],
            "income": [1200.5, 3400.0, np.nan],
            "city": ["Oslo", "Lima", "Oslo"],
            "member": [True, False, True],
            "tier": pd.Categorical(["a", "b", "a"], categories=["a", "b", "c"]),
        }
    )


def schema() -> dict:
    # what a run writes is JSON: go through it, as the package reads it back
    return json.loads(json.dumps(observe(None, frame())))


def test_a_frame_is_recorded_with_types_nulls_and_seen_values() -> None:
    columns = {c["name"]: c for c in schema()["columns"]}
    assert [c["type"] for c in columns.values()] == [
        "integer",
        "number",
        "string",
        "boolean",
        "category",
    ]
    assert columns["income"]["nullable"] and not columns["age"]["nullable"]
    assert columns["city"]["values"] == ["Lima", "Oslo"]
    assert columns["tier"]["categories"] == ["a", "b", "c"]


def test_the_recorded_input_passes_unchanged() -> None:
    value = frame()
    assert conform(value, schema()) is value


def test_records_and_columns_become_the_recorded_frame() -> None:
    records = frame().drop(columns="tier").to_dict(orient="records")
    plain = json.loads(json.dumps(records, default=str))
    for record in plain:
        record["tier"] = "b"
    converted = conform(frame_from_json({"records": plain}, schema()), schema())
    assert list(converted.columns) == list(frame().columns)
    assert [str(d) for d in converted.dtypes] == [str(d) for d in frame().dtypes]
    as_columns = {"columns": {k: [v] for k, v in plain[0].items()}}
    one = conform(frame_from_json(as_columns, schema()), schema())
    assert one.shape == (1, 5) and one["age"].tolist() == [31]


def test_extra_columns_are_dropped_and_order_restored() -> None:
    shuffled = frame()[["city", "tier", "age", "member", "income"]].assign(extra=1)
    assert list(conform(shuffled, schema()).columns) == list(frame().columns)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="age"), "missing column 'age'"),
        (lambda f: f.assign(age=["x", 2, 3]), "'age': expected an integer, got 'x' in row 0"),
        (lambda f: f.assign(age=[1.5, 2, 3]), "column 'age': expected an integer, got 1.5"),
        (lambda f: f.assign(income=["a", 1.0, 2.0]), "column 'income': expected a number"),
        (lambda f: f.assign(city=[1, "Lima", "Oslo"]), "column 'city': expected text, got 1"),
        (lambda f: f.assign(member=[1, 0, 1]), "column 'member': expected true or false"),
        (lambda f: f.assign(tier=["a", "zzz", "a"]), "column 'tier': 'zzz' in row 1 is not one of"),
        (lambda f: f.head(0), "no rows"),
    ],
)
def test_bad_input_names_the_field(change, message: str) -> None:
    with pytest.raises(SchemaError) as caught:
        conform(change(frame()), schema())
    assert message in str(caught.value)


def test_not_a_table_is_refused() -> None:
    with pytest.raises(SchemaError, match="expected a table with columns 'age'"):
        conform(42, schema())
    with pytest.raises(SchemaError, match="list of records"):
        frame_from_json("age=3", schema())
    with pytest.raises(SchemaError, match="same length"):
        frame_from_json({"columns": {"age": [1, 2], "city": ["Oslo"]}}, schema())


def test_calls_widen_the_schema() -> None:
    first = observe(None, frame())
    wider = observe(first, frame().assign(age=[1.5, 2.0, 3.0], extra=1, city=None))
    columns = {c["name"]: c for c in wider["columns"]}
    assert "extra" not in columns  # only columns every call had are required
    assert columns["age"]["type"] == "number"
    assert columns["city"]["nullable"]


def test_arrays_keep_their_width() -> None:
    recorded = observe(None, np.zeros((4, 3)))
    assert conform([[1, 2, 3]], recorded).shape == (1, 3)
    with pytest.raises(SchemaError, match="expected 3 values per row, got 2"):
        conform([[1, 2]], recorded)


def test_other_inputs_pass_unchecked() -> None:
    recorded = observe(None, "some text")
    assert recorded == {"kind": "other", "type": "str"}
    assert conform("other text", recorded) == "other text"


def test_a_categorical_with_other_categories_is_recoded() -> None:
    other = frame().assign(tier=pd.Categorical(["b", "a", "b"], categories=["b", "a"]))
    recoded = conform(other, schema())["tier"]
    assert list(recoded.cat.categories) == ["a", "b", "c"] and list(recoded) == ["b", "a", "b"]
