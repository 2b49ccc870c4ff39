"""Convert a generated package's models to ONNX, and prove each against the notebook.

``python -I convert.py SRC PACKAGE`` in the interpreter that ran the notebook, with
nbprod made unimportable (as ``probe.py``): it imports the package from SRC and loads
its artifacts (the reference objects), then for each model artifact:

1. replays the parity record with the artifact behind a recorder, to learn what the
   inference code asks of it: which methods on which inputs, which fitted attributes;
2. converts it (skl2onnx; onnxmltools for xgboost and lightgbm), in float32 first, in
   float64 when float32 does not agree;
3. runs every recorded method call through the package's own adapter (``_onnx.py``)
   and compares it with the reference answer (``_values.assert_same``): labels and
   integers exactly, floats to the package's tolerance.

Then it replays the parity record through ``predict()`` with every converted model
behind the package's own adapter (``_onnx.py``). A model whose ONNX form changes a
prediction is not switched. The ``.onnx`` files are written into the package's
artifacts folder; one JSON object is printed: per artifact its ``onnx`` entry for the
manifest or the reason it was ``refused``. Imports nothing of nbprod.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import sys
import traceback
from pathlib import Path
from typing import Any

METHODS = ("predict", "predict_proba", "decision_function", "transform")
NEEDED = ("onnx", "onnxruntime", "skl2onnx")


class Refused(Exception):
    """This artifact stays on the reference path; the message says why."""


class Recorder:
    """Stands in for one artifact while the parity record replays, and notes what the
    inference code asks of it."""

    def __init__(self, name: str, target: Any) -> None:
        self._name, self._target = name, target
        self.calls: dict[str, list[tuple[Any, Any]]] = {}
        self.attributes: dict[str, Any] = {}
        self.no_argument_calls: dict[str, Any] = {}
        self.problems: list[str] = []

    def __getattr__(self, attribute: str) -> Any:
        value = getattr(self._target, attribute)
        if attribute in METHODS:
            return lambda *args, **kwargs: self._method(attribute, value, args, kwargs)
        if callable(value):
            return lambda *args, **kwargs: self._other(attribute, value, args, kwargs)
        self.attributes[attribute] = value
        return value

    def _method(self, attribute: str, method: Any, args: tuple[Any, ...], kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        if len(args) != 1 or kwargs:
            self.problems.append(
                f"the inference code calls `{self._name}.{attribute}` with more than one "
                "input, and an ONNX graph takes only the data"
            )
        else:
            self.calls.setdefault(attribute, []).append((args[0], result))
        return result

    def _other(self, attribute: str, method: Any, args: tuple[Any, ...], kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        if args or kwargs:
            self.problems.append(
                f"the inference code calls `{self._name}.{attribute}(...)`, which an ONNX "
                "graph does not answer"
            )
        else:
            self.no_argument_calls[attribute] = result
        return result


# Data, not models, though a frame or a series has a `transform` method
DATA_MODULES = ("builtins", "numpy", "pandas", "scipy", "pyarrow")


def is_model(value: Any) -> bool:
    if isinstance(value, type) or (callable(value) and not hasattr(value, "__dict__")):
        return False
    if type(value).__module__.split(".")[0] in DATA_MODULES:
        return False
    return any(callable(getattr(value, m, None)) for m in METHODS)


def main(argv: list[str]) -> None:
    source, name = Path(argv[0]), argv[1]
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        print(json.dumps({"ok": False, "missing": missing}))
        return
    # None in sys.modules is Python's documented import block (as in probe.py); typeshed
    # types the values as modules, hence the ignore
    sys.modules["nbprod"] = None  # type: ignore[assignment]  # the package must not need it
    sys.path.insert(0, str(source))
    try:
        print(json.dumps({"ok": True, **convert(source, name)}))
    except BaseException as error:
        print(
            json.dumps(
                {
                    "ok": False,
                    "error": f"{type(error).__name__}: {error}",
                    "traceback": traceback.format_exc(limit=-6),
                }
            )
        )


def convert(source: Path, name: str) -> dict[str, Any]:
    package = importlib.import_module(name)
    package.load_artifacts(backend="skops")
    values = importlib.import_module(f"{name}._values")
    runtime = importlib.import_module(f"{name}._onnx")
    parity = source.parent / "tests" / "parity"
    recorded = json.loads((parity / "parity.json").read_text(encoding="utf-8"))["calls"]
    calls = [
        (
            [values.decode(arg, parity) for arg in call["args"]],
            {k: values.decode(v, parity) for k, v in call["kwargs"].items()},
            values.decode(call["result"], parity),
            f"recorded call {number + 1} of {len(recorded)}, from the {call.get('source')}",
        )
        for number, call in enumerate(recorded)
    ]
    folder = package.artifacts_dir()
    report: dict[str, Any] = {}
    for artifact in package.ARTIFACTS:
        original = getattr(package.pipeline, artifact)
        if not is_model(original):
            continue
        try:
            spec = _convert(package, runtime, artifact, original, calls, folder)
            report[artifact] = {"onnx": spec}
        except Refused as error:
            report[artifact] = {"refused": str(error)}
        except Exception as error:  # a converter's own failure costs this model its ONNX form
            report[artifact] = {"refused": f"converting it failed: {_first_line(error)}"}
        finally:
            setattr(package.pipeline, artifact, original)
    _prove(package, values, runtime, calls, folder, report)
    return {"artifacts": report, "versions": _versions()}


def _convert(
    package: Any, runtime: Any, artifact: str, original: Any, calls: list[Any], folder: Path
) -> dict[str, Any]:
    recorder = Recorder(artifact, original)
    setattr(package.pipeline, artifact, recorder)
    for args, kwargs, _, where in calls:
        try:
            package.predict(*args, **kwargs)
        except Exception as error:
            raise Refused(
                f"predict() does not run with `{artifact}` replaced by a stand-in ({where}: "
                f"{type(error).__name__}: {error}); the inference code uses the object "
                "itself, not only its predict/transform methods"
            ) from error
    if recorder.problems:
        raise Refused(recorder.problems[0])
    if not recorder.calls:
        raise Refused(
            f"predict() calls none of {', '.join(METHODS)} on `{artifact}` in the recorded calls"
        )
    attributes = _constants(artifact, recorder.attributes, runtime)
    no_argument_calls = _constants(artifact, recorder.no_argument_calls, runtime)
    inputs = _inputs(artifact, [x for pairs in recorder.calls.values() for x, _ in pairs])
    reasons = []
    for precision in ("float32", "float64"):
        try:
            spec = _try(artifact, original, recorder.calls, inputs, precision, folder, package)
        except Refused as error:
            reasons.append(f"{precision}: {error}")
            if "cannot convert" in str(error):
                break  # the converter refuses the model itself, whatever the precision
            continue
        spec.update(attributes=attributes, calls=no_argument_calls)
        spec["type"] = f"{type(original).__module__}.{type(original).__qualname__}"
        return spec
    if len(reasons) == 1:
        raise Refused(reasons[0].split(": ", 1)[1])
    raise Refused("; ".join(reasons))


def _constants(artifact: str, read: dict[str, Any], runtime: Any) -> dict[str, Any]:
    encoded = {}
    for attribute, value in read.items():
        try:
            encoded[attribute] = runtime.encode(value)
        except ValueError as error:
            raise Refused(
                f"the inference code reads `{artifact}.{attribute}`, {error}, which an ONNX "
                "form cannot carry"
            ) from None
    return encoded


def _inputs(artifact: str, samples: list[Any]) -> dict[str, Any]:
    """How the data the inference code passes becomes the graph's inputs."""
    import numpy as np

    first = samples[0]
    if any(type(s) is not type(first) for s in samples):
        raise Refused(f"`{artifact}` is called on inputs of different types")
    if hasattr(first, "toarray") or hasattr(first, "tocsr"):
        raise Refused(f"`{artifact}` is called on a sparse matrix")
    if hasattr(first, "columns") and hasattr(first, "dtypes"):
        kinds = [_kind(dtype) for dtype in first.dtypes]
        names = list(first.columns)
        if all(k == "number" for k in kinds):
            return {"kind": "tensor", "name": "X", "columns": names, "width": len(names)}
        if len(set(map(str, names))) != len(names):
            raise Refused(f"`{artifact}` is called on a frame with duplicate column names")
        columns = [
            {"name": n, "input": str(n), "dtype": "str" if k == "text" else k}
            for n, k in zip(names, kinds, strict=True)
        ]
        return {"kind": "columns", "columns": columns}
    array = np.asarray(first)
    if array.ndim != 2 or array.dtype.kind not in "biuf":
        raise Refused(
            f"`{artifact}` is called on {array.ndim}-dimensional {array.dtype} data; the "
            "ONNX form takes a 2-d numeric matrix or a data frame"
        )
    return {"kind": "tensor", "name": "X", "columns": None, "width": int(array.shape[1])}


