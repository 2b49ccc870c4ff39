"""Artifact formats: each built-in format round-trips its values, the registry picks the
first that handles a value, entry points add formats, and a value none can store fails
with one message naming it, its type and its cell."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from fractions import Fraction
from pathlib import Path
from typing import Any

import catboost
import lightgbm
import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import statsmodels.api as sm
import statsmodels.formula.api as smf
import xgboost
from nbbuild import write_notebook
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tools import make_venv, nbprod

from nbprod.extract.dependencies import pins
from nbprod.runtime.artifacts import (
    ArtifactIntegrityError,
    MissingFormat,
    UnsupportedArtifact,
    load_artifacts,
    save_artifacts,
)


def round_trip(tmp_path: Path, value: Any, name: str = "value") -> tuple[Any, dict[str, Any]]:
    """The value as loaded back, and its manifest entry."""
    manifest = save_artifacts({name: value}, tmp_path)
    return load_artifacts(tmp_path)[name], manifest["artifacts"][name]


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120)})
    labels = pd.Series(np.where(x.a + rng.normal(scale=0.5, size=120) > 0, "yes", "no"))
    return {"x": x, "labels": labels, "codes": (labels == "yes").astype(int), "target": x.a * 2}


# -- numpy, pandas, scipy.sparse -------------------------------------------------------------
@pytest.mark.parametrize(
    "array",
    [np.arange(6.0).reshape(2, 3), np.array([1, 2], dtype="uint8"), np.array(["a", "bc"])],
    ids=["float-2d", "uint8", "unicode"],
)
def test_numpy_arrays_are_npy_files(tmp_path: Path, array: np.ndarray) -> None:
    back, entry = round_trip(tmp_path, array)
    assert entry["format"] == "numpy" and entry["file"] == "value.npy"
    assert back.dtype == array.dtype and np.array_equal(back, array)
    assert entry["requires"] == ["numpy"] and entry["versions"] == {"numpy": np.__version__}


def test_object_arrays_are_not_for_npy(tmp_path: Path) -> None:
    back, entry = round_trip(tmp_path, np.array(["a", 1, None], dtype=object))
    assert entry["format"] == "skops"
    assert back.tolist() == ["a", 1, None]


FRAMES = {
    "pandas-3-strings": pd.DataFrame({"city": ["Lyon", None, "Oslo"], "x": [1.5, np.nan, 3.0]}),
    "categoricals": pd.DataFrame(
        {
            "ordered": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True),
            "integers": pd.Categorical([3, 1, 3]),
        }
    ),
    "datetimes": pd.DataFrame(
        {
            "naive": pd.to_datetime(["2020-01-01", None, "2021-05-05"]),
            "zoned": pd.date_range("2020-03-29", periods=3, tz="Europe/Paris"),
            "span": pd.to_timedelta([1, 2, 3], unit="s"),
        }
    ),
    "nullable": pd.DataFrame(
        {"i": pd.array([1, None, 3], dtype="Int64"), "b": pd.array([True, None, False])}
    ),
    "string-index": pd.DataFrame({"x": [1, 2]}, index=pd.Index(["k1", "k2"], name="key")),
    "multi-index": pd.DataFrame(
        {"x": [1, 2]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"])
    ),
    "daily-index": pd.DataFrame({"x": [1, 2, 3]}, index=pd.date_range("2024", periods=3)),
    "integer-columns": pd.DataFrame(np.eye(2)),
    "duplicate-columns": pd.DataFrame([[1, "a"]], columns=["x", "x"]),
    "named-columns": pd.DataFrame({"x": [1]}).rename_axis(columns="feature"),
    "empty": pd.DataFrame({"x": pd.Series([], dtype="float32")}),
}


@pytest.mark.parametrize("frame", FRAMES.values(), ids=FRAMES.keys())
def test_data_frames_come_back_equal_with_dtypes_and_index(tmp_path: Path, frame: Any) -> None:
    back, entry = round_trip(tmp_path, frame)
    assert entry["format"] == "pandas" and entry["requires"] == ["pandas", "pyarrow"]
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert back.index.equals(frame.index) and back.index.dtype == frame.index.dtype
    assert getattr(back.index, "freq", None) == getattr(frame.index, "freq", None)


@pytest.mark.parametrize(
    "series",
    [
        pd.Series(["u1", "u2", None], name="ids"),
        pd.Series([0.5, 0.25], index=pd.Index(["Lyon", "Oslo"], name="city"), name="mean"),
        pd.Series([1, 2], name=3),
        pd.Series(pd.Categorical(["a", "b"]), name=None),
    ],
    ids=["strings", "string-index", "integer-name", "unnamed-categorical"],
)
def test_series_come_back_equal_with_name_and_index(tmp_path: Path, series: Any) -> None:
    back, entry = round_trip(tmp_path, series)
    assert entry["format"] == "pandas"
    pd.testing.assert_series_equal(back, series, check_exact=True)
    assert back.name == series.name


def test_a_frame_arrow_would_change_is_refused_naming_the_difference(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedArtifact) as raised:
        save_artifacts({"tokens": pd.DataFrame({"t": [[1, 2], [3]]})}, tmp_path, {"tokens": [3, 1]})
    text = str(raised.value)
    assert text.startswith("cell 3, line 1: artifact `tokens` (pandas.DataFrame) cannot be saved")
    assert "does not come back from Arrow unchanged" in text and "\n  fix: convert" in text
    assert not (tmp_path / "tokens.feather").exists()


@pytest.mark.parametrize(
    "matrix",
    [
        scipy.sparse.random(6, 4, density=0.3, format="csr", random_state=0),
        scipy.sparse.csc_array(np.eye(3, dtype="float32")),
        scipy.sparse.coo_matrix(np.array([[0, 2], [5, 0]])),
    ],
    ids=["csr-matrix", "csc-array", "coo-int"],
)
def test_sparse_matrices_are_npz_files(tmp_path: Path, matrix: Any) -> None:
    back, entry = round_trip(tmp_path, matrix)
    assert entry["format"] == "scipy.sparse" and entry["requires"] == ["scipy"]
    assert type(back) is type(matrix) and back.dtype == matrix.dtype
    assert np.array_equal(back.toarray(), matrix.toarray())


def test_a_sparse_format_npz_cannot_hold_says_how_to_convert(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedArtifact, match=r"a lil matrix .*\n  fix: convert it with"):
        save_artifacts({"m": scipy.sparse.lil_matrix(np.eye(2))}, tmp_path)


# -- gradient boosting -----------------------------------------------------------------------
def test_xgboost_estimators_and_boosters(tmp_path: Path, data: dict[str, Any]) -> None:
    x = data["x"]
    classifier = xgboost.XGBClassifier(n_estimators=4, max_depth=2).fit(x, data["codes"])
    regressor = xgboost.XGBRegressor(n_estimators=4, max_depth=2).fit(x, data["target"])
    values = {"classifier": classifier, "regressor": regressor, "booster": regressor.get_booster()}
    manifest = save_artifacts(values, tmp_path)["artifacts"]
    back = load_artifacts(tmp_path)
    assert {e["format"] for e in manifest.values()} == {"xgboost"}
    assert manifest["classifier"]["class"] == "XGBClassifier"
    assert manifest["classifier"]["params"]["n_estimators"] == 4
    [distribution] = importlib.metadata.packages_distributions()["xgboost"]  # or xgboost-cpu
    assert manifest["classifier"]["versions"][distribution] == xgboost.__version__
    assert manifest["classifier"]["requires"] == ["sklearn", "xgboost"]
    assert manifest["booster"]["requires"] == ["xgboost"]
    assert np.array_equal(back["classifier"].predict_proba(x), classifier.predict_proba(x))
    assert np.array_equal(back["classifier"].predict(x), classifier.predict(x))
    assert back["classifier"].get_params()["max_depth"] == 2
    assert np.array_equal(back["regressor"].predict(x), regressor.predict(x))
    matrix = xgboost.DMatrix(x)
    assert np.array_equal(back["booster"].predict(matrix), values["booster"].predict(matrix))


def test_xgboost_with_a_function_as_parameter_is_refused(
    tmp_path: Path, data: dict[str, Any]
) -> None:
    def squared(labels: Any, predictions: Any) -> float:
        return float(((labels - predictions) ** 2).mean())

    model = xgboost.XGBRegressor(n_estimators=2, eval_metric=squared).fit(data["x"], data["target"])
    with pytest.raises(UnsupportedArtifact, match=r"its parameter eval_metric=<function"):
        save_artifacts({"model": model}, tmp_path)


def test_lightgbm_estimators_rebuild_from_model_text_and_json_state(
    tmp_path: Path, data: dict[str, Any]
) -> None:
    x = data["x"].assign(kind=pd.Categorical(np.resize(["p", "q", "r"], 120)))
    labels = data["labels"]
    classifier = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, labels)
    regressor = lightgbm.LGBMRegressor(n_estimators=5, verbose=-1).fit(x, data["target"])
    manifest = save_artifacts({"classifier": classifier, "regressor": regressor}, tmp_path)
    back = load_artifacts(tmp_path)
    entry = manifest["artifacts"]["classifier"]
    assert entry["format"] == "lightgbm" and entry["file"] == "classifier.txt"
    assert (tmp_path / "classifier.txt").read_text().startswith("tree\n")
    assert entry["requires"] == ["lightgbm", "sklearn"] and "scikit-learn" in entry["versions"]
    clone = back["classifier"]
    assert type(clone) is lightgbm.LGBMClassifier
    assert np.array_equal(clone.predict_proba(x), classifier.predict_proba(x))
    assert clone.predict(x).tolist() == classifier.predict(x).tolist()
    assert (
        clone.classes_.tolist() == ["no", "yes"] and clone.get_params() == classifier.get_params()
    )
    assert clone.feature_name_ == classifier.feature_name_
    assert np.array_equal(back["regressor"].predict(x), regressor.predict(x))
    # saving read the fitted model's state: it must still predict
    assert classifier.predict(x).tolist() == clone.predict(x).tolist()


def test_a_lightgbm_booster_keeps_its_best_iteration(tmp_path: Path, data: dict[str, Any]) -> None:
    x, target = data["x"], data["target"]
    train = lightgbm.Dataset(x[:80], target[:80])
    valid = lightgbm.Dataset(x[80:], target[80:], reference=train)
    booster = lightgbm.train(
        {"objective": "regression", "verbose": -1, "learning_rate": 0.5},
        train,
        num_boost_round=60,
        valid_sets=[valid],
        callbacks=[lightgbm.early_stopping(2, verbose=False)],
        keep_training_booster=True,  # keeps the trees past the best iteration
    )
    assert 0 < booster.best_iteration < booster.current_iteration()
    back, entry = round_trip(tmp_path, booster)
    assert entry["format"] == "lightgbm" and entry["requires"] == ["lightgbm"]
    assert back.best_iteration == booster.best_iteration
    assert np.array_equal(back.predict(x), booster.predict(x))


def test_lightgbm_with_a_custom_objective_is_refused(tmp_path: Path, data: dict[str, Any]) -> None:
    def objective(labels: Any, predictions: Any) -> tuple[Any, Any]:
        return predictions - labels, np.ones_like(predictions)

    model = lightgbm.LGBMRegressor(n_estimators=2, objective=objective, verbose=-1)
    model.fit(data["x"], data["target"])
    with pytest.raises(UnsupportedArtifact, match=r"builtins\.function, which is not plain data"):
        save_artifacts({"model": model}, tmp_path)


def test_catboost_classifier_and_regressor_are_cbm_files(
    tmp_path: Path, data: dict[str, Any]
) -> None:
    x = data["x"]
    options = {"iterations": 5, "verbose": False, "allow_writing_files": False}
    classifier = catboost.CatBoostClassifier(**options).fit(x, data["labels"])
    regressor = catboost.CatBoostRegressor(**options).fit(x, data["target"])
    manifest = save_artifacts({"classifier": classifier, "regressor": regressor}, tmp_path)
    back = load_artifacts(tmp_path)
    entry = manifest["artifacts"]["classifier"]
    assert entry["format"] == "catboost" and entry["file"] == "classifier.cbm"
    assert entry["class"] == "CatBoostClassifier" and entry["requires"] == ["catboost"]
    assert type(back["classifier"]) is catboost.CatBoostClassifier
    assert np.array_equal(back["classifier"].predict_proba(x), classifier.predict_proba(x))
    assert back["classifier"].predict(x).tolist() == classifier.predict(x).tolist()
    assert np.array_equal(back["regressor"].predict(x), regressor.predict(x))


# -- statsmodels, skops ----------------------------------------------------------------------
def test_statsmodels_results_predict_equal_without_their_data(
    tmp_path: Path, data: dict[str, Any]
) -> None:
    design = sm.add_constant(data["x"])
    ols = sm.OLS(data["target"] + data["x"].b, design).fit()
    glm = sm.GLM(data["codes"], design, family=sm.families.Binomial()).fit()
    manifest = save_artifacts({"ols": ols, "glm": glm}, tmp_path)["artifacts"]
    back = load_artifacts(tmp_path)
    assert manifest["ols"]["format"] == "statsmodels" and manifest["ols"]["trusted"]
    assert {"statsmodels", "skops"} <= set(manifest["ols"]["requires"])
    for name, results in (("ols", ols), ("glm", glm)):
        pd.testing.assert_series_equal(
            back[name].predict(design.head(7)), results.predict(design.head(7)), check_exact=True
        )
        pd.testing.assert_series_equal(back[name].params, results.params, check_exact=True)
        pd.testing.assert_series_equal(back[name].bse, results.bse, check_exact=True)
    assert ols.model.data.orig_exog is not None, "saving must not strip the notebook's results"


def test_statsmodels_formula_results_are_refused(tmp_path: Path, data: dict[str, Any]) -> None:
    frame = data["x"].assign(y=data["target"])
    results = smf.ols("y ~ a + b", data=frame).fit()
    with pytest.raises(UnsupportedArtifact) as raised:
        save_artifacts({"ols": results}, tmp_path, {"ols": [5, 2]})
    assert re.match(
        r"cell 5, line 2: artifact `ols` \(statsmodels\.regression\.linear_model\."
        r"RegressionResultsWrapper\) cannot be saved without pickle: a statsmodels model fitted "
        r"from a formula",
        str(raised.value),
    )
    assert raised.value.hint.startswith("fit it from arrays (sm.OLS(y, sm.add_constant(X)))")


def test_skops_records_the_modules_its_trusted_types_need(
    tmp_path: Path, data: dict[str, Any]
) -> None:
    pipeline = make_pipeline(StandardScaler(), lightgbm.LGBMRegressor(n_estimators=3, verbose=-1))
    pipeline.fit(data["x"], data["target"])
    back, entry = round_trip(tmp_path, pipeline)
    assert entry["format"] == "skops"
    assert entry["requires"] == ["lightgbm", "numpy", "sklearn", "skops"]
    assert set(entry["versions"]) == {"lightgbm", "numpy", "scikit-learn", "skops"}
    assert np.array_equal(back.predict(data["x"]), pipeline.predict(data["x"]))


def test_an_entry_without_format_is_skops_as_packages_generated_before(tmp_path: Path) -> None:
    save_artifacts({"columns": ("a", "b")}, tmp_path)  # a tuple: JSON would make it a list
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    entry = manifest["artifacts"]["columns"]
    manifest["artifacts"]["columns"] = {k: entry[k] for k in ("file", "sha256", "type", "trusted")}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert load_artifacts(tmp_path) == {"columns": ("a", "b")}


@pytest.mark.parametrize(
    "value",
    [0.35, 7, "label", None, True, ["a", "b"], {"low": [1, 2.5], "name": None}, float("nan")],
    ids=["float", "int", "str", "none", "bool", "list", "dict", "nan"],
)
def test_plain_values_are_json_files_loaded_without_any_library(tmp_path: Path, value: Any) -> None:
    back, entry = round_trip(tmp_path, value)
    assert entry["format"] == "json" and entry["file"] == "value.json"
    assert entry["requires"] == []
    assert type(back) is type(value)
    assert back == value or (value != value and back != back)


@pytest.mark.parametrize(
    "value",
    [(1, 2), {1: "a"}, [np.float64(1.0)], np.int64(3)],
    ids=["tuple", "int-keys", "numpy-in-list", "numpy-scalar"],
)
def test_values_json_would_change_are_left_to_the_other_formats(tmp_path: Path, value: Any) -> None:
    back, entry = round_trip(tmp_path, value)
    assert entry["format"] != "json"
    assert type(back) is type(value)


def test_a_changed_model_file_is_refused_whatever_its_format(
    tmp_path: Path, data: dict[str, Any]
) -> None:
    model = xgboost.XGBRegressor(n_estimators=2).fit(data["x"], data["target"])
    save_artifacts({"model": model, "means": data["x"].mean()}, tmp_path)
    for file in ("model.ubj", "means.feather"):
        content = bytearray((tmp_path / file).read_bytes())
        content[len(content) // 2] ^= 0x01
        (tmp_path / file).write_bytes(bytes(content))
    for name in ("model", "means"):
        with pytest.raises(ArtifactIntegrityError, match=rf"'{name}'.*refusing to load it"):
            load_artifacts(tmp_path, [name])


# -- what no format can store ----------------------------------------------------------------
def test_a_lambda_inside_an_artifact_names_artifact_type_and_cell(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedArtifact) as raised:
        save_artifacts({"scorers": {"double": lambda v: 2 * v}}, tmp_path, {"scorers": [4, 2]})
    assert str(raised.value) == (
        "cell 4, line 2: artifact `scorers` (builtins.dict) cannot be saved without pickle: "
        f"it holds {__name__}.<lambda>: a lambda, or a function or class defined inside a "
        "function, has no name a package can import it by\n"
        "  fix: define it with `def` or `class` at the top level of a cell, not inside a function"
    )
    assert not list(tmp_path.iterdir()), "nothing is left of an artifact that was not saved"


def test_a_frame_inside_a_container_says_to_make_it_an_artifact(tmp_path: Path) -> None:
    """pandas 3 objects are beyond skops, and a dict holding one is skops' to save."""
    tables = {"cities": pd.DataFrame({"city": ["Lyon", "Oslo"]})}
    with pytest.raises(UnsupportedArtifact) as raised:
        save_artifacts({"tables": tables}, tmp_path, {"tables": [2, 1]})
    assert str(raised.value) == (
        "cell 2, line 1: artifact `tables` (builtins.dict) cannot be saved without pickle: "
        "it holds a pandas DataFrame at ['cities'], which skops cannot store\n"
        "  fix: make each frame or series an artifact of its own (a name assigned in a train "
        "cell): those are saved as Arrow files"
    )


