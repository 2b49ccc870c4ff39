"""Artifacts in the skops format (what no other format handles): files whose hashes are
checked before an explicit trusted-type load. Other formats: test_formats.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier
from skops.io.exceptions import UntrustedTypesFoundException

from nbprod.runtime.artifacts import ArtifactIntegrityError, load_artifacts, save_artifacts


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LogisticRegression().fit(x, [0, 0, 1, 1])
    encoder = OneHotEncoder().fit([["a"], ["b"]])
    save_artifacts(
        {"model": model, "encoder": encoder, "columns": ["x"], "threshold": 0.4}, tmp_path
    )
    return tmp_path


def test_saved_artifacts_load_back(saved: Path) -> None:
    loaded = load_artifacts(saved)
    assert loaded["columns"] == ["x"] and loaded["threshold"] == 0.4
    assert loaded["model"].predict([[3.0]]).tolist() == [1]
    assert loaded["encoder"].transform([["b"]]).toarray().tolist() == [[0.0, 1.0]]


def test_manifest_records_hash_and_trusted_types(saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())["artifacts"]
    assert len(manifest["model"]["sha256"]) == 64
    assert manifest["model"]["type"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert manifest["encoder"]["trusted"] == []  # scikit-learn's own types: trusted by skops
    assert manifest["columns"]["format"] == "json" and "trusted" not in manifest["columns"]


def test_a_changed_file_is_refused(saved: Path) -> None:
    path = saved / "model.skops"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match=r"'model'.*refusing to load it"):
        load_artifacts(saved)


def test_a_missing_file_or_manifest_is_refused(saved: Path) -> None:
    (saved / "encoder.skops").unlink()
    with pytest.raises(ArtifactIntegrityError, match=r"encoder\.skops is missing"):
        load_artifacts(saved, ["encoder"])
    (saved / "manifest.json").unlink()
    with pytest.raises(ArtifactIntegrityError, match=r"manifest\.json is missing"):
        load_artifacts(saved)


def test_types_outside_the_recorded_list_are_not_loaded(tmp_path: Path) -> None:
    """A tree's `Tree` object is not trusted by skops by default: only the manifest's
    explicit list lets it load, so an emptied list must make loading fail."""
    tree = DecisionTreeClassifier(random_state=0).fit([[0.0], [1.0]], [0, 1])
    manifest = save_artifacts({"tree": tree}, tmp_path)
    assert manifest["artifacts"]["tree"]["trusted"] == ["sklearn.tree._tree.Tree"]
    assert load_artifacts(tmp_path)["tree"].predict([[1.0]]).tolist() == [1]
    manifest["artifacts"]["tree"]["trusted"] = []
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UntrustedTypesFoundException):
        load_artifacts(tmp_path)


def test_an_inherited_distribution_map_is_read_again_for_a_module_installed_since(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kernel forked from the fork server inherits the server's map of installed
    distributions. A module loaded from site-packages that the map lacks was installed
    since (``%pip install``): the map is read again, once. The notebook's own modules are
    in no distribution and cost no new read."""
    import os

    import nbbuild  # noqa: F401  (a module of these tests: in no distribution)
    import sklearn  # noqa: F401  (in site-packages)

    from nbprod.runtime import artifacts

    monkeypatch.setattr(artifacts, "_DISTRIBUTIONS", {"numpy": ["numpy"]})
    read_by = [-1]  # the pids that read the map: another process
    monkeypatch.setattr(artifacts, "_READ_BY", read_by)
    assert artifacts.distributions("nbbuild") == []
    assert read_by == [-1]
    assert artifacts.distributions("sklearn") == ["scikit-learn"]
    assert read_by == [-1, os.getpid()]
    assert artifacts.distributions("nbbuild") == []
    assert read_by == [-1, os.getpid()]
