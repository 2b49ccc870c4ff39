"""`extract --onnx`: models converted, proven on the notebook's recorded calls, shipped
beside their skops files, and run by ONNX Runtime only where they predict the same.

The example runs are the session's shared builds (tools.shared_example); each is
extracted again with --onnx. The wine forest's package is installed with its `onnx`
extra into a clean venv, where it is imported, served and tampered with.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nbbuild import write_notebook
from test_serve import serving
from tools import make_venv, nbprod, shared_example

from nbprod.runtime.values import decode

pytestmark = pytest.mark.slow

CONVERTED = {
    "wine_forest": {"model"},
    "cancer_threshold": {"encoder", "model"},
    "diabetes_regression": {"search"},
}
TRAINING_ONLY = ("sklearn", "skops", "scipy")


def extract_onnx(notebook: Path, run_id: str, output: Path) -> Path:
    done = nbprod("extract", notebook, "--run", run_id, "-o", output, "--onnx")
    assert done.returncode == 0, done.stdout + done.stderr
    return output


def manifest_of(package: Path) -> dict[str, Any]:
    [folder] = (package / "src").glob("*/artifacts")
    entries: dict[str, Any] = json.loads((folder / "manifest.json").read_text())["artifacts"]
    return entries


def pytest_in(package: Path, python: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package / "src")}
    return subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=package,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


@pytest.fixture(scope="module", params=sorted(CONVERTED))
def example(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    build = shared_example(request.param, tmp_path_factory)
    package = extract_onnx(build["notebook"], build["run"]["id"], build["root"] / "onnx")
    return {**build, "onnx_package": package}


def test_each_example_model_is_converted_and_recorded_with_its_hash(
    example: dict[str, Any],
) -> None:
    from nbprod.runtime.artifacts import sha256

    package = example["onnx_package"]
    entries = manifest_of(package)
    converted = {name for name, entry in entries.items() if "files" in entry.get("onnx", {})}
    assert converted == CONVERTED[example["name"]]
    [folder] = (package / "src").glob("*/artifacts")
    for name in converted:
        spec = entries[name]["onnx"]
        assert entries[name]["format"] == "skops"  # the reference stays beside it
        for file, digest in spec["files"].items():
            assert sha256(folder / file) == digest
        assert spec["tolerance"] == {"rtol": 1e-4, "atol": 1e-5}
        assert spec["methods"], spec
    card = (package / "README.md").read_text()
    assert "### Fast path: ONNX Runtime" in card
    for name in converted:
        assert f"| `{name}` | used | skl2onnx" in card
    info = json.loads(next((package / "src").glob("*/model_info.json")).read_text())
    assert {n for n, a in info["onnx"]["artifacts"].items() if a["converted"]} == converted


def test_the_generated_parity_tests_prove_both_paths(example: dict[str, Any]) -> None:
    done = pytest_in(example["onnx_package"], sys.executable, "tests/test_parity.py", "-v")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[onnx-" in done.stdout and "[skops-" in done.stdout, done.stdout
    assert "test_the_onnx_path_runs_every_converted_model_on_onnx_runtime PASSED" in done.stdout


def test_without_onnx_the_package_has_no_onnx_file_and_one_path(example: dict[str, Any]) -> None:
    package = example["package_dir"]  # the shared build: extracted without --onnx
    assert not list(package.rglob("*.onnx"))
    assert all("onnx" not in entry for entry in manifest_of(package).values())
    assert "onnx" not in (package / "pyproject.toml").read_text()
    assert "Fast path" not in (package / "README.md").read_text()


# --- the wine forest's package, installed with [onnx] into a clean venv ------------------


@pytest.fixture(scope="module")
def wine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    build = shared_example("wine_forest", tmp_path_factory)
    package = extract_onnx(build["notebook"], build["run"]["id"], build["root"] / "onnx")
    python = make_venv(build["root"] / "venv", f"{package}[test,serve,onnx]")
    parity = package / "tests" / "parity"
    calls = json.loads((parity / "parity.json").read_text())["calls"]
    first = decode(calls[0]["args"][0], parity)
    return {**build, "onnx_package": package, "onnx_python": python, "frame": first}


COLD_START = """
import json, sys
import pandas as pd
import wine_forest
frame = pd.DataFrame(**json.loads(sys.argv[1]))  # columns, index, data
labels = wine_forest.predict(frame).tolist()
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"sklearn", "skops", "scipy"})
print(json.dumps({"labels": labels, "backends": wine_forest.backends(), "loaded": loaded}))
"""


def first_prediction(wine: dict[str, Any], **env: str) -> subprocess.CompletedProcess[str]:
    """A fresh process of the clean venv: import the package, predict the recorded frame."""
    return subprocess.run(
        [str(wine["onnx_python"]), "-c", COLD_START, wine["frame"].to_json(orient="split")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        cwd=wine["root"],
    )


def cold_start(wine: dict[str, Any], **env: str) -> dict[str, Any]:
    done = first_prediction(wine, **env)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_importing_and_predicting_on_onnx_imports_no_training_library(
    wine: dict[str, Any],
) -> None:
    fast = cold_start(wine)
    assert fast["backends"] == {"model": "onnx"}
    assert fast["loaded"] == []
    reference = cold_start(wine, WINE_FOREST_BACKEND="skops")
    assert reference["backends"] == {"model": "skops"}
    assert {"sklearn", "skops"} <= set(reference["loaded"])  # what the fast path avoids
    assert fast["labels"] == reference["labels"]


def test_the_installed_package_passes_its_own_tests_on_both_paths(wine: dict[str, Any]) -> None:
    done = subprocess.run(
        [str(wine["onnx_python"]), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=wine["onnx_package"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed" in done.stdout and "skipped" not in done.stdout


def test_the_server_answers_the_same_on_onnx_and_says_which_path_it_uses(
    wine: dict[str, Any],
) -> None:
    frame = wine["frame"]
    records = json.loads(frame.to_json(orient="records"))
    answers = {}
    for backend in ("auto", "skops"):
        script = Path(wine["onnx_python"]).parent / "wine-forest"
        env = {"WINE_FOREST_BACKEND": backend}
        with serving(script, wine["root"], "--no-metrics", env=env) as server:
            status, _, body = server.post_json({"records": records})
            assert status == 200, body
            answers[backend] = body["predictions"]
            status, _, metadata = server.request("GET", "/metadata")
            assert status == 200
            assert metadata["backends"] == {"model": "onnx" if backend == "auto" else "skops"}
            assert metadata["onnx"]["artifacts"]["model"]["converted"] is True
    assert answers["auto"] == answers["skops"]
    assert len(answers["auto"]) == len(frame)


def test_info_says_which_path_each_artifact_uses(wine: dict[str, Any]) -> None:
    script = Path(wine["onnx_python"]).parent / "wine-forest"
    for backend, expected in (("auto", "onnx"), ("skops", "skops")):
        done = subprocess.run(
            [str(script), "info"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "WINE_FOREST_BACKEND": backend},
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["backends"] == {"model": expected}


def test_a_changed_onnx_file_is_refused_and_the_reference_path_still_loads(
    wine: dict[str, Any], tmp_path: Path
) -> None:
    [original] = (wine["onnx_package"] / "src").glob("*/artifacts")
    artifacts = shutil.copytree(original, tmp_path / "artifacts")
    content = bytearray((artifacts / "model.onnx").read_bytes())
    content[len(content) // 2] ^= 0x01
    (artifacts / "model.onnx").write_bytes(bytes(content))
    env = {"WINE_FOREST_ARTIFACTS": str(artifacts)}
    done = first_prediction(wine, **env)
    assert done.returncode != 0
    assert "ArtifactIntegrityError" in done.stderr and "model.onnx" in done.stderr
    assert "was changed or corrupted" in done.stderr
    assert cold_start(wine, WINE_FOREST_BACKEND="skops", **env)["backends"] == {"model": "skops"}


def test_without_onnxruntime_auto_uses_skops_and_onnx_says_what_to_install(
    wine: dict[str, Any],
) -> None:
    # the shared venv has the package without the onnx extra; point it at the ONNX artifacts
    [artifacts] = (wine["onnx_package"] / "src").glob("*/artifacts")
    program = "import wine_forest; wine_forest.load_artifacts(); print(wine_forest.backends())"
    env = {**os.environ, "WINE_FOREST_ARTIFACTS": str(artifacts)}
    auto = subprocess.run(
        [str(wine["python"]), "-c", program], capture_output=True, text=True, env=env
    )
    assert auto.returncode == 0, auto.stderr
    assert auto.stdout.strip() == "{'model': 'skops'}"
    forced = subprocess.run(
        [str(wine["python"]), "-c", program],
        capture_output=True,
        text=True,
        env={**env, "WINE_FOREST_BACKEND": "onnx"},
    )
    assert forced.returncode != 0
    assert "pip install 'wine-forest[onnx]'" in forced.stderr
    wrong = subprocess.run(
        [str(wine["python"]), "-c", program],
        capture_output=True,
        text=True,
        env={**env, "WINE_FOREST_BACKEND": "fast"},
    )
    assert "backend 'fast' is not one of auto, onnx, skops" in wrong.stderr


# --- models the converters refuse, and a conversion that would change a prediction ------

FALLBACK_DATA = """\
import numpy as np
import pandas as pd