def _kind(dtype: Any) -> str:
    """``number`` (booleans, integers, floats: what scikit-learn reads as numbers) or
    ``text`` (strings, objects, categories: fed as strings)."""
    return "number" if getattr(dtype, "kind", "O") in "biuf" else "text"


def _try(
    artifact: str,
    model: Any,
    calls: dict[str, list[tuple[Any, Any]]],
    inputs: dict[str, Any],
    precision: str,
    folder: Path,
    package: Any,
) -> dict[str, Any]:
    """Convert ``model`` at ``precision`` and prove each recorded method call through the
    package's own adapter (``_onnx.OnnxModel``) against scikit-learn's answer."""
    runtime = importlib.import_module(f"{package.__name__}._onnx")
    values = importlib.import_module(f"{package.__name__}._values")
    spec_inputs = dict(inputs)
    if inputs["kind"] == "tensor":
        spec_inputs["dtype"] = precision
    else:
        spec_inputs["columns"] = [
            {**c, "dtype": precision if c["dtype"] == "number" else c["dtype"]}
            for c in inputs["columns"]
        ]
    protos = {f"{artifact}.onnx": _graph(model, spec_inputs, precision, scores=False)}
    if "decision_function" in calls:
        protos[f"{artifact}.scores.onnx"] = _graph(model, spec_inputs, precision, scores=True)
    graphs = {file: proto.SerializeToString() for file, proto in protos.items()}
    trial: dict[str, Any] = {"inputs": spec_inputs, "methods": {}, "attributes": {}, "calls": {}}
    adapter = runtime.OnnxModel(artifact, trial, graphs, 1)
    for file in graphs:
        try:
            adapter.session(file, 1)
        except Exception as error:
            raise Refused(f"ONNX Runtime cannot run the converted graph: {error}") from error
    for method, pairs in calls.items():
        file = f"{artifact}.scores.onnx" if method == "decision_function" else f"{artifact}.onnx"
        _answer(artifact, method, adapter, trial, file, pairs, values, runtime.TOLERANCE)
    files = {}
    for file, graph in graphs.items():
        path = folder / file
        temporary = path.with_name(f".{file}.partial")
        temporary.write_bytes(graph)
        temporary.replace(path)
        files[file] = hashlib.sha256(graph).hexdigest()
    opsets = {}
    for proto in protos.values():
        opsets.update({o.domain or "ai.onnx": int(o.version) for o in proto.opset_import})
    return {
        "files": files,
        "inputs": spec_inputs,
        "methods": trial["methods"],
        "precision": precision,
        "converter": _converter_name(model),
        "opsets": opsets,
    }


