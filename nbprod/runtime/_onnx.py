"""A converted model run by ONNX Runtime, behind the methods the inference code calls.

``nbprod extract --onnx`` converts each model artifact it can and records, in the
artifact's manifest entry under ``onnx``, what the adapter needs: the files and their
SHA-256, how the input becomes the graph's inputs, and per method (``predict``,
``predict_proba``, ``decision_function``, ``transform``) which output answers it and how
it is shaped and typed to look like scikit-learn's answer. Fitted attributes the
inference code read (``classes_``) and what methods it called without arguments
returned (``get_feature_names_out()``) are kept as constants.

Copied into generated packages as ``_onnx.py``; it imports numpy, and onnxruntime when a
model is loaded, never scikit-learn or skops. Like every artifact file, an ``.onnx``
file whose hash differs from the one recorded at extract is refused.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from ._formats import ArtifactIntegrityError

METHODS = ("predict", "predict_proba", "decision_function", "transform")
# Parity of the ONNX path: ONNX Runtime computes in float32 where scikit-learn uses
# float64, so floats must agree to this (labels and integers exactly).
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


BACKENDS = ("auto", "onnx", "skops")


def plan(
    entries: Mapping[str, Any], names: Sequence[str], backend: str, where: str, extra: str
) -> dict[str, str]:
    """Per artifact of ``names``, what loading it with ``backend`` (set by ``where``)
    uses: ``onnx``, or the format it was saved in. ``entries`` are the manifest's;
    ``extra`` says what to install when ``backend`` is ``onnx`` without onnxruntime."""
    setting = backend.strip().lower()
    if setting not in BACKENDS:
        raise ValueError(f"backend {setting!r} is not one of {', '.join(BACKENDS)} ({where})")
    converted = [n for n in names if "files" in entries.get(n, {}).get("onnx", {})]
    if setting == "onnx" and not converted:
        raise ValueError("backend 'onnx': no artifact of this package has an ONNX form")
    fast = setting != "skops" and bool(converted) and find_spec("onnxruntime") is not None
    if setting == "onnx" and not fast:
        raise ModuleNotFoundError(
            f"backend 'onnx' needs onnxruntime: pip install '{extra}'", name="onnxruntime"
        )
    return {
        name: "onnx" if fast and name in converted else entries.get(name, {}).get("format", "skops")
        for name in names
    }


def threads(setting: str, variable: str) -> int | None:
    """ONNX Runtime's threads per call from ``setting`` (the value of ``variable``): a
    number (0: one per core), or ``auto`` (None: ``SMALL_INPUT_ROWS`` decides)."""
    setting = setting.strip().lower()
    if setting == "auto":
        return None
    if not setting.isdigit():
        raise ValueError(
            f"{variable}={setting!r}: expected auto or a number of threads (0: one per core)"
        )
    return int(setting)


# Inputs up to this many rows run on a session with one thread: for a few rows, waking
# ONNX Runtime's thread pool costs more than the work, and its spinning threads take the
# CPU the features code and the server need. Larger inputs get the pool (ORT's default).
SMALL_INPUT_ROWS = 256


def load(
    folder: Path, artifact: str, spec: Mapping[str, Any], threads: int | None = None
) -> OnnxModel:
    """The adapter of ``artifact``, after checking every file's hash against ``spec``.

    ``threads``: ONNX Runtime's intra-op threads for every input (0: its default, one
    per core); None: one thread up to ``SMALL_INPUT_ROWS`` rows, the default above.
    """
    import onnxruntime  # noqa: F401  (an ImportError here names what is missing)

    graphs: dict[str, bytes] = {}
    for file, recorded in spec["files"].items():
        path = folder / file
        if not path.is_file():
            raise ArtifactIntegrityError(f"artifact file {path} is missing")
        data = path.read_bytes()  # the bytes checked are the bytes run
        actual = hashlib.sha256(data).hexdigest()
        if actual != recorded:
            raise ArtifactIntegrityError(
                f"artifact {artifact!r} ({path}) has sha256 {actual}, but {recorded} was "
                "recorded when it was converted: the file was changed or corrupted; refusing "
                "to load it. Reinstall the package."
            )
        graphs[file] = data
    model = OnnxModel(artifact, spec, graphs, threads)
    for file in graphs:  # the small-input sessions now: the first request is not slow
        model.session(file, 1)
    return model


class OnnxModel:
    """Answers the recorded methods of one artifact with ONNX Runtime sessions."""

    def __init__(
        self,
        artifact: str,
        spec: Mapping[str, Any],
        graphs: dict[str, bytes],
        threads: int | None = None,
    ) -> None:
        self._artifact = artifact
        self._spec = spec
        self._graphs = graphs
        self._threads = threads
        self._sessions: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()
        self._attributes = {name: decode(value) for name, value in spec["attributes"].items()}
        self._calls = {name: decode(value) for name, value in spec["calls"].items()}
        columns = spec["inputs"].get("columns")
        self._names = (
            None if columns is None else [c["name"] if isinstance(c, dict) else c for c in columns]
        )

    def session(self, file: str, rows: int) -> Any:
        """The session of ``file`` for an input of ``rows`` rows (made on first use)."""
        threads = self._threads
        if threads is None:
            threads = 1 if rows <= SMALL_INPUT_ROWS else 0
        found = self._sessions.get((file, threads))
        if found is None:
            with self._lock:
                found = self._sessions.get((file, threads))
                if found is None:
                    found = self._sessions[(file, threads)] = _session(self._graphs[file], threads)
        return found

    def __repr__(self) -> str:
        return f"<ONNX Runtime form of {self._spec.get('type', self._artifact)}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name.startswith("_"):
            raise AttributeError(name)
        if name in self._spec["methods"]:
            return lambda X: self.run(name, X)
        if name in self._attributes:
            return self._attributes[name]
        if name in self._calls:
            value = self._calls[name]
            return lambda: value  # what it returned, called without arguments, at extract
        answered = [*self._spec["methods"], *self._attributes, *self._calls]
        raise AttributeError(
            f"the ONNX form of artifact {self._artifact!r} answers only "
            f"{', '.join(sorted(answered))}, which is what "
            f"the notebook's inference code used; {name!r} is not among them. Set the "
            "package's _BACKEND variable to skops to use the original object."
        )

    def run(self, method: str, X: Any) -> Any:
        how = self._spec["methods"][method]
        return _shaped(self.raw(how["file"], how["output"], X), how, getattr(X, "index", None))

    def raw(self, file: str, output: str, X: Any) -> np.ndarray:
        """The graph's ``output`` for ``X`` as ONNX Runtime gives it, before shaping."""
        feed = self._feed(X)
        rows = len(next(iter(feed.values())))
        (out,) = self.session(file, rows).run([output], feed)
        return np.asarray(out)

    def _feed(self, X: Any) -> dict[str, np.ndarray]:
        inputs = self._spec["inputs"]
        names = self._names
        if inputs["kind"] == "columns":
            if not hasattr(X, "columns"):
                raise TypeError(
                    f"{self._artifact}: expected a pandas DataFrame with the columns "
                    f"{names}, got {type(X).__name__}"
                )
            _check_columns(X, names, self._artifact)
            return {
                c["input"]: _column(X[c["name"]].to_numpy(), c["dtype"]).reshape(-1, 1)
                for c in inputs["columns"]
            }
        if names is not None and hasattr(X, "columns"):
            _check_columns(X, names, self._artifact)
            X = X.to_numpy(dtype=inputs["dtype"])
        array = np.asarray(X, dtype=inputs["dtype"])
        if array.ndim != 2 or array.shape[1] != inputs["width"]:
            raise ValueError(
                f"X has {array.shape[-1] if array.ndim else 0} features, but "
                f"{self._artifact} is expecting {inputs['width']} features as input"
            )
        return {inputs["name"]: array}