rng = np.random.default_rng(3)
rows = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
rows["y"] = 2 * rows.a - rows.b + rng.normal(scale=0.2, size=200)
rows["label"] = (rows.y > 0).astype(int)
rows["city"] = rng.choice(["Lyon", "Oslo", "Rome"], size=200)
"""
FALLBACK_TRAIN = """\
import lightgbm as lgb
import xgboost as xgb
from sklearn.ensemble import RandomForestClassifier
from sklearn.kernel_ridge import KernelRidge
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC

X = rows[["a", "b"]]
forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, rows.label)
ridge = KernelRidge(alpha=0.5).fit(X, rows.y)
booster = lgb.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, rows.label)
svm = LinearSVC().fit(X, rows.label)
imputed_boost = make_pipeline(SimpleImputer(), xgb.XGBRegressor(n_estimators=10)).fit(X, rows.y)
mixed = make_pipeline(
    ColumnTransformer([("num", StandardScaler(), ["a"]), ("cat", OneHotEncoder(), ["city"])]),
    LogisticRegression(),
).fit(rows[["a", "city"]], rows.label)
"""
# Parts per billion: float32 probabilities move these integers, so the booster's ONNX
# form passes the per-method check (floats within tolerance) and fails predict()'s parity.
FALLBACK_INFERENCE = """\
def predict(frame):
    X = frame[["a", "b"]]
    return pd.DataFrame(
        {
            "label": forest.predict(X),
            "ridge": ridge.predict(X),
            "ppb": (booster.predict_proba(X)[:, 1] * 1e9).astype(np.int64),
            "margin": svm.decision_function(X),
            "boosted": imputed_boost.predict(X),
            "mixed": mixed.predict_proba(frame[["a", "city"]])[:, 1],
        },
        index=frame.index,
    )