def test_what_skops_cannot_store_is_never_its_raw_sentence_alone(tmp_path: Path) -> None:
    nested = [{"cities": pd.DataFrame({"city": ["Lyon"]})}]  # deeper than the check above
    with pytest.raises(UnsupportedArtifact) as raised:
        save_artifacts({"nested": nested}, tmp_path, {"nested": [3, 4]})
    text = str(raised.value)
    assert text.startswith(
        "cell 3, line 4: artifact `nested` (builtins.list) cannot be saved without pickle: "
        "skops failed: TypeError: "
    )
    assert "\n  fix: store plain values" in text and "nbprod.artifact_formats" in text


def test_a_format_nothing_provides_says_what_to_install(tmp_path: Path) -> None:
    save_artifacts({"columns": ["a"]}, tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["artifacts"]["columns"]["format"] = "parquet-plus"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MissingFormat, match=r"'columns' was saved in the format 'parquet-plus'"):
        load_artifacts(tmp_path)


# -- third-party formats ---------------------------------------------------------------------
PLUGIN = """
from fractions import Fraction
from pathlib import Path


class FractionFormat:
    name = "ignored: the entry point names the format"
    suffix = ".fraction"
    requires = ("nbprod_fraction_format",)

    def handles(self, value):
        return isinstance(value, Fraction)

    def save(self, value, path):
        from nbprod.runtime.artifacts import atomic

        atomic(path, lambda temporary: temporary.write_text(str(value)))
        return {"denominator": value.denominator}

    def load(self, path, entry):
        value = Fraction(Path(path).read_text())
        assert value.denominator == entry["denominator"]
        return value
"""


