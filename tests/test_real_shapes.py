"""Shapes of real notebooks taken through run → extract → the package's own tests:
objects fitted in another cell than they were made, functions and classes of train
cells inside fitted objects, helper modules beside the notebook, data read from a
relative path, and packages that would not load (refused, and nothing written)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nbbuild import write_notebook
from tools import make_venv, nbprod, run_and_extract

pytestmark = pytest.mark.slow

TEXTS = (
    "data",
    "import pandas as pd\n"
    "df = pd.DataFrame({'text': ['Red apple', 'green pear', 'ripe pear', 'red plum', "
    "'green apple', 'ripe plum'], 'y': [0, 1, 1, 0, 1, 0]})",
)


TEXT_MODEL_IMPORTS = (
    "from sklearn.feature_extraction.text import CountVectorizer\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "from sklearn.pipeline import make_pipeline\n"
    "from sklearn.preprocessing import FunctionTransformer\n"
)


def package_tests(package: Path) -> subprocess.CompletedProcess[str]:
    """The generated package's own tests, against its source (the dev venv has its deps)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=package,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(package / "src")},
        timeout=600,
    )


def test_a_vectorizer_made_in_features_and_fitted_in_train_is_shipped_fitted(
    tmp_path: Path,
) -> None:
    notebook = write_notebook(
        tmp_path / "texts.ipynb",
        TEXTS,
        (
            "features",
            "from sklearn.feature_extraction.text import TfidfVectorizer\n"
            "tfidf = TfidfVectorizer()",
        ),
        (
            "train",
            "from sklearn.linear_model import LogisticRegression\n"
            "X = tfidf.fit_transform(df.text)\n"
            "model = LogisticRegression().fit(X, df.y)",
        ),
        ("inference", "def predict(texts):\n    return model.predict(tfidf.transform(texts))"),
        (None, "predict(df.text)"),
    )
    run_and_extract(notebook, tmp_path / "pkg")
    manifest = json.loads((tmp_path / "pkg/src/texts/artifacts/manifest.json").read_text())
    assert sorted(manifest["artifacts"]) == ["model", "tfidf"]
    tested = package_tests(tmp_path / "pkg")
    assert tested.returncode == 0, tested.stdout + tested.stderr


CALLABLES = (
    TEXTS,
    (
        "train",
        "import numpy as np\n"
        "from sklearn.base import BaseEstimator, TransformerMixin\n"
        "from sklearn.feature_extraction.text import CountVectorizer\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.metrics import make_scorer\n"
        "from sklearn.model_selection import GridSearchCV\n"
        "from sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import FunctionTransformer\n"
        "\n"
        "def lower(texts):\n"
        "    return texts.str.lower()\n"
        "\n"
        "class Dense(BaseEstimator, TransformerMixin):\n"
        "    def fit(self, X, y=None):\n"
        "        return self\n"
        "    def transform(self, X):\n"
        "        return np.asarray(X.todense())\n"
        "\n"
        "def agreement(y_true, y_pred):\n"
        "    return float(np.mean(y_true == y_pred))\n"
        "\n"
        "pipe = make_pipeline(FunctionTransformer(lower), CountVectorizer(), Dense(),\n"
        "                     LogisticRegression())\n"
        "search = GridSearchCV(pipe, {'logisticregression__C': [0.5, 1.0]}, cv=2,\n"
        "                      scoring=make_scorer(agreement))\n"
        "search.fit(df.text, df.y)",
    ),
    ("inference", "def predict(texts):\n    return search.predict(texts)"),
    (None, "predict(df.text)"),
)


