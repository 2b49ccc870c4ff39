"""The built-in artifact formats, and what every format shares.

``Format`` (the interface a distribution implements to add one through the
``nbprod.artifact_formats`` entry-point group), the formats in the order they are tried
(``BUILTIN``: plain values as JSON, numpy, pandas as Arrow, scipy.sparse, xgboost UBJ,
LightGBM model text, CatBoost, statsmodels without its data, skops last), ``atomic``
writes, ``sha256``, and the errors a format raises. ``artifacts`` (the manifest, saving
and loading) imports this module; its name has the underscore it has in a generated
package, where the two files are copied side by side as ``_artifacts.py`` and
``_formats.py``.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import hashlib
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ENTRY_POINTS = "nbprod.artifact_formats"

PLAIN_HINT = (
    "store plain values (numbers, strings, lists, dicts, numpy arrays, pandas frames) or "
    "scikit-learn, xgboost, lightgbm, catboost or statsmodels objects; a distribution can "
    f"add a format for other types through the entry-point group {ENTRY_POINTS}"
)

NAMELESS_HINT = "define it with `def` or `class` at the top level of a cell, not inside a function"


class ArtifactIntegrityError(RuntimeError):
    """An artifact file is missing, or differs from the hash recorded when it was saved."""


class UnsupportedArtifact(TypeError):
    """No format can store this value without pickle; ``hint`` says what to do instead."""

    def __init__(self, message: str, hint: str = PLAIN_HINT) -> None:
        super().__init__(f"{message}\n  fix: {hint}")
        self.reason, self.hint = message, hint


class Format(abc.ABC):
    """One way to store a value in one file.

    A distribution adds a format by pointing an entry point of the group
    ``nbprod.artifact_formats`` at a subclass (or any object with these attributes);
    the entry point's name is the format's name in manifests.
    ``save`` writes ``path`` (use ``atomic`` so no half-written file is left) and returns
    what its ``load`` needs, as JSON data stored in the manifest entry; it raises
    ``UnsupportedArtifact`` for a value it handles but cannot store faithfully.
    """

    name = ""
    suffix = ""
    requires: tuple[str, ...] = ()  # top-level modules ``load`` imports
    distribution: dict[str, str] | None = None  # set for a format found by entry point

    @abc.abstractmethod
    def handles(self, value: Any) -> bool:
        """See the class docstring."""

    @abc.abstractmethod
    def save(self, value: Any, path: Path) -> dict[str, Any]:
        """See the class docstring."""

    @abc.abstractmethod
    def load(self, path: Path, entry: Mapping[str, Any]) -> Any:
        """See the class docstring."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write`` on a temporary file beside ``path`` (same suffix), then move it there."""
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix
    )
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_bytes(path: Path, data: bytes) -> None:
    atomic(path, lambda temporary: temporary.write_bytes(data))


def _imported(module: str) -> Any:
    """The module if the process imported it: a value of its types cannot exist otherwise."""
    return sys.modules.get(module)


class Json(Format):
    """Plain values (numbers, strings, booleans, None, and lists and string-keyed dicts of
    them) as JSON: readable, and loaded without importing any library. A value JSON would
    give back changed (a tuple, a float subclass) is left to the formats after this one."""

    name, suffix, requires = "json", ".json", ()

    def handles(self, value: Any) -> bool:
        return _plain_json(value)

    def save(self, value: Any, path: Path) -> dict[str, Any]:
        text = json.dumps(value, indent=1)
        if json.dumps(json.loads(text), indent=1) != text:
            raise UnsupportedArtifact(f"its JSON form {text[:80]!r} reads back as another value")
        atomic_bytes(path, text.encode())
        return {}

    def load(self, path: Path, entry: Mapping[str, Any]) -> Any:
        return json.loads(path.read_text(encoding="utf-8"))