def _answer(
    artifact: str,
    method: str,
    adapter: Any,
    trial: dict[str, Any],
    file: str,
    pairs: list[tuple[Any, Any]],
    values: Any,
    tolerance: dict[str, float],
) -> None:
    """Find which output of ``file``, shaped how, answers ``method`` as scikit-learn did on
    every recorded pair, and set it in ``trial``; Refused when none does."""
    import numpy as np

    outputs = adapter.session(file, 1).get_outputs()
    # labels (or the transform) first; the scores or probabilities follow the labels
    candidates = outputs[:1] if method in ("predict", "transform") else outputs[1:2]
    if not candidates:
        raise Refused(f"the converted graph has no output for `{artifact}.{method}`")
    first = pairs[0][1]
    if hasattr(first, "toarray"):
        raise Refused(f"`{artifact}.{method}` returns a sparse matrix")
    expected_first = np.asarray(first)
    how: dict[str, Any] = {
        "file": file,
        "output": candidates[0].name,
        "ndim": expected_first.ndim,
        "dtype": str(expected_first.dtype),
    }
    if hasattr(first, "columns"):
        how["frame"] = [str(c) for c in first.columns]
    out = adapter.raw(file, how["output"], pairs[0][0])
    choices = [how]
    if expected_first.ndim == 1 and out.ndim == 2 and out.shape[1] > 1:  # one column is it
        choices = [dict(how, column=c) for c in reversed(range(out.shape[1]))]
    failure = ""
    for choice in choices:
        trial["methods"][method] = choice
        try:
            for x, expected in pairs:
                values.assert_same(adapter.run(method, x), expected, method, **tolerance)
            return
        except AssertionError as error:
            failure = _brief(error)
    del trial["methods"][method]
    raise Refused(f"`{artifact}.{method}` through ONNX Runtime differs: {failure}")


