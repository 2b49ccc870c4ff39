"""Regenerate the example notebooks and their data files.

Run from anywhere:  python example_notebooks/make_examples.py

The data come from datasets bundled inside scikit-learn (no downloads). The
notebooks are written with nbformat, without outputs, with deterministic cell
ids so that regenerating them gives a stable diff. Cell roles are cell tags
(``cell.metadata["tags"]``); notebook settings live in
``nb.metadata["nbprod"]``.
"""

from __future__ import annotations

import re
from pathlib import Path
from textwrap import dedent

import nbformat
import numpy as np
import pandas as pd
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
MAX_DATA_BYTES = 200_000


# --------------------------------------------------------------------------- data


def _snake(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def wine_frame() -> pd.DataFrame:
    bunch = load_wine(as_frame=True)
    df = bunch.frame.rename(columns=_snake)
    df["target"] = df["target"].astype(int)
    return df


def diabetes_frame() -> pd.DataFrame:
    bunch = load_diabetes(as_frame=True, scaled=False)
    df = bunch.frame.copy()
    # The source codes sex as 1/2; write it as a categorical string column.
    df["sex"] = df["sex"].map({1.0: "F", 2.0: "M"})
    df["age"] = df["age"].astype(int)
    df["age_band"] = pd.cut(
        df["age"], bins=[0, 29, 49, 64, 200], labels=["under_30", "30_49", "50_64", "65_plus"]
    ).astype(str)
    columns = ["age", "age_band", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    return df[[*columns, "target"]]


def breast_cancer_frame() -> pd.DataFrame:
    bunch = load_breast_cancer(as_frame=True)
    df = bunch.frame.rename(columns=_snake)
    columns = [
        "mean_radius",
        "mean_texture",
        "mean_perimeter",
        "mean_area",
        "mean_smoothness",
        "mean_compactness",
        "mean_concavity",
        "mean_concave_points",
        "mean_symmetry",
        "mean_fractal_dimension",
        "worst_radius",
        "worst_texture",
        "worst_concave_points",
    ]
    out = df[columns].copy()
    out["size_band"] = pd.cut(
        out["mean_area"], bins=[0, 500, 1000, np.inf], labels=["small", "medium", "large"]
    ).astype(str)
    # sklearn codes 0 = malignant, 1 = benign; here target 1 = malignant.
    out["target"] = (df["target"] == 0).astype(int)
    return out


def write_data() -> list[Path]:
    DATA.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in [
        ("wine.csv", wine_frame()),
        ("diabetes.csv", diabetes_frame()),
        ("breast_cancer.csv", breast_cancer_frame()),
    ]:
        path = DATA / name
        frame.to_csv(path, index=False)
        size = path.stat().st_size
        if size >= MAX_DATA_BYTES:
            raise SystemExit(f"{path} is {size} bytes, over the {MAX_DATA_BYTES} limit")
        written.append(path)
    return written


# ---------------------------------------------------------------------- notebooks


def code(source: str, *tags: str) -> nbformat.NotebookNode:
    cell = new_code_cell(dedent(source).strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def md(source: str) -> nbformat.NotebookNode:
    return new_markdown_cell(dedent(source).strip("\n"))


def notebook(name: str, smoke: dict[str, object], cells: list) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.nbformat, nb.nbformat_minor = 4, 5
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["nbprod"] = {"name": name, "smoke": smoke}
    for index, cell in enumerate(cells):
        cell["id"] = f"{name.replace('_', '-')}-{index:02d}"
    nb.cells = cells
    nbformat.validate(nb)
    return nb


def wine_forest() -> nbformat.NotebookNode:
    cells = [
        md(
            """
            # Wine cultivar classifier

            A random forest predicting the cultivar (0, 1, 2) of a wine from its
            chemical analysis (scikit-learn's bundled wine data, `data/wine.csv`).
            """
        ),
        code(
            """
            import numpy as np
            import pandas as pd
            from sklearn.ensemble import RandomForestClassifier
            from sklearn.metrics import accuracy_score, f1_score
            from sklearn.model_selection import train_test_split
            """
        ),
        code(
            """
            n_estimators = 300
            max_depth = None
            test_size = 0.25
            random_state = 0
            """,
            "parameters",
        ),
        code(
            """
            df = pd.read_csv("data/wine.csv")
            """,
            "data",
        ),
        code(
            """
            print(df.shape)
            df.groupby("target")[["alcohol", "flavanoids", "proline"]].mean()
            """
        ),
        code(
            '''
            def make_features(df):
                """Raw wine measurements -> model inputs (drops "target" if present)."""
                X = df.drop(columns=["target"], errors="ignore").copy()
                X["flavanoid_ratio"] = X["flavanoids"] / X["total_phenols"]
                X["color_hue_ratio"] = X["color_intensity"] / X["hue"]
                X["log_proline"] = np.log1p(X["proline"])
                X["log_magnesium"] = np.log1p(X["magnesium"])
                return X
            ''',
            "features",
        ),
        code(
            """
            X_raw = df.drop(columns=["target"])
            y = df["target"]
            X_train_raw, X_test_raw, y_train, y_test = train_test_split(
                X_raw, y, test_size=test_size, random_state=random_state, stratify=y
            )
            model = RandomForestClassifier(
                n_estimators=n_estimators, max_depth=max_depth, random_state=random_state
            )
            model.fit(make_features(X_train_raw), y_train)
            """,
            "train",
        ),
        code(
            """
            y_test_pred = model.predict(make_features(X_test_raw))
            accuracy = float(accuracy_score(y_test, y_test_pred))
            f1_macro = float(f1_score(y_test, y_test_pred, average="macro"))
            print(f"accuracy={accuracy:.3f} f1_macro={f1_macro:.3f}")
            """,
            "metrics",
        ),
        code(
            '''
            def predict(records: pd.DataFrame):
                """Predict the cultivar of raw wine records (same columns as data/wine.csv)."""
                return model.predict(make_features(records))
            ''',
            "inference",
        ),
        md("Example call on raw (un-featurized) held-out records:"),
        code(
            """
            predict(X_test_raw.head(10))
            """
        ),
        code(
            """
            feature_names = make_features(X_test_raw.head(1)).columns
            importances = pd.Series(model.feature_importances_, index=feature_names)
            importances.sort_values(ascending=False).head(8)
            """
        ),
        code(
            """
            assert accuracy > 0.8
            assert f1_macro > 0.8
            assert len(predict(X_test_raw.head(3))) == 3
            assert set(predict(X_test_raw)) <= {0, 1, 2}
            """,
            "test",
        ),
    ]
    return notebook("wine_forest", {"n_estimators": 10}, cells)


def diabetes_regression() -> nbformat.NotebookNode:
    cells = [
        md(
            """
            # Diabetes progression regression

            Ridge regression in a scikit-learn `Pipeline` (scaling + one-hot
            encoding in a `ColumnTransformer`), with `alpha` tuned by `GridSearchCV`.
            Data: scikit-learn's bundled diabetes data, unscaled, with `sex` and
            `age_band` as categorical string columns (`data/diabetes.csv`).
            """
        ),
        code(
            """
            import numpy as np
            import pandas as pd
            from sklearn.compose import ColumnTransformer
            from sklearn.linear_model import Ridge
            from sklearn.metrics import mean_squared_error, r2_score
            from sklearn.model_selection import GridSearchCV, train_test_split
            from sklearn.pipeline import Pipeline
            from sklearn.preprocessing import OneHotEncoder, StandardScaler
            """
        ),
        code(
            """
            alphas = [0.01, 0.1, 1.0, 10.0, 100.0]
            cv_folds = 5
            test_size = 0.2
            random_state = 42
            """,
            "parameters",
        ),
        code(
            """
            df = pd.read_csv("data/diabetes.csv")
            """,
            "data",
        ),
        code(
            """
            df.groupby("age_band")["target"].describe()
            """
        ),
        code(
            """
            numeric_columns = ["age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
            categorical_columns = ["sex", "age_band"]
            """,
            "features",
        ),
        code(
            """
            X = df[numeric_columns + categorical_columns]
            y = df["target"]
            X_train, X_test, y_train, y_test = train_test_split(
                X, y, test_size=test_size, random_state=random_state
            )
            preprocess = ColumnTransformer(
                [
                    ("numeric", StandardScaler(), numeric_columns),
                    ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical_columns),
                ]
            )
            pipeline = Pipeline([("preprocess", preprocess), ("ridge", Ridge())])
            search = GridSearchCV(
                pipeline,
                {"ridge__alpha": alphas},
                cv=cv_folds,
                scoring="neg_root_mean_squared_error",
            )
            search.fit(X_train, y_train)
            """,
            "train",
        ),
        code(
            """
            print(search.best_params_)
            pd.DataFrame(search.cv_results_)[["param_ridge__alpha", "mean_test_score"]]
            """
        ),
        code(
            """
            test_pred = search.predict(X_test)
            rmse = float(np.sqrt(mean_squared_error(y_test, test_pred)))
            r2 = float(r2_score(y_test, test_pred))
            print(f"rmse={rmse:.2f} r2={r2:.3f}")
            """,
            "metrics",
        ),
        code(
            """
            y_pred = search.predict(X_test)
            """,
            "inference",
        ),
        code(
            """
            pd.DataFrame({"actual": y_test.head(5).to_numpy(), "predicted": y_pred[:5].round(1)})
            """
        ),
        code(
            """
            assert r2 > 0.3
            assert rmse < 70
            assert len(y_pred) == len(X_test)
            """,
            "test",
        ),
    ]
    return notebook("diabetes_regression", {"alphas": [1.0], "cv_folds": 2}, cells)


def cancer_threshold() -> nbformat.NotebookNode:
    cells = [
        md(
            """
            # Breast cancer screening with a tuned decision threshold

            Logistic regression on scikit-learn's bundled breast cancer data
            (`data/breast_cancer.csv`, `target` 1 = malignant). Prediction needs
            more than the model: the fitted one-hot `encoder` for `size_band`, the
            selected `feature_columns`, and the decision `threshold` chosen on a
            validation split to maximize F1.
            """
        ),
        code(
            """
            %matplotlib inline
            import matplotlib.pyplot as plt
            import numpy as np
            import pandas as pd
            from sklearn.linear_model import LogisticRegression
            from sklearn.metrics import accuracy_score, f1_score, roc_auc_score, roc_curve
            from sklearn.model_selection import train_test_split
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import OneHotEncoder, StandardScaler
            """
        ),
        code(
            """
            C = 1.0
            max_iter = 1000
            test_size = 0.25
            val_size = 0.25
            min_abs_corr = 0.1
            threshold_steps = 91
            random_state = 0
            """,
            "parameters",
        ),
        code(
            """
            df = pd.read_csv("data/breast_cancer.csv")
            """,
            "data",
        ),
        code(
            """
            fig, ax = plt.subplots(figsize=(6, 3))
            for label, group in df.groupby("target"):
                ax.hist(group["mean_radius"], bins=30, alpha=0.6, label=f"target={label}")
            ax.set_xlabel("mean_radius")
            ax.legend()
            plt.show()
            """
        ),
        code(
            '''
            class Clipper:
                """Clip numeric columns to fixed bounds (guards against data-entry outliers)."""

                def __init__(self, bounds):
                    self.bounds = bounds

                def transform(self, df):
                    out = df.copy()
                    for column, (low, high) in self.bounds.items():
                        out[column] = out[column].clip(low, high)
                    return out


            clipper = Clipper(
                {
                    "mean_radius": (5.0, 30.0),
                    "mean_texture": (5.0, 40.0),
                    "mean_area": (100.0, 2600.0),
                    "mean_concavity": (0.0, 0.5),
                }
            )


            def prepare(df):
                """Raw records -> clipped numeric inputs plus derived columns."""
                out = clipper.transform(df.drop(columns=["target"], errors="ignore"))
                out["log_area"] = np.log(out["mean_area"])
                out["radius_ratio"] = out["worst_radius"] / out["mean_radius"]
                return out


            def encode_bands(prepared, encoder):
                """Replace size_band with the one-hot columns of a fitted encoder."""
                onehot = pd.DataFrame(
                    encoder.transform(prepared[["size_band"]]),
                    columns=encoder.get_feature_names_out(),
                    index=prepared.index,
                )
                return pd.concat([prepared.drop(columns=["size_band"]), onehot], axis=1)
            ''',
            "features",
        ),
        code(
            """
            X_raw = df.drop(columns=["target"])
            y = df["target"]
            X_rest_raw, X_test_raw, y_rest, y_test = train_test_split(
                X_raw, y, test_size=test_size, random_state=random_state, stratify=y
            )
            X_train_raw, X_val_raw, y_train, y_val = train_test_split(
                X_rest_raw, y_rest, test_size=val_size, random_state=random_state, stratify=y_rest
            )

            train_prepared = prepare(X_train_raw)
            encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
            encoder.fit(train_prepared[["size_band"]])
            train_matrix = encode_bands(train_prepared, encoder)

            correlations = train_matrix.corrwith(y_train).abs()
            feature_columns = [c for c in train_matrix.columns if correlations[c] >= min_abs_corr]

            model = make_pipeline(
                StandardScaler(),
                LogisticRegression(C=C, max_iter=max_iter, random_state=random_state),
            )
            model.fit(train_matrix[feature_columns], y_train)

            val_matrix = encode_bands(prepare(X_val_raw), encoder)[feature_columns]
            val_proba = model.predict_proba(val_matrix)[:, 1]
            grid = np.linspace(0.05, 0.95, threshold_steps)
            f1s = [f1_score(y_val, (val_proba >= t).astype(int), zero_division=0) for t in grid]
            threshold = round(float(grid[int(np.argmax(f1s))]), 4)
            print(f"{len(feature_columns)} feature columns, threshold={threshold:.2f}")
            """,
            "train",
        ),
        code(
            """
            fig, ax = plt.subplots(figsize=(6, 3))
            ax.hist(val_proba[y_val.to_numpy() == 0], bins=20, alpha=0.6, label="benign")
            ax.hist(val_proba[y_val.to_numpy() == 1], bins=20, alpha=0.6, label="malignant")
            ax.axvline(threshold, color="k", linestyle="--", label="threshold")
            ax.set_xlabel("validation P(malignant)")
            ax.legend()
            plt.show()
            """
        ),
        code(
            """
            test_matrix = encode_bands(prepare(X_test_raw), encoder)[feature_columns]
            test_proba = model.predict_proba(test_matrix)[:, 1]
            test_pred = (test_proba >= threshold).astype(int)
            accuracy = float(accuracy_score(y_test, test_pred))
            roc_auc = float(roc_auc_score(y_test, test_proba))
            print(f"accuracy={accuracy:.3f} roc_auc={roc_auc:.3f}")
            """,
            "metrics",
        ),
        code(
            """
            fpr, tpr, _ = roc_curve(y_test, test_proba)
            fig, ax = plt.subplots(figsize=(4, 4))
            ax.plot(fpr, tpr, label=f"AUC = {roc_auc:.3f}")
            ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
            ax.legend()
            plt.show()
            """
        ),
        code(
            '''
            def predict(records):
                """Return 1 (malignant) / 0 (benign) for raw records like data/breast_cancer.csv."""
                matrix = encode_bands(prepare(records), encoder)[feature_columns]
                proba = model.predict_proba(matrix)[:, 1]
                return (proba >= threshold).astype(int)
            ''',
            "inference",
        ),
        code(
            """
            sample = X_test_raw.head(8)
            pd.DataFrame({"predicted": predict(sample), "actual": y_test.head(8).to_numpy()})
            """
        ),
        code(
            """
            assert accuracy > 0.9
            assert roc_auc > 0.95
            assert 0.0 < threshold < 1.0
            assert len(feature_columns) > 0
            assert set(predict(X_test_raw.head(20)).tolist()) <= {0, 1}
            """,
            "test",
        ),
    ]
    smoke = {"max_iter": 300, "threshold_steps": 19}
    return notebook("cancer_threshold", smoke, cells)


NOTEBOOKS = {
    "wine_forest.ipynb": wine_forest,
    "diabetes_regression.ipynb": diabetes_regression,
    "cancer_threshold.ipynb": cancer_threshold,
}


def main() -> None:
    for path in write_data():
        print(f"wrote {path.relative_to(HERE)} ({path.stat().st_size} bytes)")
    for filename, build in NOTEBOOKS.items():
        path = HERE / filename
        nbformat.write(build(), path)
        print(f"wrote {path.relative_to(HERE)}")


if __name__ == "__main__":
    main()