def test_a_distribution_adds_a_format_through_its_entry_point(tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "nbprod_fraction_format-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "nbprod_fraction_format.py").write_text(PLUGIN)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: nbprod-fraction-format\nVersion: 1.0\n"
    )
    (info / "top_level.txt").write_text("nbprod_fraction_format\n")
    (info / "entry_points.txt").write_text(
        "[nbprod.artifact_formats]\nfraction = nbprod_fraction_format:FractionFormat\n"
    )
    artifacts = tmp_path / "artifacts"

    def python(code: str, *path: Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, path))}
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), str(artifacts)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    saved = python(
        """
        import sys
        from fractions import Fraction
        from pathlib import Path
        from nbprod.runtime.artifacts import save_artifacts
        save_artifacts({"ratio": Fraction(3, 4), "label": "x"}, Path(sys.argv[1]))
        """,
        site,
    )
    assert saved.returncode == 0, saved.stderr
    entries = json.loads((artifacts / "manifest.json").read_text())["artifacts"]
    assert entries["ratio"]["format"] == "fraction" and entries["label"]["format"] == "json"
    assert (artifacts / "ratio.fraction").read_text() == "3/4"
    assert entries["ratio"]["distribution"] == {"name": "nbprod-fraction-format", "version": "1.0"}
    assert entries["ratio"]["requires"] == ["nbprod_fraction_format"]
    assert entries["ratio"]["versions"] == {"nbprod-fraction-format": "1.0"}
    runtime, _ = pins({"packages": {}, "modules": []}, set(), {"artifacts": entries})
    assert "nbprod-fraction-format~=1.0" in runtime

    load = """
        import sys
        from pathlib import Path
        from nbprod.runtime.artifacts import load_artifacts
        print(repr(load_artifacts(Path(sys.argv[1]))["ratio"]))
        """
    loaded = python(load, site)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == repr(Fraction(3, 4))
    missing = python(load)
    assert missing.returncode != 0
    assert (
        "MissingFormat: artifact 'ratio' was saved in the format 'fraction', which no "
        "installed distribution provides (entry-point group nbprod.artifact_formats): "
        "install nbprod-fraction-format==1.0"
    ) in missing.stderr