def _plain_json(value: Any) -> bool:
    if value is None or type(value) in (bool, int, float, str):
        return True
    if type(value) is list:
        return all(_plain_json(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _plain_json(v) for k, v in value.items())
    return False


class Numpy(Format):
    name, suffix, requires = "numpy", ".npy", ("numpy",)

    def handles(self, value: Any) -> bool:
        np = _imported("numpy")
        return np is not None and type(value) is np.ndarray and not value.dtype.hasobject

    def save(self, value: Any, path: Path) -> dict[str, Any]:
        import numpy as np

        atomic(path, lambda temporary: np.save(temporary, value, allow_pickle=False))
        return {}

    def load(self, path: Path, entry: Mapping[str, Any]) -> Any:
        import numpy as np

        return np.load(path, allow_pickle=False)


class Pandas(Format):
    """Arrow IPC (Feather) through pyarrow, whose pandas metadata keeps dtypes and index.

    Parquet would lose categoricals whose categories are not strings. The round trip is
    checked at save: a frame that would not come back equal is refused, not changed.
    """

    name, suffix, requires = "pandas", ".feather", ("pandas", "pyarrow")

    def handles(self, value: Any) -> bool:
        pd = _imported("pandas")
        return pd is not None and isinstance(value, pd.DataFrame | pd.Series)

    def save(self, value: Any, path: Path) -> dict[str, Any]:
        import pandas as pd

        fields: dict[str, Any] = {}
        frame = value
        if isinstance(value, pd.Series):
            fields["series"] = _json_name(value.name)
            frame = value.to_frame(name="values")
        if not frame.columns.is_unique:  # Arrow needs unique names: keep them beside the file
            fields["columns"] = [_json_name(c) for c in frame.columns]
            frame = frame.set_axis([f"c{i}" for i in range(frame.shape[1])], axis=1)
        if getattr(frame.index, "freq", None) is not None:  # Arrow keeps no index frequency
            fields["freq"] = frame.index.freqstr
        atomic(path, frame.to_feather)
        back = self.load(path, fields)
        try:
            if isinstance(value, pd.Series):
                pd.testing.assert_series_equal(back, value, check_exact=True)
            else:
                pd.testing.assert_frame_equal(back, value, check_exact=True)
        except AssertionError as error:
            difference = " ".join(str(error).split())
            raise UnsupportedArtifact(
                f"it does not come back from Arrow unchanged ({difference})",
                "convert the columns that differ to plain dtypes (numbers, strings, "
                "categoricals, datetimes) before the end of the notebook",
            ) from None
        return fields

    def load(self, path: Path, entry: Mapping[str, Any]) -> Any:
        import pandas as pd

        frame = pd.read_feather(path)
        if "columns" in entry:
            frame.columns = pd.Index(entry["columns"], tupleize_cols=False)
        if "freq" in entry:
            frame.index = type(frame.index)(frame.index, freq=entry["freq"])
        if "series" in entry:
            return frame.iloc[:, 0].rename(entry["series"])
        return frame


class Sparse(Format):
    name, suffix, requires = "scipy.sparse", ".npz", ("scipy",)

    def handles(self, value: Any) -> bool:
        sparse = _imported("scipy.sparse")
        return sparse is not None and bool(sparse.issparse(value))

    def save(self, value: Any, path: Path) -> dict[str, Any]:
        import scipy.sparse

        if value.format not in ("csr", "csc", "bsr", "dia", "coo") or value.dtype.hasobject:
            raise UnsupportedArtifact(
                f"a {value.format} matrix of {value.dtype} cannot be saved without pickle",
                "convert it with .tocsr() (numbers only) before the end of the notebook",
            )
        atomic(path, lambda temporary: scipy.sparse.save_npz(temporary, value))
        back = self.load(path, {})  # a matrix, or an array, as it was
        if type(back) is not type(value) or back.dtype != value.dtype:
            raise UnsupportedArtifact(f"a {type(value).__name__} comes back as {type(back)}")
        return {}

    def load(self, path: Path, entry: Mapping[str, Any]) -> Any:
        import scipy.sparse

        return scipy.sparse.load_npz(path)


class XGBoost(Format):
    """xgboost's own UBJSON model format; a scikit-learn wrapper also keeps its parameters."""

    name, suffix, requires = "xgboost", ".ubj", ("xgboost",)

    def handles(self, value: Any) -> bool:
        xgb = _imported("xgboost")
        return xgb is not None and _public_class(xgb, value, (xgb.Booster, xgb.XGBModel))

    def save(self, value: Any, path: Path) -> dict[str, Any]:
        import xgboost as xgb

        fields: dict[str, Any] = {"class": type(value).__name__}
        if isinstance(value, xgb.XGBModel):
            fields["params"] = _json_params(value.get_params())
            fields["requires"] = ["sklearn"]
        atomic(path, lambda temporary: value.save_model(str(temporary)))
        return fields

    def load(self, path: Path, entry: Mapping[str, Any]) -> Any:
        import xgboost as xgb

        cls = _class_in(xgb, entry["class"], (xgb.Booster, xgb.XGBModel))
        model = cls(**entry.get("params", {}))
        model.load_model(str(path))
        return model


class LightGBM(Format):
    """The booster's model text; the rest of its state (and of a scikit-learn wrapper's)
    as JSON in the manifest, restored through the same ``__setstate__`` unpickling uses."""

    name, suffix, requires = "lightgbm", ".txt", ("lightgbm",)
    # The one helper object a fitted LGBMClassifier holds besides its booster.
    HELPERS = ("sklearn.preprocessing._label.LabelEncoder", "lightgbm.compat._LGBMLabelEncoder")

    def handles(self, value: Any) -> bool:
        lgb = _imported("lightgbm")
        return lgb is not None and _public_class(lgb, value, (lgb.Booster, lgb.LGBMModel))

    def save(self, value: Any, path: Path) -> dict[str, Any]:
        import lightgbm as lgb

        state = dict(value.__getstate__())  # may be the live __dict__: never change it
        booster = value if isinstance(value, lgb.Booster) else state.pop("_Booster")
        if booster is None:
            raise UnsupportedArtifact("it was never fitted", "fit it in a train cell")
        booster_state = dict(booster.__getstate__())
        text = booster_state.pop("_handle")
        fields: dict[str, Any] = {"class": type(value).__name__}
        fields["booster"] = _to_json(booster_state, self.HELPERS)
        if not isinstance(value, lgb.Booster):
            fields["state"] = _to_json(state, self.HELPERS)
            fields["requires"] = ["sklearn"]
        atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
        return fields

    def load(self, path: Path, entry: Mapping[str, Any]) -> Any:
        import lightgbm as lgb

        booster = lgb.Booster.__new__(lgb.Booster)
        state = _from_json(entry["booster"], self.HELPERS)
        booster.__setstate__({**state, "_handle": path.read_text(encoding="utf-8")})
        cls = _class_in(lgb, entry["class"], (lgb.Booster, lgb.LGBMModel))
        if cls is lgb.Booster:
            return booster
        model = cls.__new__(cls)
        model.__setstate__({**_from_json(entry["state"], self.HELPERS), "_Booster": booster})
        return model


class CatBoost(Format):
    name, suffix, requires = "catboost", ".cbm", ("catboost",)

    def handles(self, value: Any) -> bool:
        cb = _imported("catboost")
        return cb is not None and _public_class(cb, value, (cb.CatBoost,))

    def save(self, value: Any, path: Path) -> dict[str, Any]:
        if not value.is_fitted():
            raise UnsupportedArtifact("it was never fitted", "fit it in a train cell")
        atomic(path, lambda temporary: value.save_model(str(temporary), format="cbm"))
        return {"class": type(value).__name__}

    def load(self, path: Path, entry: Mapping[str, Any]) -> Any:
        import catboost as cb

        model = _class_in(cb, entry["class"], (cb.CatBoost,))()
        model.load_model(str(path), format="cbm")
        return model


class Skops(Format):
    """skops, loading back exactly the types that were in the value when it was saved."""

    name, suffix, requires = "skops", ".skops", ("skops",)

    def handles(self, value: Any) -> bool:
        return True

    def save(self, value: Any, path: Path) -> dict[str, Any]:
        import skops.io as sio  # imported when used: it loads most of scikit-learn

        _refuse_nested_frames(value)
        data = sio.dumps(value)
        trusted = sorted(sio.get_untrusted_types(data=data))
        nameless = [t for t in trusted if "<lambda>" in t or "<locals>" in t]
        if nameless:
            raise UnsupportedArtifact(
                f"it holds {', '.join(nameless)}: a lambda, or a function or class defined "
                "inside a function, has no name a package can import it by",
                NAMELESS_HINT,
            )
        atomic_bytes(path, data)
        return {"trusted": trusted, "requires": sorted(_skops_modules(data))}

    def load(self, path: Path, entry: Mapping[str, Any]) -> Any:
        import skops.io as sio

        return sio.loads(path.read_bytes(), trusted=list(entry.get("trusted", [])))


class Statsmodels(Skops):
    """statsmodels results without their training data (``remove_data``, the documented
    way to keep results for predicting), through skops. Statistics ``summary()`` shows
    are computed first, so they are kept."""

    name = "statsmodels"

    def handles(self, value: Any) -> bool:
        if _imported("statsmodels") is None:
            return False
        from statsmodels.base.model import Results
        from statsmodels.base.wrapper import ResultsWrapper

        return isinstance(value, Results | ResultsWrapper)

    def save(self, value: Any, path: Path) -> dict[str, Any]:
        model = value.model
        if getattr(model, "formula", None) is not None:
            raise UnsupportedArtifact(
                "a statsmodels model fitted from a formula re-evaluates the formula on its "
                "training data when it is loaded, which no safe format can do",
                "fit it from arrays (sm.OLS(y, sm.add_constant(X))) and build X in a "
                "features cell, so prediction builds it the same way",
            )
        results = copy.deepcopy(value)
        # a statistic summary() needs may not exist for every model
        with warnings.catch_warnings(), contextlib.suppress(Exception):
            warnings.simplefilter("ignore")
            results.summary()
        for cached in ("xnames", "ynames", "param_names", "cov_names"):
            getattr(results.model.data, cached, None)  # names are derived from the data
        results.remove_data()
        fields = super().save(results, path)
        fields["requires"].append("statsmodels")
        return fields


BUILTIN: list[Format] = [
    Json(),
    Numpy(),
    Pandas(),
    Sparse(),
    XGBoost(),
    LightGBM(),
    CatBoost(),
    Statsmodels(),
    Skops(),
]


def _refuse_nested_frames(value: Any) -> None:
    """skops cannot store pandas objects (pandas 3's are beyond its reach), but the pandas
    format can, one artifact at a time."""
    pd = _imported("pandas")
    if pd is None or not isinstance(value, dict | list | tuple):
        return
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, pd.DataFrame | pd.Series | pd.Index):
            raise UnsupportedArtifact(
                f"it holds a pandas {type(item).__name__} at [{key!r}], which skops cannot store",
                "make each frame or series an artifact of its own (a name assigned in a train "
                "cell): those are saved as Arrow files",
            )


