"""Shapes of real notebooks the analysis must read as training really behaves: objects
made in one cell and fitted in another, artifacts changed after training, inference
cells that also evaluate, package names that would shadow a library, and advice that
says what each choice of role means."""

from __future__ import annotations

from pathlib import Path

import pytest
from nbbuild import build, write_notebook

from nbprod.analysis.analyzer import Analysis, analyze
from nbprod.notebook import load_notebook

TEXTS = (
    "data",
    "import pandas as pd\n"
    "df = pd.DataFrame({'text': ['a b', 'b c', 'c d', 'a d'], 'y': [0, 1, 1, 0]})",
)
VECTORIZER = (
    "features",
    "from sklearn.feature_extraction.text import TfidfVectorizer\ntfidf = TfidfVectorizer()",
)
FIT = (
    "train",
    "from sklearn.linear_model import LogisticRegression\n"
    "X = tfidf.fit_transform(df.text)\n"
    "model = LogisticRegression().fit(X, df.y)",
)
PREDICT = ("inference", "def predict(texts):\n    return model.predict(tfidf.transform(texts))")


def check(tmp_path: Path, *cells: tuple[str | None, str], name: str = "nb") -> Analysis:
    return analyze(load_notebook(write_notebook(tmp_path / f"{name}.ipynb", *cells)))


def test_an_object_made_in_features_and_fitted_in_train_is_an_artifact(tmp_path: Path) -> None:
    analysis = check(tmp_path, TEXTS, VECTORIZER, FIT, PREDICT, (None, "predict(df.text)"))
    assert analysis.errors == []
    assert sorted(analysis.artifacts) == ["model", "tfidf"]
    fitted = analysis.artifacts["tfidf"]
    assert (fitted.info.number, fitted.line) == (3, 2)  # where training fitted it
    assert "tfidf" not in {d.name for d in analysis.prediction_code}


def test_each_way_training_changes_a_value_makes_it_an_artifact(tmp_path: Path) -> None:
    for change in ("cols.append('b')", "cols[0] = 'b'", "cols += ['b']", "cols = cols + ['b']"):
        analysis = check(
            tmp_path,
            ("features", "cols = ['a']"),
            ("train", change),
            ("inference", "def predict(df):\n    return df[cols]"),
            (None, "predict({'a': [1], 'b': [2]})"),
        )
        assert analysis.errors == [], change
        assert list(analysis.artifacts) == ["cols"], change


def test_a_value_only_read_by_training_stays_module_code(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("features", "cols = ['a']"),
        ("train", "n = len(cols)"),
        ("inference", "def predict(df):\n    return df[cols] * n"),
        (None, "predict({'a': [1]})"),
    )
    assert list(analysis.artifacts) == ["n"]
    assert "cols" in {d.name for d in analysis.prediction_code}


def test_a_plain_inference_reading_a_data_object_fitted_later_takes_it_as_artifact(
    tmp_path: Path,
) -> None:
    analysis = check(
        tmp_path,
        ("data", "from sklearn.preprocessing import StandardScaler\nscaler = StandardScaler()"),
        ("data", "import numpy as np\nX = np.arange(6.0).reshape(3, 2)"),
        ("train", "scaler.fit(X)"),
        ("inference", "scaled = scaler.transform(X)"),
    )
    assert analysis.errors == []
    assert list(analysis.artifacts) == ["scaler"]
    assert analysis.entry is not None and analysis.entry.params == ["X"]


def test_an_artifact_changed_after_training_by_an_untagged_cell_is_named(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        TEXTS,
        VECTORIZER,
        FIT,
        PREDICT,
        (None, "predict(df.text)"),
        (None, "other = ['x y', 'z']\ntfidf.fit(other)"),
    )
    [problem] = analysis.errors
    assert (problem.cell, problem.role, problem.line, problem.name) == (6, None, 2, "tfidf")
    assert "changes the artifact `tfidf` after training (cell 3 made it)" in problem.message
    assert problem.hint is not None and "sklearn.base.clone(tfidf)" in problem.hint
    assert problem.hint.endswith("if it belongs to training, tag cell 6 `train`")


def test_an_artifact_rebound_after_training_is_told_to_take_another_name(
    tmp_path: Path,
) -> None:
    analysis = check(
        tmp_path,
        TEXTS,
        VECTORIZER,
        FIT,
        PREDICT,
        (None, "from sklearn.svm import LinearSVC\nmodel = LinearSVC()"),
    )
    [problem] = analysis.errors
    assert (problem.cell, problem.line, problem.name) == (5, 2, "model")
    assert problem.message.startswith("rebinds the artifact `model` after training")
    assert problem.hint is not None
    assert problem.hint.startswith("give the new value another name in this cell (`model_2 = ...`)")


def test_an_untagged_change_before_training_ends_is_overwritten_and_fine(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        TEXTS,
        VECTORIZER,
        (None, "tfidf.fit(['x y'])"),
        FIT,
        PREDICT,
        (None, "predict(df.text)"),
    )
    assert analysis.errors == []