def test_functions_and_classes_of_a_train_cell_inside_an_artifact_load(tmp_path: Path) -> None:
    run_and_extract(write_notebook(tmp_path / "callables.ipynb", *CALLABLES), tmp_path / "pkg")
    pipeline = (tmp_path / "pkg/src/callables/pipeline.py").read_text()
    for definition in ("\ndef lower(", "\nclass Dense(", "\ndef agreement("):
        assert definition in pipeline  # at module level, not inside _train_cells()
    tested = package_tests(tmp_path / "pkg")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_a_run_whose_artifact_needs_a_function_the_package_lacks_fails_naming_it(
    tmp_path: Path,
) -> None:
    """A train-cell function whose default reads a training value cannot move to module
    level: the run says so, naming the cell, instead of a broken package later."""
    notebook = write_notebook(
        tmp_path / "stuck.ipynb",
        TEXTS,
        (
            "train",
            TEXT_MODEL_IMPORTS + "suffix = ''\n"
            "def lower(texts, suffix=suffix):\n"
            "    return texts.str.lower() + suffix\n"
            "model = make_pipeline(FunctionTransformer(lower), CountVectorizer(),\n"
            "                      LogisticRegression()).fit(df.text, df.y)",
        ),
        ("inference", "def predict(texts):\n    return model.predict(texts)"),
        (None, "predict(df.text)"),
    )
    run = nbprod("run", notebook)
    assert run.returncode == 1
    assert "cell 2 (train), line 8: the artifact `model` refers to `lower`" in run.stderr
    assert "fix: move `lower` into a features cell" in run.stderr
    assert "Traceback" not in run.stderr


HELPERS = """\
from utils import scale


def add_length(frame):
    out = frame.copy()
    out["length"] = out.text.str.len() * scale()
    return out


class Lower:
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X.str.lower()
"""


def local_project(root: Path) -> Path:
    """A notebook with a helper module beside it (importing another), a ``src``
    package on a path it adds itself, and training data read from a relative path."""
    (root / "lib" / "textfeat").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "helpers.py").write_text(HELPERS)
    (root / "utils.py").write_text("def scale():\n    return 2\n")
    (root / "lib" / "textfeat" / "__init__.py").write_text("from .columns import pick\n")
    (root / "lib" / "textfeat" / "columns.py").write_text(
        "def pick(frame):\n    return frame[['length']]\n"
    )
    (root / "data" / "texts.csv").write_text(
        "text,y\nRed apple,0\ngreen pear,1\nripe pear,1\nred plum,0\ngreen apple,1\nripe plum,0\n"
    )
    return write_notebook(
        root / "helpers_nb.ipynb",
        ("data", "import pandas as pd\ndf = pd.read_csv('data/texts.csv')"),
        (
            "features",
            "import sys\nsys.path.append('lib')\nfrom helpers import add_length\nimport textfeat",
        ),
        (
            "train",
            "import helpers\n"
            "from sklearn.feature_extraction.text import CountVectorizer\n"
            "from sklearn.linear_model import LogisticRegression\n"
            "from sklearn.pipeline import make_pipeline\n"
            "model = make_pipeline(helpers.Lower(), CountVectorizer(), LogisticRegression())\n"
            "model.fit(df.text, df.y)",
        ),
        (
            "inference",
            "def predict(records):\n"
            "    lengths = textfeat.pick(add_length(records))['length'].to_numpy()\n"
            "    return model.predict(records.text) * 100 + lengths",
        ),
        (None, "predict(df)"),
    )


def test_helper_modules_are_vendored_and_the_package_holds_no_machine_path(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    notebook = local_project(project)
    package = tmp_path / "built" / "pkg"
    run_and_extract(notebook, package)
    source = package / "src" / "helpers_nb"
    vendored = sorted(p.relative_to(source).as_posix() for p in source.rglob("vendored/**/*.py"))
    assert vendored == [
        "vendored/__init__.py",
        "vendored/helpers.py",
        "vendored/textfeat/__init__.py",
        "vendored/textfeat/columns.py",
        "vendored/utils.py",
    ]
    assert (
        "from helpers_nb.vendored.utils import scale"
        in (source / "vendored/helpers.py").read_text()
    )
    pyproject = (package / "pyproject.toml").read_text()
    dependencies = pyproject[pyproject.index("dependencies = [") : pyproject.index("]")]
    for local in ("helpers", "utils", "textfeat", "lib"):
        assert f'"{local}' not in dependencies
    for path in package.rglob("*"):
        if path.is_file() and path.suffix in {".py", ".json", ".md", ".toml", ".txt"}:
            assert str(tmp_path) not in path.read_text(encoding="utf-8"), path

    # A clean venv, offline: only the pinned dependencies, from the shared cache.
    python = make_venv(tmp_path / "venv", f"{package}[test]", index=["--offline"])
    tested = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=package,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr

    # Trained from another folder: relative data paths resolve against --workdir ...
    script = python.parent / "helpers-nb"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    trained = subprocess.run(
        [str(script), "train", "--workdir", str(project), "-o", str(elsewhere / "new")],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stderr
    assert (elsewhere / "new" / "manifest.json").is_file()
    # ... and without it, the missing file and the option are named.
    missing = subprocess.run(
        [str(script), "train"], cwd=elsewhere, capture_output=True, text=True, timeout=600
    )
    assert missing.returncode == 2
    assert "data/texts.csv" in missing.stderr and "--workdir" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_package_that_would_not_import_is_never_written(tmp_path: Path) -> None:
    """The helper module is gone by the time of extract: the probe cannot import the
    package, so extract refuses, names the module, and leaves no output behind."""
    project = tmp_path / "project"
    notebook = local_project(project)
    run = nbprod("run", notebook, "--json")
    assert run.returncode == 0, run.stderr
    shutil.rmtree(project / "lib")
    output = tmp_path / "pkg"
    extracted = nbprod("extract", notebook, "--run", json.loads(run.stdout)["id"], "-o", output)
    assert extracted.returncode == 1, extracted.stdout + extracted.stderr
    assert "does not import" in extracted.stderr and "textfeat" in extracted.stderr
    assert "Traceback" not in extracted.stderr
    assert not output.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".pkg")] == []