def _skops_modules(data: bytes) -> set[str]:
    """The top-level modules of every object in a skops file, trusted by default or not."""
    import io
    import zipfile

    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("__module__"), str):
                found.add(node["__module__"].split(".")[0])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        walk(json.loads(archive.read("schema.json")))
    return found


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _public_class(module: Any, value: Any, bases: tuple[type, ...]) -> bool:
    """Whether ``value`` is exactly a class the module exports (a subclass may add state)."""
    cls = type(value)
    return getattr(module, cls.__name__, None) is cls and issubclass(cls, bases)


def _class_in(module: Any, name: str, bases: tuple[type, ...]) -> Any:
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, bases)):
        raise ArtifactIntegrityError(f"{module.__name__}.{name} is not a model class it can load")
    return cls


def _json_name(name: Any) -> Any:
    if hasattr(name, "item") and not isinstance(name, str | bytes):
        name = name.item()  # a numpy scalar
    if name is None or isinstance(name, str | int | float | bool):
        return name
    return str(name)  # the round-trip check then refuses what this changed


def _json_params(params: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in params.items():
        try:
            if json.loads(json.dumps(value)) == value or value != value:
                continue
        except (TypeError, ValueError):
            pass
        raise UnsupportedArtifact(
            f"its parameter {key}={value!r} is not plain data (JSON)",
            "pass names and numbers as parameters (a built-in objective or metric name)",
        )
    return dict(params)


def _to_json(value: Any, helpers: Sequence[str]) -> Any:
    """JSON data for plain values, numpy arrays and the ``helpers`` classes, else refuse."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_to_json(v, helpers) for v in value]
    if isinstance(value, tuple):
        return {"tuple": [_to_json(v, helpers) for v in value]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        # also OrderedDict and defaultdict, which compare equal to the dict they come back as
        return {"dict": {k: _to_json(v, helpers) for k, v in value.items()}}
    if isinstance(value, dict):
        return {"items": [[_to_json(k, helpers), _to_json(v, helpers)] for k, v in value.items()]}
    np = _imported("numpy")
    if np is not None and isinstance(value, np.generic):
        return {"scalar": _to_json(value.item(), helpers), "dtype": value.dtype.str}
    if np is not None and type(value) is np.ndarray:
        items = list(value.ravel()) if value.dtype.hasobject else value.ravel().tolist()
        return {
            "ndarray": [_to_json(v, helpers) for v in items],  # refuses dates, for one
            "dtype": value.dtype.str,
            "shape": list(value.shape),
        }
    if qualified_name(type(value)) in helpers:
        return {
            "object": qualified_name(type(value)),
            "state": _to_json(value.__getstate__(), helpers),
        }
    raise UnsupportedArtifact(
        f"its state holds a {qualified_name(type(value))}, which is not plain data",
        "use built-in names for objectives and metrics rather than functions or objects",
    )


def _from_json(data: Any, helpers: Sequence[str]) -> Any:
    if not isinstance(data, list | dict):
        return data
    if isinstance(data, list):
        return [_from_json(v, helpers) for v in data]
    if "tuple" in data:
        return tuple(_from_json(v, helpers) for v in data["tuple"])
    if "dict" in data:
        return {k: _from_json(v, helpers) for k, v in data["dict"].items()}
    if "items" in data:
        return {_from_json(k, helpers): _from_json(v, helpers) for k, v in data["items"]}
    import numpy as np

    if "scalar" in data:
        return np.dtype(data["dtype"]).type(_from_json(data["scalar"], helpers))
    if "ndarray" in data:
        array = np.empty(len(data["ndarray"]), dtype=np.dtype(data["dtype"]))
        array[:] = [_from_json(v, helpers) for v in data["ndarray"]]
        return array.reshape(data["shape"])
    if data.get("object") in helpers:
        import importlib

        module, _, name = data["object"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        made = cls.__new__(cls)
        made.__setstate__(_from_json(data["state"], helpers))
        return made
    raise ArtifactIntegrityError(f"the manifest holds state this loader does not know: {data!r}")