def _graph(model: Any, inputs: dict[str, Any], precision: str, *, scores: bool) -> Any:
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )

    number = FloatTensorType if precision == "float32" else DoubleTensorType
    kinds = {"float32": FloatTensorType, "float64": DoubleTensorType, "str": StringTensorType}
    kinds["int64"] = Int64TensorType
    if inputs["kind"] == "tensor":
        initial = [(inputs["name"], number([None, inputs["width"]]))]
    else:
        initial = [(c["input"], kinds[c["dtype"]]([None, 1])) for c in inputs["columns"]]
    root = type(model).__module__.split(".")[0]
    try:
        if root in ("xgboost", "lightgbm"):
            return _boosted(model, root, initial, precision, scores)
        _register_boosters()
        return _sklearn_graph(model, initial, scores)
    except Refused:
        raise
    except Exception as error:
        raise Refused(
            f"{_converter_name(model)} cannot convert {type(model).__name__}: {_first_line(error)}"
        ) from error


def _sklearn_graph(model: Any, initial: list[Any], scores: bool) -> Any:
    from skl2onnx import convert_sklearn

    final = _final_estimator(model)
    wanted: dict[str, Any] = {"zipmap": False}
    if scores:
        wanted["raw_scores"] = True
    opset: Any = None
    while True:
        options = {id(final): wanted} if wanted and _is_classifier(final) else None
        try:
            return convert_sklearn(
                model, initial_types=initial, options=options, target_opset=opset
            )
        except RuntimeError as error:
            # onnxmltools' tree converters (xgboost, lightgbm inside a pipeline) write the
            # ai.onnx.ml domain at version 3 only, and say so
            if opset is not None or "'ai.onnx.ml': 3" not in str(error):
                raise
            from skl2onnx import get_latest_tested_opset_version

            opset = {"": get_latest_tested_opset_version(), "ai.onnx.ml": 3}
        except NameError as error:  # an option this classifier's converter does not know
            unknown = [o for o in wanted if f"Option '{o}' not in" in str(error)]
            if not unknown:
                raise
            if unknown == ["raw_scores"]:
                raise Refused("its converter cannot give decision_function's scores") from error
            del wanted[unknown[0]]


def _boosted(model: Any, root: str, initial: list[Any], precision: str, scores: bool) -> Any:
    import onnxmltools

    if precision != "float32" or len(initial) != 1:
        raise Refused(f"onnxmltools cannot convert {type(model).__name__}: float32 matrix only")
    if scores:
        raise Refused(f"onnxmltools gives no decision_function scores for {type(model).__name__}")
    from onnxmltools.convert.common.data_types import FloatTensorType

    initial = [(initial[0][0], FloatTensorType(initial[0][1].shape))]  # its own type classes
    if root == "xgboost":
        model = copy.deepcopy(model)
        model.get_booster().feature_names = None  # the converter wants f0, f1, ...
        return onnxmltools.convert_xgboost(model, initial_types=initial)
    return onnxmltools.convert_lightgbm(model, initial_types=initial, zipmap=False)