def test_a_lambda_inside_an_artifact_gets_a_home_in_the_package(tmp_path: Path) -> None:
    notebook = write_notebook(
        tmp_path / "lambdas.ipynb",
        TEXTS,
        (
            "train",
            TEXT_MODEL_IMPORTS
            + "model = make_pipeline(FunctionTransformer(lambda s: s.str.lower()),\n"
            "                      CountVectorizer(), LogisticRegression()).fit(df.text, df.y)",
        ),
        ("inference", "def predict(texts):\n    return model.predict(texts)"),
        (None, "predict(df.text)"),
    )
    run_and_extract(notebook, tmp_path / "pkg")
    pipeline = (tmp_path / "pkg/src/lambdas/pipeline.py").read_text()
    assert "# cell 2, line 5\n_lambda_1 = lambda s: s.str.lower()\n" in pipeline
    assert '_lambda_1.__name__ = _lambda_1.__qualname__ = "_lambda_1"' in pipeline
    assert "FunctionTransformer(_lambda_1)" in pipeline  # train() uses the named one
    tested = package_tests(tmp_path / "pkg")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # retrained, the artifacts can be saved again: the lambda has its name in train() too
    retrained = subprocess.run(
        [sys.executable, "-m", "lambdas", "train", "-o", str(tmp_path / "again")],
        cwd=tmp_path / "pkg",
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "pkg" / "src")},
        timeout=600,
    )
    assert retrained.returncode == 0, retrained.stderr
    assert (tmp_path / "again" / "manifest.json").is_file()


