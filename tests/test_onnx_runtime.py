"""The adapter generated packages carry as ``_onnx.py``: choosing the path, the threads
setting, constants as JSON, and a real converted model answering like scikit-learn."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LogisticRegression

from nbprod.runtime import _onnx
from nbprod.runtime._formats import ArtifactIntegrityError

ENTRIES = {
    "model": {"format": "skops", "onnx": {"files": {"model.onnx": "..."}}},
    "refused": {"format": "skops", "onnx": {"refused": "cannot convert"}},
    "columns": {"format": "json"},
}
NAMES = ("columns", "model", "refused")


def test_auto_runs_converted_models_on_onnx_and_the_rest_as_saved() -> None:
    assert _onnx.plan(ENTRIES, NAMES, "auto", "X", "pkg[onnx]") == {
        "columns": "json",
        "model": "onnx",
        "refused": "skops",
    }
    assert _onnx.plan(ENTRIES, NAMES, " ONNX ", "X", "pkg[onnx]")["model"] == "onnx"
    assert _onnx.plan(ENTRIES, NAMES, "skops", "X", "pkg[onnx]")["model"] == "skops"


def test_a_wrong_backend_or_onnx_without_a_converted_model_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'fast' is not one of auto, onnx, skops \(PKG_BACKEND\)"):
        _onnx.plan(ENTRIES, NAMES, "fast", "PKG_BACKEND", "pkg[onnx]")
    plain = {"columns": {"format": "json"}}
    with pytest.raises(ValueError, match="no artifact of this package has an ONNX form"):
        _onnx.plan(plain, ("columns",), "onnx", "X", "pkg[onnx]")
    assert _onnx.plan(plain, ("columns",), "auto", "X", "pkg[onnx]") == {"columns": "json"}


@pytest.mark.parametrize(("setting", "expected"), [("auto", None), (" 2 ", 2), ("0", 0)])
def test_threads_are_auto_or_a_number(setting: str, expected: int | None) -> None:
    assert _onnx.threads(setting, "PKG_ONNX_THREADS") == expected


def test_other_threads_settings_name_the_variable() -> None:
    with pytest.raises(ValueError, match=r"PKG_ONNX_THREADS='-1': expected auto or a number"):
        _onnx.threads("-1", "PKG_ONNX_THREADS")


@pytest.mark.parametrize(
    "value",
    [np.array([0, 1, 2]), np.array(["a", "b"], dtype=object), np.float32(0.5), 3, "x", [1, 2]],
    ids=["ints", "strings", "float32", "int", "str", "list"],
)
def test_constants_round_trip_through_json_with_their_dtype(value: Any) -> None:
    back = _onnx.decode(json.loads(json.dumps(_onnx.encode(value))))
    assert type(back) is type(value)
    if isinstance(value, np.ndarray | np.generic):
        assert back.dtype == value.dtype and np.array_equal(back, value)
    else:
        assert back == value


def test_what_is_not_plain_data_is_not_a_constant() -> None:
    with pytest.raises(ValueError, match="a dict"):
        _onnx.encode({"a": 1})
    with pytest.raises(ValueError, match="objects other than strings"):
        _onnx.encode(np.array([object()], dtype=object))


@pytest.fixture
def converted(tmp_path: Path) -> tuple[Any, Path, dict[str, Any], pd.DataFrame]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, 2)), columns=["a", "b"])
    model = LogisticRegression().fit(frame, frame.a > 0)
    graph = convert_sklearn(
        model,
        initial_types=[("X", FloatTensorType([None, 2]))],
        options={id(model): {"zipmap": False}},
    )
    (tmp_path / "model.onnx").write_bytes(graph.SerializeToString())
    digest = hashlib.sha256((tmp_path / "model.onnx").read_bytes()).hexdigest()
    spec = {
        "files": {"model.onnx": digest},
        "inputs": {"kind": "tensor", "name": "X", "columns": ["a", "b"], "width": 2},
        "methods": {
            "predict": {"file": "model.onnx", "output": "label", "ndim": 1, "dtype": "bool"},
            "predict_proba": {
                "file": "model.onnx",
                "output": "probabilities",
                "ndim": 2,
                "dtype": "float64",
            },
        },
        "attributes": {"classes_": _onnx.encode(model.classes_)},
        "calls": {},
    }
    spec["inputs"]["dtype"] = "float32"
    return model, tmp_path, spec, frame


def test_the_adapter_answers_like_scikit_learn_for_few_and_many_rows(
    converted: tuple[Any, Path, dict[str, Any], pd.DataFrame],
) -> None:
    model, folder, spec, frame = converted
    adapter = _onnx.load(folder, "model", spec)
    for rows in (frame.head(3), pd.concat([frame] * 10)):  # 3 rows; 400: the thread pool
        labels = adapter.predict(rows)
        assert labels.dtype == np.bool_ and np.array_equal(labels, model.predict(rows))
        proba = adapter.predict_proba(rows)
        assert proba.dtype == np.float64
        np.testing.assert_allclose(proba, model.predict_proba(rows), **_onnx.TOLERANCE)
    assert np.array_equal(adapter.classes_, model.classes_)
    assert {threads for _, threads in adapter._sessions} == {0, 1}


def test_the_adapter_refuses_what_scikit_learn_would_refuse(
    converted: tuple[Any, Path, dict[str, Any], pd.DataFrame],
) -> None:
    _, folder, spec, frame = converted
    adapter = _onnx.load(folder, "model", spec)
    with pytest.raises(ValueError, match=r"feature names should match.*missing \['b'\]"):
        adapter.predict(frame[["a"]])
    with pytest.raises(ValueError, match="X has 3 features, but model is expecting 2"):
        adapter.predict(np.zeros((1, 3)))
    with pytest.raises(AttributeError, match="answers only classes_, predict, predict_proba"):
        adapter.decision_function(frame)


def test_a_changed_onnx_file_is_refused(
    converted: tuple[Any, Path, dict[str, Any], pd.DataFrame],
) -> None:
    _, folder, spec, _ = converted
    content = bytearray((folder / "model.onnx").read_bytes())
    content[-1] ^= 0x01
    (folder / "model.onnx").write_bytes(bytes(content))
    with pytest.raises(ArtifactIntegrityError, match="changed or corrupted"):
        _onnx.load(folder, "model", spec)