def test_the_package_name_never_shadows_an_imported_module(tmp_path: Path) -> None:
    cells = (
        ("train", "import xgboost\nw = 2"),
        ("inference", "def predict(x):\n    return x * w"),
        (None, "predict(1)"),
    )
    for stem, chosen in (("xgboost", "xgboost_model"), ("json", "json_model"), ("w", "w")):
        analysis = check(tmp_path, *cells, name=stem)
        assert analysis.package == chosen
        assert analysis.to_json()["package"] == chosen
        if chosen != stem:
            [warning] = analysis.warnings
            assert f"the package is named `{chosen}`" in warning.message
            assert f'"name": "{chosen}"' in (warning.hint or "")
        else:
            assert analysis.warnings == []


def test_an_installed_module_is_a_taken_name_and_a_folder_here_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed modules the notebook does not import are taken too (installing the
    package would shadow them); a folder in the working directory is no module of this
    environment, whatever its name."""
    (tmp_path / "sales").mkdir()
    (tmp_path / "sales" / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    cells = (("train", "w = 2"), ("inference", "def predict(x):\n    return x * w"))
    assert check(tmp_path, *cells, name="pyarrow").package == "pyarrow_model"
    assert check(tmp_path, *cells, name="zmq").package == "zmq_model"
    assert check(tmp_path, *cells, name="sales").package == "sales"


def test_a_chosen_name_that_shadows_a_module_is_refused(tmp_path: Path) -> None:
    analysis = analyze(
        build(
            tmp_path,
            ("train", "import lightgbm\nw = 2"),
            ("inference", "def predict(x):\n    return x * w"),
            nbprod={"name": "lightgbm"},
        )
    )
    assert [p.name for p in analysis.errors] == ["lightgbm"]
    assert "would shadow" in analysis.errors[0].message


EVALUATING = (
    (
        "data",
        "import pandas as pd\nfrom sklearn.model_selection import train_test_split\n"
        "df = pd.DataFrame({'x': [1.0, 2, 3, 4, 5, 6], 'y': [1.0, 2, 3, 4, 5, 7]})\n"
        "X_train, X_test, y_train, y_test = train_test_split(df[['x']], df.y, random_state=0)",
    ),
    (
        "train",
        "from sklearn.linear_model import LinearRegression\n"
        "model = LinearRegression().fit(X_train, y_train)",
    ),
)


def test_an_inference_cell_that_also_evaluates_is_told_to_split(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        *EVALUATING,
        (
            "inference",
            "from sklearn.metrics import mean_squared_error\n"
            "y_pred = model.predict(X_test)\n"
            "err = mean_squared_error(y_test, y_pred)",
        ),
    )
    [problem] = analysis.errors
    assert (problem.cell, problem.line) == (3, 3)
    assert "also evaluates the prediction" in problem.message
    assert "`predict(X_test, y_test)` would need the label" in problem.message
    assert problem.hint == (
        "split cell 3 after line 2: the prediction stays `inference`, tag the rest `metrics`"
    )


def test_the_split_the_check_advises_is_clean(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        *EVALUATING,
        ("inference", "y_pred = model.predict(X_test)"),
        (
            "metrics",
            "from sklearn.metrics import mean_squared_error\n"
            "err = mean_squared_error(y_test, y_pred)",
        ),
    )
    assert analysis.errors == []
    assert analysis.entry is not None and analysis.entry.signature == "predict(X_test)"
    # train() cannot compute y_pred: the metrics cell stays out of it, with a warning
    assert analysis.training_excluded == [4]


def test_a_score_without_the_label_is_reported_too(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        *EVALUATING,
        ("inference", "y_pred = model.predict(X_test)\nscore = model.score(X_test, y_test)"),
    )
    assert [p.cell for p in analysis.errors] == [3]


def reading_a_test_set(tmp_path: Path, role: str | None) -> Analysis:
    """The test set loaded by a cell of ``role``, predicted on by plain statements."""
    return check(
        tmp_path,
        (role, "import pandas as pd\ntest_data = pd.read_csv('test.csv')"),
        *EVALUATING,
        ("inference", "y_pred = model.predict(test_data[['x']])"),
    )


def test_advice_for_an_untagged_test_set_says_what_each_role_means(tmp_path: Path) -> None:
    analysis = reading_a_test_set(tmp_path, None)
    [problem] = analysis.errors
    assert problem.hint is not None
    assert problem.hint.startswith("tag cell 1 `data` if `test_data` is rows to predict on")
    assert "or `train` if it is fitted or learned" in problem.hint
    # applied literally, the first advice gives an entry point that takes the rows
    tagged = reading_a_test_set(tmp_path, "data")
    assert tagged.errors == []
    assert tagged.entry is not None and tagged.entry.params == ["test_data"]


def test_advice_for_an_untagged_fitted_value_puts_train_first(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        *EVALUATING,
        (None, "threshold = y_train.mean()"),
        ("inference", "y_pred = model.predict(X_test) > threshold"),
    )
    [problem] = analysis.errors
    assert problem.hint is not None and problem.hint.startswith("tag cell 3 `train` if")