def test_a_lambda_closing_over_a_local_is_refused_at_run_naming_the_artifact(
    tmp_path: Path,
) -> None:
    notebook = write_notebook(
        tmp_path / "closure.ipynb",
        TEXTS,
        (
            "train",
            TEXT_MODEL_IMPORTS + "def cleaner(suffix):\n"
            "    return lambda s: s.str.lower() + suffix\n"
            "model = make_pipeline(FunctionTransformer(cleaner('')),\n"
            "                      CountVectorizer(), LogisticRegression()).fit(df.text, df.y)",
        ),
        ("inference", "def predict(texts):\n    return model.predict(texts)"),
        (None, "predict(df.text)"),
    )
    run = nbprod("run", notebook)
    assert run.returncode == 1
    assert "`model`" in run.stderr and "lambda" in run.stderr and "def" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_script_the_notebook_runs_with_percent_run_is_vendored(tmp_path: Path) -> None:
    (tmp_path / "cleaning.py").write_text(
        "import re\n\n\ndef clean(texts):\n"
        "    return texts.str.lower().map(lambda t: re.sub(r'\\s+', ' ', t))\n"
    )
    notebook = write_notebook(
        tmp_path / "scripted.ipynb",
        ("features", "%load_ext autoreload\n%autoreload 2\n%run cleaning.py"),
        TEXTS,
        (
            "train",
            TEXT_MODEL_IMPORTS
            + "model = make_pipeline(FunctionTransformer(clean), CountVectorizer(),\n"
            "                      LogisticRegression()).fit(df.text, df.y)",
        ),
        ("inference", "def predict(texts):\n    return model.predict(texts)"),
        (None, "predict(df.text)"),
    )
    checked = nbprod("check", notebook)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    run_and_extract(notebook, tmp_path / "pkg")
    source = tmp_path / "pkg/src/scripted"
    assert (source / "vendored" / "cleaning.py").is_file()
    assert "from scripted.vendored.cleaning import clean" in (source / "pipeline.py").read_text()
    tested = package_tests(tmp_path / "pkg")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def apply_advice(notebook: Path, rounds: int = 10) -> list[str]:
    """Follow `nbprod check`'s advice literally, as a newcomer would: for each problem
    whose fix starts `tag cell N `role``, tag that cell so; repeat until the check
    passes or advises nothing it can follow. Returns the tags applied, in order."""
    applied: list[str] = []
    for _ in range(rounds):
        report = json.loads(nbprod("check", notebook, "--json").stdout)
        if report["ok"]:
            return applied
        node = json.loads(notebook.read_text())
        followed = False
        for problem in report["problems"]:
            found = re.match(r"tag cell (\d+) `(\w+)`", problem["hint"] or "")
            if found is None:
                continue
            cell, role = int(found.group(1)), found.group(2)
            node["cells"][cell - 1]["metadata"]["tags"] = [role]
            applied.append(f"{cell}:{role}")
            followed = True
        notebook.write_text(json.dumps(node))
        if not followed:
            break
    raise AssertionError(f"the advice did not converge: {applied}, {report['problems']}")


def test_following_the_checks_advice_literally_leads_to_a_working_package(
    tmp_path: Path,
) -> None:
    """A notebook as people write it, with only its model and prediction tagged: every
    cell the check names gets the role it advises, and the package then passes its
    own tests."""
    (tmp_path / "data").mkdir()
    rows = "".join(f"{i},{i % 7 * 1.5},{(i * 3) % 5},{int(i % 7 > 3)}\n" for i in range(60))
    (tmp_path / "data" / "train.csv").write_text("id,x1,x2,label\n" + rows)
    (tmp_path / "data" / "test.csv").write_text("id,x1,x2\n1,0.5,2\n2,6.0,1\n3,3.0,4\n")
    notebook = write_notebook(
        tmp_path / "advice.ipynb",
        (None, "import pandas as pd\nfrom sklearn.linear_model import LogisticRegression"),
        (None, "train = pd.read_csv('data/train.csv')\ntrain.head()"),
        (None, "def features(frame):\n    return frame[['x1', 'x2']] * 2"),
        (None, "threshold = train.label.mean()"),
        ("train", "model = LogisticRegression().fit(features(train), train.label)"),
        (None, "test_data = pd.read_csv('data/test.csv')"),
        (
            "inference",
            "scores = model.predict_proba(features(test_data))[:, 1]\nlabels = scores > threshold",
        ),
    )
    applied = apply_advice(notebook)
    assert sorted(set(applied)) == ["2:data", "3:features", "4:train", "6:data"]
    run_and_extract(notebook, tmp_path / "pkg")
    tested = package_tests(tmp_path / "pkg")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_a_run_whose_package_would_not_predict_the_same_fails_the_run(tmp_path: Path) -> None:
    """The round trip at the end of `nbprod run`: a prediction that depends on something
    outside its inputs and the artifacts cannot be reproduced by the package."""
    notebook = write_notebook(
        tmp_path / "noisy.ipynb",
        ("data", "xs = [1.0, 2.0, 3.0]"),
        ("train", "w = sum(xs)"),
        ("inference", "import random\n\ndef predict(x):\n    return x * w + random.random()"),
        (None, "predict(2.0)"),
    )
    run = nbprod("run", notebook, "--json")
    assert run.returncode == 1, run.stdout + run.stderr
    summary = json.loads(run.stdout)
    assert summary["status"] == "failed"
    assert "cell 3 (inference)" in summary["error"]
    assert "the run cannot become a working package" in summary["error"]
    assert "does not predict what the notebook did" in summary["error"]
    listed = nbprod("runs", notebook, "--json")
    assert [r["status"] for r in json.loads(listed.stdout)] == ["failed"]