def test_the_run_manifest_pins_what_the_loaders_import(tmp_path: Path) -> None:
    entries = {
        "model": {"format": "xgboost", "versions": {"xgboost": "3.2.0", "scikit-learn": "1.9.1"}},
        "means": {"format": "pandas", "versions": {"pandas": "3.1.1", "pyarrow": "26.0.1"}},
        "old": {"file": "old.skops", "trusted": []},
        # an instance of a notebook class, saved while an earlier build was installed
        "thing": {"format": "skops", "versions": {"churn-model": "0.1", "skops": "0.16.0"}},
    }
    packages = {"numpy": "2.4.6", "pandas": "3.1.1", "skops": "0.16.0"}
    environment = {"packages": packages, "modules": ["pandas"]}
    runtime, _ = pins(environment, {"pandas"}, {"artifacts": entries}, "churn_model")
    without, _ = pins(environment, {"pandas"})
    assert "pandas~=3.1.1" in without
    assert set(runtime) - set(without) == {
        "xgboost~=3.2.0",
        "scikit-learn==1.9.1",
        "pyarrow~=26.0.1",
    }


# -- one notebook, end to end ----------------------------------------------------------------
TRAIN = """\
import numpy as np
import pandas as pd
import xgboost as xgb
import lightgbm as lgb
import catboost as cb
import statsmodels.api as sm

features = ["a", "b"]
X = rows[features]
xgb_model = xgb.XGBClassifier(n_estimators=rounds, max_depth=2).fit(X, rows.bought)
lgb_model = lgb.LGBMClassifier(n_estimators=rounds, verbose=-1).fit(X, rows.segment)
lgb_regressor = lgb.LGBMRegressor(n_estimators=rounds, verbose=-1).fit(X, rows.spend)
cb_model = cb.CatBoostRegressor(iterations=rounds, verbose=False, allow_writing_files=False)
cb_model.fit(X, rows.spend)
ols = sm.OLS(rows.spend, sm.add_constant(X)).fit()
city_means = rows.groupby("city").spend.mean()
regions = pd.DataFrame({"city": ["Lyon", "Oslo", "Rome"], "region": ["south", "north", "south"]})
"""
# Numbers only: the generated HTTP test compares a frame's rows as one array, so
# strings beside floats would turn every value into a string.
INFERENCE = """\
def predict(frame):
    X = frame[features]
    region = frame.city.map(dict(zip(regions.city, regions.region)))
    return pd.DataFrame(
        {
            "bought": xgb_model.predict_proba(X)[:, 1],
            "high": (lgb_model.predict(X) == "high").astype(float),
            "spend_lgb": lgb_regressor.predict(X),
            "spend_cb": cb_model.predict(X),
            "spend_ols": np.asarray(ols.predict(sm.add_constant(X, has_constant="add"))),
            "city_mean": frame.city.map(city_means).to_numpy(dtype=float),
            "north": (region == "north").to_numpy(dtype=float),
        },
        index=frame.index,
    )
"""
DATA = """\
import numpy as np
import pandas as pd

rng = np.random.default_rng(7)
rows = pd.DataFrame({"a": rng.normal(size=150), "b": rng.normal(size=150)})
rows["city"] = rng.choice(["Lyon", "Oslo", "Rome"], size=150)
rows["spend"] = 3 * rows.a - rows.b + rng.normal(scale=0.3, size=150)
rows["bought"] = (rows.spend > 0).astype(int)
rows["segment"] = np.where(rows.b > 0, "high", "low")
"""