"""


def test_models_whose_onnx_form_is_refused_or_differs_stay_on_skops_with_the_reason(
    tmp_path: Path,
) -> None:
    notebook = write_notebook(
        tmp_path / "fallback.ipynb",
        ("data", FALLBACK_DATA),
        ("train", FALLBACK_TRAIN),
        ("inference", FALLBACK_INFERENCE),
        (None, "predict(rows.head(60))"),
        nbprod={"name": "fallback"},
    )
    run = nbprod("run", notebook, "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    package = extract_onnx(notebook, json.loads(run.stdout)["id"], tmp_path / "package")
    onnx = {name: entry["onnx"] for name, entry in manifest_of(package).items()}
    assert "files" in onnx["forest"]
    assert set(onnx["svm"]["methods"]) == {"decision_function"}  # from a raw-scores graph
    assert onnx["svm"]["methods"]["decision_function"]["file"] == "svm.scores.onnx"
    assert "files" in onnx["imputed_boost"]  # xgboost inside a scikit-learn pipeline
    # a column transformer over a number and a text column: one graph input per column
    assert [c["dtype"] for c in onnx["mixed"]["inputs"]["columns"]] == ["float32", "str"]
    assert "cannot convert KernelRidge" in onnx["ridge"]["refused"]
    assert "predict() then differs from the notebook" in onnx["booster"]["refused"]
    assert not (package / "src" / "fallback" / "artifacts" / "booster.onnx").exists()
    card = (package / "README.md").read_text()
    assert "| `forest` | used |" in card
    assert "| `ridge` | **not used**: skops | skl2onnx" in card and "KernelRidge" in card
    assert "| `booster` | **not used**: skops | predict() then differs" in card
    done = pytest_in(package, sys.executable, "tests/test_parity.py", "-v")
    assert done.returncode == 0, done.stdout + done.stderr
    program = "import fallback; fallback.load_artifacts(backend='onnx'); print(fallback.backends())"
    used = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(package / "src")},
    )
    assert used.returncode == 0, used.stderr
    expected = {
        "booster": "lightgbm",
        "forest": "onnx",
        "ridge": "skops",
        "imputed_boost": "onnx",
        "mixed": "onnx",
        "svm": "onnx",
    }
    assert ast.literal_eval(used.stdout.strip()) == expected


def test_the_threads_of_onnx_runtime_are_a_setting_checked_when_loading(
    wine: dict[str, Any],
) -> None:
    reference = cold_start(wine, WINE_FOREST_BACKEND="skops")["labels"]
    for threads in ("1", "0", "auto"):
        assert cold_start(wine, WINE_FOREST_ONNX_THREADS=threads)["labels"] == reference
    wrong = first_prediction(wine, WINE_FOREST_ONNX_THREADS="many")
    assert wrong.returncode != 0
    assert "WINE_FOREST_ONNX_THREADS='many': expected auto or a number" in wrong.stderr


LARGE_BATCH = """
import json, sys
from pathlib import Path
import pandas as pd
package = __import__(sys.argv[1])
from importlib import import_module
values = import_module(sys.argv[1] + "._values")
onnx = import_module(sys.argv[1] + "._onnx")
parity = Path(sys.argv[2])
call = json.loads((parity / "parity.json").read_text())["calls"][0]
first = values.decode(call["args"][0], parity)
frame = pd.concat([first] * (600 // len(first) + 1), ignore_index=True)
package.load_artifacts(backend="skops")
expected = package.predict(frame)
package.load_artifacts(backend="onnx")
values.assert_same(package.predict(frame), expected, "600 rows", **onnx.TOLERANCE)
models = [getattr(package.pipeline, n) for n, b in package.backends().items() if b == "onnx"]
print(json.dumps(sorted({t for m in models for _, t in m._sessions})))
"""


def test_a_large_batch_runs_on_the_thread_pool_and_answers_the_same(
    example: dict[str, Any],
) -> None:
    package = example["onnx_package"]
    done = subprocess.run(
        [sys.executable, "-c", LARGE_BATCH, example["name"], str(package / "tests" / "parity")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(package / "src")},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [0, 1]  # one thread for small inputs, the pool above


def test_publish_onnx_ships_the_onnx_files_in_the_wheel_and_proves_both_paths(
    wine: dict[str, Any], tmp_path: Path
) -> None:
    import zipfile

    dist = tmp_path / "dist"
    done = nbprod("publish", wine["notebook"], "--run", wine["run"]["id"], "--dist", dist, "--onnx")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "• generate the package, with ONNX models" in done.stderr
    # the tests' extra holds onnxruntime, so the clean venv proves both paths
    assert re.search(r"tests in a clean venv: \d+ passed", done.stdout), done.stdout
    [wheel] = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = archive.read(metadata).decode()
    assert {"wine_forest/artifacts/model.onnx", "wine_forest/_onnx.py"} <= set(names)
    assert "Provides-Extra: onnx" in requires
    assert re.search(r"Requires-Dist: onnxruntime~=[\d.]+; extra == .onnx.", requires)
