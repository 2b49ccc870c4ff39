"""Every example notebook end to end, through the real CLI, kernels and clean venvs:
check → run → extract → pip install → the package's own tests → predict/CLI/train."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from paths import EXAMPLE_NAMES
from tools import shared_example

from nbprod.runtime.values import assert_same, decode

pytestmark = pytest.mark.slow

PREDICT_RECORDED = """
import json, sys
from pathlib import Path
import numpy as np
import {package}
from {package}._values import decode, encode
parity = Path(sys.argv[1])
out = Path(sys.argv[2])
calls = json.loads((parity / "parity.json").read_text())["calls"]
results = []
for i, call in enumerate(calls):
    args = [decode(a, parity) for a in call["args"]]
    kwargs = {{k: decode(v, parity) for k, v in call["kwargs"].items()}}
    results.append(encode({package}.predict(*args, **kwargs), out, f"result{{i}}"))
(out / "results.json").write_text(json.dumps(results))
"""


@pytest.fixture(scope="module", params=EXAMPLE_NAMES)
def shipped(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An example notebook checked, run, extracted and installed in a clean venv (built
    once per session, shared with the batch and serve tests: ``tools.shared_example``)."""
    build = shared_example(request.param, tmp_path_factory)
    assert "can be extracted" in build["check"]
    return build


def test_run_folder_holds_what_the_run_produced(shipped: dict) -> None:
    run_dir = shipped["run_dir"]
    assert (run_dir / "executed.ipynb").is_file()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded" and record["id"] == shipped["run"]["id"]
    manifest = json.loads((run_dir / "artifacts" / "manifest.json").read_text())["artifacts"]
    assert manifest and set(manifest) == set(record["artifacts"])
    parity = json.loads((run_dir / "parity" / "parity.json").read_text())
    assert parity["calls"], "the run must record at least one call of the entry point"
    executed = json.loads((run_dir / "executed.ipynb").read_text())
    assert not any("nbprod-injected" in c["metadata"].get("tags", []) for c in executed["cells"])
    assert any(c.get("outputs") for c in executed["cells"] if c["cell_type"] == "code")


def test_installed_package_passes_its_own_tests(shipped: dict) -> None:
    result = subprocess.run(
        [str(shipped["python"]), "-m", "pytest", "-q"],
        cwd=shipped["package_dir"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout and "skipped" not in result.stdout


def assert_predicts_the_recorded_calls(
    shipped: dict, out: Path, where: str, env: dict[str, str] | None = None
) -> None:
    """The clean venv's package, called on the run folder's recorded inputs (not the
    package's copy of them), returns the recorded outputs."""
    out.mkdir()
    parity = shipped["run_dir"] / "parity"
    script = PREDICT_RECORDED.format(package=shipped["name"])
    result = subprocess.run(
        [str(shipped["python"]), "-c", script, str(parity), str(out)],
        capture_output=True,
        text=True,
        cwd=shipped["root"],
        env=env,
    )
    assert result.returncode == 0, result.stderr
    calls = json.loads((parity / "parity.json").read_text())["calls"]
    results = json.loads((out / "results.json").read_text())
    assert len(results) == len(calls) > 0
    for call, got in zip(calls, results, strict=True):
        assert_same(decode(got, out), decode(call["result"], parity), where)


def test_installed_package_predicts_what_the_notebook_predicted(shipped: dict) -> None:
    assert_predicts_the_recorded_calls(shipped, shipped["root"] / "predictions", "prediction")


def test_installed_package_does_not_need_nbprod_or_jupyter(shipped: dict) -> None:
    probe = (
        "import importlib.util, sys; import {p}; "
        "bad = [m for m in ('nbprod', 'papermill', 'ipykernel', 'jupyter_client') "
        "if importlib.util.find_spec(m) or m in sys.modules]; print(bad)"
    ).format(p=shipped["name"])
    result = subprocess.run(
        [str(shipped["python"]), "-c", probe], capture_output=True, text=True, cwd=shipped["root"]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_package_cli_info_and_predict(shipped: dict) -> None:
    script = shipped["python"].parent / shipped["name"].replace("_", "-")
    info = subprocess.run([str(script), "info"], capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["run_id"] == shipped["run"]["id"]
    assert (
        data["artifacts"] == json.loads((shipped["run_dir"] / "run.json").read_text())["artifacts"]
    )

    parity = shipped["run_dir"] / "parity"
    call = json.loads((parity / "parity.json").read_text())["calls"][0]
    inputs = decode(call["args"][0], parity)
    if not isinstance(inputs, pd.DataFrame):
        pytest.fail(f"{shipped['name']}: the entry point's input is not a table")
    source = shipped["root"] / "input.csv"
    inputs.to_csv(source, index=False)
    target = shipped["root"] / "output.csv"
    result = subprocess.run(
        [str(script), "predict", str(source), "-o", str(target)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    written = pd.read_csv(target)
    expected = pd.Series(list(decode(call["result"], parity)))
    assert len(written) == len(expected)
    assert_same(written.iloc[:, 0].to_numpy(), expected.to_numpy(), "CLI prediction")


def test_package_retrains_without_the_notebook(shipped: dict) -> None:
    """`<pkg> train -o DIR` refits from the extracted code alone; with the notebooks'
    fixed seeds the retrained artifacts predict exactly as the notebook's did."""
    script = shipped["python"].parent / shipped["name"].replace("_", "-")
    artifacts = shipped["root"] / "retrained"
    result = subprocess.run(
        [str(script), "train", "-o", str(artifacts), "--workdir", str(shipped["notebook"].parent)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=shipped["root"],
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout[result.stdout.index("{") :])["metrics"]
    recorded = json.loads((shipped["run_dir"] / "run.json").read_text())["metrics"]
    assert metrics and set(recorded) <= set(metrics)
    for name, value in recorded.items():
        assert metrics[name] == pytest.approx(value, rel=1e-9)
    assert (artifacts / "manifest.json").is_file()
    env = {"PATH": "/usr/bin:/bin", f"{shipped['name'].upper()}_ARTIFACTS": str(artifacts)}
    out = shipped["root"] / "retrained_predictions"
    assert_predicts_the_recorded_calls(shipped, out, "retrained prediction", env)


def test_tampered_artifact_is_refused(shipped: dict) -> None:
    site = subprocess.run(
        [str(shipped["python"]), "-c", f"import {shipped['name']} as p; print(p.artifacts_dir())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tampered = shipped["root"] / "tampered"
    import shutil

    shutil.copytree(site, tampered)
    target = next(p for p in tampered.glob("*.skops"))
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    probe = f"import {shipped['name']} as p\np.load_artifacts({str(tampered)!r})\n"
    result = subprocess.run([str(shipped["python"]), "-c", probe], capture_output=True, text=True)
    assert result.returncode != 0
    assert "ArtifactIntegrityError" in result.stderr
    assert target.name.removesuffix(".skops") in result.stderr
    assert "refusing to load it" in result.stderr
    assert sys.executable  # the dev interpreter is untouched by the clean venv