@pytest.mark.slow
def test_a_notebook_of_every_framework_ships_a_package_that_passes_its_tests(
    tmp_path: Path,
) -> None:
    notebook = write_notebook(
        tmp_path / "frameworks.ipynb",
        ("parameters", "rounds = 8"),
        ("data", DATA),
        ("train", TRAIN),
        ("inference", INFERENCE),
        (None, "predict(rows.head(20))"),
        ("test", "assert set(predict(rows.head(3)).high) <= {0.0, 1.0}"),
        nbprod={"name": "frameworks"},
    )
    package = tmp_path / "package"
    run = nbprod("run", notebook, "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(run.stdout)
    # with the ONNX fast path: xgboost and lightgbm convert (onnxmltools), the rest stay
    extract = nbprod("extract", notebook, "--run", summary["id"], "-o", package, "--onnx")
    assert extract.returncode == 0, extract.stdout + extract.stderr
    manifest = json.loads((Path(summary["folder"]) / "artifacts" / "manifest.json").read_text())
    formats = {name: entry["format"] for name, entry in manifest["artifacts"].items()}
    assert formats == {
        "xgb_model": "xgboost",
        "lgb_model": "lightgbm",
        "lgb_regressor": "lightgbm",
        "cb_model": "catboost",
        "ols": "statsmodels",
        "city_means": "pandas",
        "regions": "pandas",
        "features": "json",
    }
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    runtime = {re.split("[=~]=", pin)[0]: pin for pin in project["dependencies"]}
    # pyarrow only from the manifest: no code of the notebook imports it
    providers = importlib.metadata.packages_distributions()
    for module in ("xgboost", "lightgbm", "catboost", "statsmodels", "pyarrow"):
        [distribution] = providers[module]  # xgboost may come as xgboost-cpu
        assert re.fullmatch(rf"{distribution}~=[0-9.]+", runtime[distribution]), runtime
    assert runtime["scikit-learn"].startswith("scikit-learn==")
    shipped = json.loads(
        (package / "src" / "frameworks" / "artifacts" / "manifest.json").read_text()
    )
    onnx = {name: entry.get("onnx", {}) for name, entry in shipped["artifacts"].items()}
    converted = {name for name, entry in onnx.items() if "files" in entry}
    assert converted == {"xgb_model", "lgb_model", "lgb_regressor"}, onnx
    assert {onnx[name]["converter"].split()[0] for name in converted} == {"onnxmltools"}
    assert "cannot convert CatBoostRegressor" in onnx["cb_model"]["refused"]
    assert "cannot convert" in onnx["ols"]["refused"]
    assert onnx["city_means"] == onnx["regions"] == {}  # data, not models: not in the card
    assert "onnxruntime" in " ".join(project["optional-dependencies"]["test"])

    python = make_venv(tmp_path / "venv", f"{package}[test]")
    result = subprocess.run(
        [str(python), "-m", "pytest", "-v", "-p", "no:cacheprovider"],
        cwd=package,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout and "skipped" not in result.stdout
    assert "test_the_onnx_path_runs_every_converted_model_on_onnx_runtime PASSED" in result.stdout


@pytest.mark.slow
def test_a_run_whose_artifact_no_format_stores_names_it_on_the_command_line(
    tmp_path: Path,
) -> None:
    notebook = write_notebook(
        tmp_path / "tables.ipynb",
        ("data", "import pandas as pd\nxs = [1.0, 2.0]"),
        (
            "train",
            "\ncities = pd.DataFrame({'city': ['Lyon', 'Oslo']})\ntables = {'cities': cities}",
        ),
        ("inference", "def predict(x):\n    return len(tables['cities']) * x"),
        (None, "predict(3.0)"),
    )
    result = nbprod("run", notebook)
    assert result.returncode == 1
    assert (
        "failed: cell 2 (train), line 3: artifact `tables` (builtins.dict) cannot be saved "
        "without pickle: it holds a pandas DataFrame at ['cities'], which skops cannot store\n"
        "  fix: make each frame or series an artifact of its own"
    ) in result.stderr, result.stderr