def _session(graph: bytes, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are not the user's
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # a pool that spins between calls takes the CPU the rest of predict() needs
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def _check_columns(X: Any, expected: list[Any] | None, artifact: str) -> None:
    actual = X.columns
    if expected is None or (len(actual) == len(expected) and all(actual == expected)):
        return
    actual = list(actual)
    missing = [c for c in expected if c not in actual]
    unexpected = [c for c in actual if c not in expected]
    detail = f"missing {missing}" if missing else ""
    detail += ("; " if detail and unexpected else "") + (
        f"unseen {unexpected}" if unexpected else ""
    )
    raise ValueError(
        f"The feature names should match those that were passed during fit ({artifact}): "
        f"{detail or 'same names in another order'}"
    )


def _column(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "str":
        return np.asarray([str(v) for v in values], dtype=object)
    return np.asarray(values, dtype=dtype)


def _shaped(out: np.ndarray, how: Mapping[str, Any], index: Any) -> Any:
    if "column" in how:
        out = out[:, how["column"]]
    if how["ndim"] == 1:
        out = out.reshape(-1)
    out = out.astype(how["dtype"], copy=False)
    frame = how.get("frame")
    if frame is not None:
        import pandas as pd

        return pd.DataFrame(out, columns=frame, index=index)
    return out


def encode(value: Any) -> dict[str, Any]:
    """A fitted attribute as JSON data (``decode`` gives it back); ValueError if it is not
    a number, a string, or an array or list of them."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufUO":
        items = value.tolist()
        if value.dtype.kind == "O" and not all(isinstance(v, str) for v in value.ravel()):
            raise ValueError("an array of objects other than strings")
        return {"array": items, "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return {"scalar": value.item(), "dtype": str(value.dtype)}
    if isinstance(value, bool | int | float | str) or (
        isinstance(value, list) and all(isinstance(v, bool | int | float | str) for v in value)
    ):
        return {"value": value}
    raise ValueError(f"a {type(value).__name__}")


def decode(data: Mapping[str, Any]) -> Any:
    if "array" in data:
        return np.asarray(data["array"], dtype=data["dtype"])
    if "scalar" in data:
        return np.asarray(data["scalar"], dtype=data["dtype"])[()]
    return data["value"]