def _register_boosters() -> None:
    """Let skl2onnx convert xgboost and lightgbm models inside scikit-learn pipelines."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    if importlib.util.find_spec("xgboost") and importlib.util.find_spec("onnxmltools"):
        import xgboost
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

        update_registered_converter(
            xgboost.XGBClassifier,
            "XGBoostXGBClassifier",
            calculate_linear_classifier_output_shapes,
            convert_xgboost,
            options=options,
        )
        update_registered_converter(
            xgboost.XGBRegressor,
            "XGBoostXGBRegressor",
            calculate_linear_regressor_output_shapes,
            convert_xgboost,
        )
    if importlib.util.find_spec("lightgbm") and importlib.util.find_spec("onnxmltools"):
        import lightgbm
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        update_registered_converter(
            lightgbm.LGBMClassifier,
            "LightGbmLGBMClassifier",
            calculate_linear_classifier_output_shapes,
            convert_lightgbm,
            options=options,
        )
        update_registered_converter(
            lightgbm.LGBMRegressor,
            "LightGbmLGBMRegressor",
            calculate_linear_regressor_output_shapes,
            convert_lightgbm,
        )


def _final_estimator(model: Any) -> Any:
    while hasattr(model, "steps"):
        model = model.steps[-1][1]
    return model


def _is_classifier(model: Any) -> bool:
    return callable(getattr(model, "predict_proba", None)) or hasattr(model, "classes_")


def _converter_name(model: Any) -> str:
    root = type(model).__module__.split(".")[0]
    name = "onnxmltools" if root in ("xgboost", "lightgbm") else "skl2onnx"
    return f"{name} {importlib.metadata.version(name)}"


def _prove(
    package: Any,
    values: Any,
    runtime: Any,
    calls: list[Any],
    folder: Path,
    report: dict[str, Any],
) -> None:
    """Replay predict() with the converted models behind the package's adapter; refuse
    those that change a prediction, alone or together."""
    originals = {name: getattr(package.pipeline, name) for name in report}

    def failure(names: list[str]) -> str:
        try:
            for name in names:
                try:
                    adapter = runtime.load(folder, name, report[name]["onnx"])
                except Exception as error:
                    return f"ONNX Runtime cannot load it: {_first_line(error)}"
                setattr(package.pipeline, name, adapter)
            for args, kwargs, expected, where in calls:
                try:
                    result = package.predict(*args, **kwargs)
                    values.assert_same(result, expected, "prediction", **runtime.TOLERANCE)
                except Exception as error:
                    return f"predict() then differs from the notebook ({where}): {_brief(error)}"
            return ""
        finally:
            for name, original in originals.items():
                setattr(package.pipeline, name, original)

    converted = [name for name, entry in report.items() if "onnx" in entry]
    if not converted or not failure(converted):
        return
    for name in converted:
        reason = failure([name])
        if reason:
            _refuse(report, name, folder, reason)
    left = [name for name in converted if "onnx" in report[name]]
    together = failure(left) if left else ""
    if together:
        for name in left:
            _refuse(report, name, folder, f"with the other converted models, {together}")


def _refuse(report: dict[str, Any], name: str, folder: Path, reason: str) -> None:
    for file in report[name]["onnx"]["files"]:
        (folder / file).unlink(missing_ok=True)
    report[name] = {"refused": reason}


def _brief(error: BaseException) -> str:
    """An assertion's message on one line, at most 240 characters."""
    text = " ".join(str(error).split())
    return text if len(text) <= 240 else text[:240] + " ..."


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300] if lines else ''}"


def _versions() -> dict[str, str]:
    found = {}
    for distribution in ("onnx", "onnxruntime", "skl2onnx", "onnxmltools"):
        try:
            found[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


if __name__ == "__main__":
    main(sys.argv[1:])
