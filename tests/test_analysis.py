"""Role-level analysis: names across roles, artifacts, the entry point and every problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nbbuild import build, notebook_node

from nbprod.analysis.analyzer import Analysis, analyze
from nbprod.notebook import Notebook, load_notebook

DATA = ("data", "import pandas as pd\ndf = pd.read_csv('train.csv')")
TRAIN = ("train", "model = fit(df)")
PREDICT = ("inference", "def predict(X):\n    return model.predict(X)")


def check(tmp_path: Path, *cells: tuple[str | None, str] | str, **nbprod: Any) -> Analysis:
    return analyze(build(tmp_path, *cells, nbprod=nbprod or None))


def load(tmp_path: Path, node: Any) -> Notebook:
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(node), encoding="utf-8")
    return load_notebook(path)


def errors(analysis: Analysis) -> list[tuple[int, int | None, str | None]]:
    return [(p.cell, p.line, p.name) for p in analysis.errors]


def fitting(*cells: tuple[str | None, str] | str) -> tuple[tuple[str | None, str] | str, ...]:
    """``cells`` after a data cell and an import of ``fit``."""
    return ((None, "from sklearn_helpers import fit"), DATA, *cells)


# -- functions the inference code calls --------------------------------------------------


def test_globals_of_the_entry_point_are_artifacts(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        *fitting(
            ("train", "model = fit(df)\nthreshold = 0.5\nscore = 0.9"),
            ("inference", "def predict(X):\n    return model.predict(X) > threshold"),
        ),
    )
    assert analysis.errors == []
    assert set(analysis.artifacts) == {"model", "threshold"}


def test_globals_of_called_feature_functions_are_artifacts_transitively(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        *fitting(
            (
                "features",
                "def clean(X):\n    return X.fillna(means)\n"
                "def prepare(X):\n    return clean(X)[columns]",
            ),
            ("train", "means = df.mean()\ncolumns = ['a', 'b']\nmodel = fit(prepare(df))"),
            ("inference", "def predict(X):\n    return model.predict(prepare(X))"),
        ),
    )
    assert analysis.errors == []
    assert set(analysis.artifacts) == {"model", "means", "columns"}
    assert {d.name for d in analysis.prediction_code} == {"clean", "prepare", "predict"}


def test_feature_functions_prediction_does_not_call_stay_out(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        *fitting(
            ("features", "def used(X):\n    return X\ndef unused(X):\n    return X * weights"),
            ("train", "weights = 2\nmodel = fit(used(df))"),
            ("inference", "def predict(X):\n    return model.predict(used(X))"),
        ),
    )
    assert {d.name for d in analysis.prediction_code} == {"used", "predict"}
    assert set(analysis.artifacts) == {"model"}


def test_function_defined_in_train_and_used_by_prediction_is_an_error(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        *fitting(
            ("train", "def prep(X):\n    return X\nmodel = fit(prep(df))"),
            ("inference", "def predict(X):\n    return model.predict(prep(X))"),
        ),
    )
    assert [(p.cell, p.role, p.line, p.name) for p in analysis.errors] == [(3, "train", 1, "prep")]
    assert analysis.errors[0].hint == (
        "move `prep` into a `features` cell so training and prediction share it"
    )


def test_helper_class_methods_read_artifacts_when_called(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        *fitting(
            ("features", "class Selector:\n    def transform(self, X):\n        return X[columns]"),
            ("train", "columns = ['a']\nmodel = fit(Selector().transform(df))"),
            ("inference", "def predict(X):\n    return model.predict(Selector().transform(X))"),
        ),
    )
    assert analysis.errors == []
    assert set(analysis.artifacts) == {"model", "columns"}
    assert "Selector" in {d.name for d in analysis.prediction_code}


def test_lambda_in_features_carries_its_globals(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        *fitting(
            ("features", "scale = lambda X: X * factor"),
            ("train", "factor = 2.0\nmodel = fit(scale(df))"),
            ("inference", "def predict(X):\n    return model.predict(scale(X))"),
        ),
    )
    assert analysis.errors == []
    assert set(analysis.artifacts) == {"model", "factor"}


def test_comprehension_in_the_entry_point_reads_artifacts(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        *fitting(
            ("train", "model = fit(df)\nweights = {'a': 1}"),
            ("inference", "def predict(X):\n    return [model.predict(X) * w for w in weights]"),
        ),
    )
    assert analysis.errors == []
    assert set(analysis.artifacts) == {"model", "weights"}


def test_global_written_by_a_function_is_a_training_output(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        *fitting(
            (
                "train",
                "def calibrate():\n    global cutoff\n    cutoff = 0.3\n"
                "calibrate()\nmodel = fit(df)",
            ),
            ("inference", "def predict(X):\n    return model.predict(X) > cutoff"),
        ),
    )
    assert analysis.errors == []
    assert set(analysis.artifacts) == {"model", "cutoff"}


# -- scope rules at role level -------------------------------------------------------------


def test_comprehension_lambda_for_with_and_walrus_names_are_not_inputs(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        *fitting(
            (
                "train",
                "cols = [c for c in df.columns if c != 'y']\n"
                "key = lambda row: row[0]\n"
                "for name in cols:\n    last = name\n"
                "with open('log.txt') as fh:\n    text = fh.read()\n"
                "if (n := len(cols)) > 1:\n    size = n\n"
                "model = fit(df[cols])",
            ),
            PREDICT,
        ),
    )
    assert analysis.errors == []
    train = analysis.to_json()["roles"]["train"]
    assert train["inputs"] == ["df", "fit"]
    assert {"cols", "key", "name", "last", "fh", "text", "n", "size", "model"} <= set(
        train["outputs"]
    )


def test_class_body_reads_parameters_when_defined(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("parameters", "alpha = 0.1"),
        ("features", "class Config:\n    rate = alpha\n    double = rate * 2"),
        ("train", "model = Config()"),
        PREDICT,
    )
    assert analysis.errors == []
    assert analysis.to_json()["roles"]["features"]["inputs"] == ["alpha"]


def test_class_body_reading_an_undefined_name_is_an_error(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("features", "class Config:\n    rate = unknown_rate"),
        ("train", "model = Config()"),
        PREDICT,
    )
    assert errors(analysis) == [(1, 1, "unknown_rate")]


def test_deleted_name_is_no_longer_defined(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "tmp = 1\nmodel = tmp\ndel tmp"),
        ("metrics", "check = tmp"),
        PREDICT,
    )
    assert errors(analysis) == [(2, 1, "tmp")]
    assert analysis.errors[0].message == "reads `tmp`, which no cell defines"


def test_augmented_assignment_reads_the_name_first(tmp_path: Path) -> None:
    analysis = check(tmp_path, ("train", "model = 1\ncount += 1"), PREDICT)
    assert errors(analysis) == [(1, 2, "count")]


def test_augmented_assignment_of_an_artifact_keeps_it_an_artifact(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = 1\nthreshold = 0.5"),
        ("train", "threshold += 0.1"),
        ("inference", "def predict(X):\n    return model.predict(X) > threshold"),
    )
    assert analysis.errors == []
    assert analysis.artifacts["threshold"].info.number == 2


def test_attribute_and_subscript_assignment_read_the_object(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = 1\nencoder.classes_ = ['a']\ntable['x'] = 1"),
        PREDICT,
    )
    assert errors(analysis) == [(1, 2, "encoder"), (1, 3, "table")]


def test_subscript_assignment_does_not_redefine_the_data(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        *fitting(
            ("data", "df['ratio'] = df.a / df.b"),
            ("train", "model = fit(df)"),
            PREDICT,
        ),
    )
    assert analysis.errors == []
    assert analysis.to_json()["roles"]["data"]["outputs"] == ["df", "pd"]


def test_function_local_names_are_not_read_from_other_cells(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("features", "def f(X):\n    tmp = X + 1\n    return tmp"),
        ("train", "model = f(1)"),
        ("metrics", "bad = tmp"),
        PREDICT,
    )
    assert errors(analysis) == [(3, 1, "tmp")]


def test_name_read_inside_a_function_is_checked_when_it_is_called(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("features", "def f(X):\n    return X * undefined_weight"),
        ("train", "model = f(1)"),
        PREDICT,
    )
    assert errors(analysis) == [(2, 1, "undefined_weight")]


def test_function_reading_a_name_defined_before_its_call_is_fine(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("features", "def f(X):\n    return X * weight"),
        ("train", "weight = 2\nmodel = f(1)"),
        PREDICT,
    )
    assert analysis.errors == []


# -- imports ---------------------------------------------------------------------------


def test_import_in_an_untagged_cell_is_available_to_every_role(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        (None, "import numpy as np\nimport pandas as pd"),
        ("data", "df = pd.DataFrame({'a': [1]})"),
        ("train", "model = np.mean(df.a)"),
        ("inference", "def predict(X):\n    return np.full(len(X), model)"),
    )
    assert analysis.errors == []
    assert analysis.role_imports == {"data": ["pd"], "train": ["np"], "inference": ["np"]}


def test_import_in_a_tagged_cell_counts_for_the_roles_that_use_it(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("data", "import pandas as pd\nimport numpy as np\ndf = pd.DataFrame()"),
        ("train", "model = np.zeros(len(df))"),
        PREDICT,
    )
    assert analysis.errors == []
    assert analysis.role_imports == {"data": ["pd"], "train": ["np"]}


def test_role_imports_hold_only_the_imports_used(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        (None, "import os\nimport numpy as np\nimport pandas as pd\nimport seaborn as sns"),
        ("data", "df = pd.read_csv('x.csv')"),
        ("train", "model = 1"),
        PREDICT,
    )
    assert analysis.role_imports == {"data": ["pd"]}
    assert analysis.to_json()["roles"]["data"]["imports"] == ["pd"]
    assert analysis.to_json()["roles"]["train"]["imports"] == []


def test_import_aliases_resolve_to_their_statement(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        (None, "from sklearn.linear_model import LogisticRegression as LR"),
        ("train", "model = LR()"),
        PREDICT,
    )
    assert analysis.errors == []
    assert analysis.role_imports == {"train": ["LR"]}
    assert analysis.imports["LR"].statement == (
        "from sklearn.linear_model import LogisticRegression as LR"
    )
    assert analysis.imports["LR"].module == "sklearn"


def test_imports_used_by_feature_functions_go_with_prediction(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        (None, "import numpy as np"),
        ("features", "def logit(X):\n    return np.log(X)"),
        ("train", "model = 1"),
        ("inference", "def predict(X):\n    return model.predict(logit(X))"),
    )
    assert analysis.errors == []
    assert analysis.role_imports == {"inference": ["np"]}


def test_import_inside_a_function_is_not_a_notebook_import(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "def load():\n    import json\n    return json\nmodel = load()"),
        PREDICT,
    )
    assert analysis.errors == []
    assert "json" not in analysis.imports


def test_star_import_in_a_tagged_cell_is_an_error(tmp_path: Path) -> None:
    analysis = check(tmp_path, ("train", "from math import *\nmodel = sqrt(2)"), PREDICT)
    star = [p for p in analysis.problems if p.name == "*"]
    assert [(p.severity, p.cell, p.line) for p in star] == [("error", 1, 1)]
    assert star[0].message == "`from math import *` hides which names it defines"
    assert star[0].hint == "import the names you use explicitly (`from math import a, b`)"


def test_star_import_in_an_untagged_cell_is_a_warning(tmp_path: Path) -> None:
    analysis = check(tmp_path, (None, "from math import *"), ("train", "model = 1"), PREDICT)
    assert [(p.severity, p.cell) for p in analysis.problems if p.name == "*"] == [("warning", 1)]
    assert [i.statement for i in analysis.star_imports] == ["from math import *"]


def test_unknown_name_with_a_star_import_is_a_warning_pointing_at_it(tmp_path: Path) -> None:
    analysis = check(tmp_path, (None, "from math import *"), ("train", "model = sqrt(2)"), PREDICT)
    assert analysis.errors == []
    (unknown,) = [p for p in analysis.warnings if p.name == "sqrt"]
    assert (unknown.cell, unknown.line) == (2, 1)
    assert unknown.hint == "it may come from `from math import *`; import it explicitly"


# -- untagged cells ------------------------------------------------------------------------


def test_reading_a_value_only_an_untagged_cell_defines_is_an_error(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        "# Churn",
        (None, "import pandas as pd"),
        (None, "df = pd.read_csv('x.csv')"),
        ("train", "x = 1\nmodel = df.mean()"),
        PREDICT,
    )
    assert errors(analysis) == [(4, 2, "df")]
    assert str(analysis.errors[0]) == (
        "cell 4 (train), line 2: reads `df`, which only the untagged cell 3 defines\n"
        "  fix: tag cell 3 `data`"
    )


def test_untagged_function_suggests_a_features_tag(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        (None, "def prep(X):\n    return X"),
        ("train", "model = prep(1)"),
        PREDICT,
    )
    assert errors(analysis) == [(2, 1, "prep")]
    assert analysis.errors[0].hint == "tag cell 1 `features`"


def test_metrics_reading_an_untagged_value_suggests_train(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = 1"),
        (None, "preds = model.predict(1)"),
        ("metrics", "acc = preds.mean()"),
        PREDICT,
    )
    assert errors(analysis) == [(3, 1, "preds")]
    assert analysis.errors[0].hint == "tag cell 2 `train`"


def test_prediction_reading_an_untagged_value_is_an_error(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = 1"),
        (None, "threshold = 0.7"),
        ("inference", "def predict(X):\n    return model.predict(X) > threshold"),
    )
    assert errors(analysis) == [(3, None, "threshold")]
    assert analysis.errors[0].message == (
        "prediction reads `threshold`, which only the untagged cell 2 defines"
    )
    assert analysis.errors[0].hint == "tag cell 2 `train`"
    assert "threshold" not in analysis.artifacts


def test_untagged_redefinition_does_not_leak_into_extracted_roles(tmp_path: Path) -> None:
    """Training's `model` is the artifact; the untagged cell that rebinds it after
    training is named (the run would save its value, not training's)."""
    analysis = check(
        tmp_path,
        ("train", "model = 1"),
        (None, "model = 2\nextra = 3"),
        PREDICT,
    )
    assert analysis.artifacts["model"].info.number == 1
    assert errors(analysis) == [(2, 1, "model")]
    assert "rebinds the artifact `model` after training (cell 1 made it)" in (
        analysis.errors[0].message
    )


def test_untagged_cells_may_read_anything(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = 1"),
        (None, "plot(undefined_thing)"),
        PREDICT,
    )
    assert [p for p in analysis.problems if p.cell == 2] == []


# -- parameters ------------------------------------------------------------------------


def test_parameters_are_literals_with_their_types(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        (
            "parameters",
            "n_estimators = 100\nlr: float = -0.5\nname = 'rf'\ncols = ['a', 'b']\nflag = None",
        ),
        ("train", "model = n_estimators"),
        PREDICT,
    )
    assert analysis.errors == []
    params = {p.name: (p.value, p.type, p.line) for p in analysis.parameters.values()}
    assert params == {
        "n_estimators": (100, "int", 1),
        "lr": (-0.5, "float", 2),
        "name": ("rf", "str", 3),
        "cols": (["a", "b"], "list", 4),
        "flag": (None, "NoneType", 5),
    }


def test_parameter_with_a_non_literal_value_is_an_error(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        "# params",
        ("parameters", "alpha = 0.1\nsize = len('abc')"),
        ("train", "model = alpha"),
        PREDICT,
    )
    assert errors(analysis) == [(2, 2, "size")]
    assert analysis.errors[0].message == "parameter `size` is not a literal value: `len('abc')`"
    assert "size" not in analysis.parameters
    assert "alpha" in analysis.parameters


def test_parameters_cell_statement_that_is_not_an_assignment_is_an_error(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("parameters", "import math\nalpha = 0.1\nprint(alpha)"),
        ("train", "model = alpha"),
        PREDICT,
    )
    assert [(p.cell, p.line) for p in analysis.errors] == [(1, 3)]
    assert analysis.errors[0].message == "`print(alpha)` is not an assignment"


def test_parameters_read_by_prediction_are_not_artifacts(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("parameters", "threshold = 0.5"),
        ("train", "model = 1"),
        ("inference", "def predict(X):\n    return model.predict(X) > threshold"),
    )
    assert analysis.errors == []
    assert set(analysis.artifacts) == {"model"}


# -- synthesized entry point ---------------------------------------------------------------


def synthesized_notebook(inference: str, **nbprod: Any) -> tuple[Any, ...]:
    return (
        (None, "import pandas as pd"),
        ("data", "df = pd.read_csv('x.csv')\nX_train, X_test = df[:80], df[80:]"),
        ("train", "model = X_train.mean()\nthreshold = 0.5"),
        ("inference", inference),
    )


def test_plain_inference_statements_synthesize_predict(tmp_path: Path) -> None:
    analysis = check(tmp_path, *synthesized_notebook("y_pred = model.predict(X_test)"))
    assert analysis.errors == []
    assert analysis.entry is not None
    assert (analysis.entry.name, analysis.entry.kind) == ("predict", "synthesized")
    assert analysis.entry.params == ["X_test"]
    assert analysis.entry.signature == "predict(X_test)"
    assert analysis.entry.returns == {
        "kind": "assignment",
        "expression": "y_pred",
        "cell": 4,
        "line": 1,
    }
    assert set(analysis.artifacts) == {"model"}


def test_synthesized_predict_returns_the_last_expression(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        *synthesized_notebook("scores = model.predict(X_test)\nscores > threshold"),
    )
    assert analysis.entry is not None
    assert analysis.entry.returns == {
        "kind": "expression",
        "expression": "scores > threshold",
        "cell": 4,
        "line": 2,
    }
    assert set(analysis.artifacts) == {"model", "threshold"}


def test_synthesized_predict_ignores_a_trailing_print(tmp_path: Path) -> None:
    analysis = check(
        tmp_path, *synthesized_notebook("y_pred = model.predict(X_test)\nprint(y_pred)")
    )
    assert analysis.entry is not None and analysis.entry.returns is not None
    assert (analysis.entry.returns["expression"], analysis.entry.returns["line"]) == ("y_pred", 1)
    assert len(analysis.entry.statements) == 1


def test_synthesized_predict_spans_inference_cells(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        *synthesized_notebook("X = X_test.fillna(0)"),
        ("inference", "labels = model.predict(X) > threshold"),
    )
    assert analysis.errors == []
    assert analysis.entry is not None
    assert analysis.entry.params == ["X_test"]
    assert analysis.entry.returns is not None
    assert (analysis.entry.returns["expression"], analysis.entry.returns["cell"]) == ("labels", 5)


def test_feature_functions_inside_plain_inference_are_part_of_prediction(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        (None, "import pandas as pd"),
        ("data", "df = pd.read_csv('x.csv')\nX_test = df[80:]"),
        ("features", "def add_ratio(X):\n    return X.assign(r=X.a / scale)"),
        ("train", "scale = df.a.max()\nmodel = add_ratio(df).mean()"),
        ("inference", "y_pred = model.predict(add_ratio(X_test))"),
    )
    assert analysis.errors == []
    assert analysis.entry is not None and analysis.entry.params == ["X_test"]
    assert [d.name for d in analysis.prediction_code] == ["add_ratio"]
    assert set(analysis.artifacts) == {"model", "scale"}


def test_synthesized_entry_takes_its_name_from_metadata(tmp_path: Path) -> None:
    analysis = check(
        tmp_path, *synthesized_notebook("y_pred = model.predict(X_test)"), inference="score"
    )
    assert analysis.entry is not None
    assert analysis.entry.signature == "score(X_test)"


def test_metadata_inputs_make_a_training_value_an_argument(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        *synthesized_notebook("y_pred = model.predict(X_test) > threshold"),
        inputs=["threshold"],
    )
    assert analysis.entry is not None
    assert analysis.entry.params == ["X_test", "threshold"]
    assert set(analysis.artifacts) == {"model"}


def test_inference_without_a_value_to_return_is_an_error(tmp_path: Path) -> None:
    analysis = check(tmp_path, *synthesized_notebook("print(model.predict(X_test))"))
    assert analysis.entry is None
    assert [(p.cell, p.role) for p in analysis.errors] == [(4, "inference")]


def test_empty_inference_cell_is_an_error(tmp_path: Path) -> None:
    analysis = check(tmp_path, ("train", "model = 1"), ("inference", "# todo"))
    assert analysis.entry is None
    assert [p.message for p in analysis.errors] == ["the inference cells hold no code"]


# -- inference reading unknown names, candidate entry points --------------------------


def test_inference_reading_an_unknown_name_is_an_error(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = 1"),
        "notes",
        ("inference", "scores = model.predict(X_new)\ny = scores > mystery"),
    )
    assert errors(analysis) == [(3, 1, "X_new"), (3, 2, "mystery")]
    assert analysis.errors[1].message == (
        "prediction reads `mystery`, which is neither an artifact, a parameter, an import "
        "nor defined in a features or inference cell"
    )


def test_entry_function_reading_an_unknown_global_is_an_error(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = 1"),
        ("inference", "def predict(X):\n    return model.predict(X) * mystery"),
    )
    assert [(p.cell, p.name) for p in analysis.errors] == [(2, "mystery")]


def test_feature_function_reading_an_unknown_global_is_reported_on_its_cell(
    tmp_path: Path,
) -> None:
    analysis = check(
        tmp_path,
        ("features", "def prep(X):\n    return X * mystery"),
        ("train", "model = 1"),
        ("inference", "def predict(X):\n    return model.predict(prep(X))"),
    )
    assert [(p.cell, p.role, p.name) for p in analysis.errors] == [(1, "features", "mystery")]


def test_names_defined_in_features_or_inference_are_not_artifacts(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("features", "COLUMNS = ['a', 'b']"),
        ("train", "model = 1"),
        (
            "inference",
            "def helper(X):\n    return X[COLUMNS]\n"
            "def predict(X):\n    return model.predict(helper(X))",
        ),
    )
    assert analysis.errors == []
    assert set(analysis.artifacts) == {"model"}
    assert {d.name for d in analysis.prediction_code} == {"COLUMNS", "helper", "predict"}
    assert analysis.entry is not None and analysis.entry.name == "predict"


def test_two_candidate_entry_points_are_an_error(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = 1"),
        (
            "inference",
            "def predict(X):\n    return model.predict(X)\n\n"
            "def predict_proba(X):\n    return model.predict_proba(X)",
        ),
    )
    assert analysis.entry is None
    assert [(p.cell, p.line) for p in analysis.errors] == [(2, 4)]
    assert analysis.errors[0].message == (
        "more than one candidate entry point: `predict`, `predict_proba`"
    )
    assert analysis.errors[0].hint == (
        'name the one to use in the notebook metadata: "nbprod": {"inference": "predict"}'
    )


def test_naming_the_entry_point_in_metadata_resolves_candidates(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = 1"),
        (
            "inference",
            "def predict(X):\n    return model.predict(X)\n\n"
            "def predict_proba(X, k=1):\n    return model.predict_proba(X)",
        ),
        inference="predict_proba",
    )
    assert analysis.errors == []
    assert analysis.entry is not None
    assert (analysis.entry.kind, analysis.entry.signature) == ("function", "predict_proba(X, k)")


def test_metadata_naming_a_missing_function_is_an_error(tmp_path: Path) -> None:
    analysis = check(tmp_path, ("train", "model = 1"), PREDICT, inference="score")
    assert [(p.cell, p.name) for p in analysis.errors] == [(2, "score")]
    assert analysis.entry is None


def test_entry_point_signature_lists_every_parameter_kind(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = 1"),
        ("inference", "def predict(X, /, y=None, *rest, k, **options):\n    return model"),
    )
    assert analysis.entry is not None
    assert analysis.entry.params == ["X", "y", "*rest", "k", "**options"]


def test_entry_point_never_called_is_a_warning(tmp_path: Path) -> None:
    analysis = check(tmp_path, ("train", "model = 1"), PREDICT)
    assert analysis.errors == []
    assert [(p.cell, p.line, p.name) for p in analysis.warnings] == [(2, 1, "predict")]


def test_example_call_in_a_test_cell_silences_the_warning(tmp_path: Path) -> None:
    analysis = check(
        tmp_path, ("train", "model = 1"), PREDICT, ("test", "assert predict([1]) is not None")
    )
    assert analysis.problems == []


# -- artifacts ---------------------------------------------------------------------------


def test_everything_prediction_needs_from_training_is_an_artifact(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        (
            None,
            "from sklearn.preprocessing import OneHotEncoder\n"
            "from sklearn.ensemble import RandomForestClassifier",
        ),
        ("data", "import pandas as pd\ndf = pd.read_csv('x.csv')"),
        (
            "train",
            "encoder = OneHotEncoder().fit(df[['c']])\n"
            "feature_columns = ['a', 'b']\n"
            "model = RandomForestClassifier().fit(df[feature_columns], df.y)\n"
            "threshold = 0.35\n"
            "train_score = model.score(df[feature_columns], df.y)",
        ),
        (
            "inference",
            "def predict(X):\n"
            "    codes = encoder.transform(X[['c']])\n"
            "    p = model.predict_proba(X[feature_columns])[:, 1]\n"
            "    return (p > threshold), codes",
        ),
    )
    assert analysis.errors == []
    assert set(analysis.artifacts) == {"encoder", "feature_columns", "model", "threshold"}
    assert {n: (d.info.number, d.line) for n, d in analysis.artifacts.items()} == {
        "encoder": (3, 1),
        "feature_columns": (3, 2),
        "model": (3, 3),
        "threshold": (3, 4),
    }


def test_artifact_is_the_last_training_definition(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = 1"),
        ("train", "x = 2\nmodel = 2"),
        PREDICT,
    )
    assert (analysis.artifacts["model"].info.number, analysis.artifacts["model"].line) == (2, 2)


def test_metadata_artifacts_are_added(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = 1\nlookup = {'a': 1}"),
        PREDICT,
        artifacts=["lookup"],
    )
    assert set(analysis.artifacts) == {"model", "lookup"}


def test_name_read_before_a_later_cell_defines_it_is_an_error(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        "# Intro",
        ("train", "model = 1\nscaled = raw * 2"),
        ("data", "raw = 1"),
        PREDICT,
    )
    assert errors(analysis) == [(2, 2, "raw")]
    assert str(analysis.errors[0]) == (
        "cell 2 (train), line 2: reads `raw` before it is defined: cell 3 (data) defines it later\n"
        "  fix: move the code that defines `raw` above cell 2"
    )


def test_name_used_before_its_definition_in_the_same_cell_is_an_error(tmp_path: Path) -> None:
    analysis = check(tmp_path, ("train", "model = rate\nrate = 2"), PREDICT)
    assert errors(analysis) == [(1, 1, "rate")]


def test_notebook_without_an_inference_cell_is_an_error(tmp_path: Path) -> None:
    analysis = check(tmp_path, ("data", "x = 1"), ("train", "model = x"), (None, "model"))
    assert [(p.cell, p.role, p.line) for p in analysis.errors] == [(2, "train", None)]
    assert analysis.errors[0].message == (
        "no cell is tagged `inference`, so there is nothing to predict with"
    )
    assert analysis.entry is None
    assert analysis.artifacts == {}


def test_notebook_without_any_role_is_an_error(tmp_path: Path) -> None:
    analysis = check(tmp_path, "# hi", (None, "x = 1"))
    assert [(p.cell, p.role, p.message) for p in analysis.errors] == [
        (2, None, "no cell has an nbprod role")
    ]


def test_cell_with_two_roles_is_an_error(tmp_path: Path) -> None:
    analysis = check(tmp_path, "# md", ("data,train", "model = 1"), PREDICT)
    assert [(p.cell, p.role, p.line) for p in analysis.errors] == [(2, "data", None)]
    assert analysis.errors[0].message == "the cell has more than one role: data, train"


# -- tests and metrics -----------------------------------------------------------------


def test_metric_names_are_the_metrics_cell_outputs(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        (None, "import math"),
        ("train", "model = 1"),
        ("metrics", "from statistics import mean\naccuracy = 0.9\nloss = math.log(2)"),
        PREDICT,
    )
    assert analysis.metric_names == ["accuracy", "loss"]


def test_test_cells_record_the_training_values_they_read(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("data", "X_test = [1, 2]"),
        ("train", "model = 1"),
        PREDICT,
        ("test", "assert len(predict(X_test)) == len(X_test)"),
    )
    assert analysis.test_fixtures == {4: ["X_test"]}


# -- the problem format and the JSON -----------------------------------------------------


def test_problem_str_names_cell_role_line_and_fix(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        "# a",
        "# b",
        "# c",
        ("train", "model = 1\n\nscore = missing_name"),
        PREDICT,
    )
    (problem,) = analysis.errors
    assert (problem.cell, problem.role, problem.line, problem.name) == (
        4,
        "train",
        3,
        "missing_name",
    )
    assert str(problem) == (
        "cell 4 (train), line 3: reads `missing_name`, which no cell defines\n"
        "  fix: define it in an extracted cell above, or import it"
    )


def test_problems_are_sorted_by_cell_and_line(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = b\nx = a"),
        ("metrics", "m = c"),
        PREDICT,
    )
    assert [(p.cell, p.line, p.name) for p in analysis.problems] == [
        (1, 1, "b"),
        (1, 2, "a"),
        (2, 1, "c"),
        (3, 1, "predict"),
    ]


def test_to_json_is_serialisable_with_the_documented_keys(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("parameters", "alpha = 0.5"),
        *fitting(("train", "model = fit(df)\nthreshold = alpha"), PREDICT),
    )
    document = json.loads(json.dumps(analysis.to_json()))
    assert set(document) == {
        "notebook",
        "package",
        "ok",
        "roles",
        "cells",
        "parameters",
        "artifacts",
        "entry_point",
        "metrics",
        "imports",
        "dependency_hints",
        "problems",
        "warnings",
    }
    assert document["ok"] is True
    assert document["package"] == "nb"
    assert set(document["roles"]) == {"parameters", "data", "train", "inference"}
    assert document["roles"]["train"] == {
        "cells": [4],
        "inputs": ["alpha", "df", "fit"],
        "outputs": ["model", "threshold"],
        "imports": ["fit"],
    }
    assert document["parameters"] == {
        "alpha": {"value": 0.5, "type": "float", "cell": 1, "line": 1}
    }
    assert document["artifacts"] == [{"name": "model", "cell": 4, "role": "train", "line": 1}]
    assert document["entry_point"] == {
        "name": "predict",
        "kind": "function",
        "signature": "predict(X)",
        "params": ["X"],
        "cell": 5,
        "returns": None,
    }
    assert document["imports"] == ["from sklearn_helpers import fit", "import pandas as pd"]
    assert document["problems"] == []
    assert [w["name"] for w in document["warnings"]] == ["predict"]


def test_to_json_reports_errors_and_what_a_synthesized_entry_returns(tmp_path: Path) -> None:
    analysis = check(tmp_path, *synthesized_notebook("y_pred = model.predict(X_test)\nundefined"))
    document = json.loads(json.dumps(analysis.to_json()))
    assert document["ok"] is False
    assert [(p["cell"], p["line"], p["name"], p["severity"]) for p in document["problems"]] == [
        (4, 2, "undefined", "error")
    ]
    assert document["entry_point"]["kind"] == "synthesized"
    assert document["entry_point"]["returns"] == {
        "kind": "expression",
        "expression": "undefined",
        "cell": 4,
        "line": 2,
    }


# -- added after fixes -----------------------------------------------------------------


def test_constants_beside_the_entry_function_are_prediction_code(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = 1"),
        (
            "inference",
            "LABELS = ['no', 'yes']\nto_label = lambda i: LABELS[i]\n"
            "def predict(X):\n    return [to_label(i) for i in model.predict(X)]\n"
            "example = predict([1])",
        ),
    )
    assert analysis.errors == []
    assert set(analysis.artifacts) == {"model"}
    assert [d.name for d in analysis.prediction_code] == ["LABELS", "to_label", "predict"]


def test_transformed_test_rows_are_an_argument_not_an_artifact(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        (None, "import pandas as pd\nfrom sklearn.preprocessing import StandardScaler"),
        ("data", "df = pd.read_csv('x.csv')\nX_train, X_test = df[:80], df[80:]"),
        (
            "train",
            "scaler = StandardScaler().fit(X_train)\n"
            "X_test_s = scaler.transform(X_test)\nmodel = X_train.mean()",
        ),
        ("inference", "y_pred = model.predict(X_test_s)"),
    )
    assert analysis.errors == []
    assert analysis.entry is not None and analysis.entry.params == ["X_test_s"]
    assert set(analysis.artifacts) == {"model"}


def test_threshold_computed_from_predictions_stays_an_artifact(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        (None, "import numpy as np\nimport pandas as pd"),
        ("data", "df = pd.read_csv('x.csv')\nX_train, X_test = df[:80], df[80:]"),
        (
            "train",
            "model = X_train.mean()\nthreshold = np.percentile(model.predict_proba(X_train), 90)",
        ),
        ("inference", "y_pred = model.predict_proba(X_test) > threshold"),
    )
    assert analysis.errors == []
    assert analysis.entry is not None and analysis.entry.params == ["X_test"]
    assert set(analysis.artifacts) == {"model", "threshold"}


def test_parameter_read_by_plain_inference_is_neither_argument_nor_artifact(
    tmp_path: Path,
) -> None:
    analysis = check(
        tmp_path,
        ("parameters", "cutoff = 0.5"),
        *synthesized_notebook("y_pred = model.predict(X_test) > cutoff"),
    )
    assert analysis.errors == []
    assert analysis.entry is not None and analysis.entry.params == ["X_test"]
    assert set(analysis.artifacts) == {"model"}


def test_data_value_read_by_a_feature_function_is_an_artifact(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("data", "categories = ['a', 'b']"),
        ("features", "def encode(X):\n    return [categories.index(x) for x in X]"),
        ("train", "model = encode(['a'])"),
        ("inference", "def predict(X):\n    return model.predict(encode(X))"),
    )
    assert analysis.errors == []
    assert {n: d.role for n, d in analysis.artifacts.items()} == {
        "model": "train",
        "categories": "data",
    }


def test_threshold_chosen_in_a_metrics_cell_is_an_artifact(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = 1"),
        ("metrics", "accuracy = 0.9\nthreshold = 0.4"),
        ("inference", "def predict(X):\n    return model.predict(X) > threshold"),
    )
    assert analysis.errors == []
    assert analysis.artifacts["threshold"].role == "metrics"


def test_untagged_definition_after_the_reader_is_reported_as_later(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = rate"),
        (None, "rate = 2"),
        PREDICT,
    )
    assert errors(analysis) == [(1, 1, "rate")]
    assert analysis.errors[0].message == (
        "reads `rate` before it is defined: cell 2 (untagged) defines it later"
    )


def test_deleted_artifact_is_not_available_to_prediction(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = 1\nscaler = 2\ndel scaler"),
        ("inference", "def predict(X):\n    return model.predict(scaler.transform(X))"),
    )
    assert [(p.cell, p.name) for p in analysis.errors] == [(2, "scaler")]
    assert set(analysis.artifacts) == {"model"}


def test_import_in_a_later_cell_is_available_to_earlier_roles(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "model = np.zeros(3)"),
        PREDICT,
        (None, "import numpy as np"),
    )
    assert analysis.errors == []
    assert analysis.role_imports == {"train": ["np"]}


# -- the notebook's language ----------------------------------------------------------------


def test_a_notebook_in_another_language_is_one_clear_error(tmp_path: Path) -> None:
    node = notebook_node(("train", "model <- lm(y ~ x, data = df)"), PREDICT)
    node.metadata["kernelspec"] = {"name": "ir", "language": "R", "display_name": "R"}
    analysis = analyze(load(tmp_path, node))
    assert [str(p).splitlines()[0] for p in analysis.problems] == [
        "cell 1 (untagged): the notebook is written in R (kernel `ir`): "
        "nbprod reads and extracts Python notebooks only"
    ], "no Python syntax complaints about R code"


def test_python_spelled_otherwise_is_python(tmp_path: Path) -> None:
    for spec in ({"name": "py", "language": "Python3"}, "not an object"):
        node = notebook_node(("train", "w = 2"), ("inference", "def predict(x):\n    return x * w"))
        node.metadata["kernelspec"] = spec
        assert analyze(load(tmp_path, node)).ok
