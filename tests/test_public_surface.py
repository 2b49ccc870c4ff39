"""What users and other packages import or name stays where the README says it is,
whatever the layout inside ``nbprod/`` becomes: the CLI and its commands, the pytest
plugin's entry point, ``nbprod.log_metric``, the widgets' ``Panel``, the server and
Lab extension hooks, and the entry-point groups other distributions register under."""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import subprocess
import sys

import pytest
from paths import ROOT

# (module, attribute) as the README and pyproject.toml name them.
DOCUMENTED = [
    ("nbprod", "log_metric"),
    ("nbprod", "__version__"),
    ("nbprod", "_jupyter_labextension_paths"),
    ("nbprod.cli", "main"),
    ("nbprod.widgets", "Panel"),
    ("nbprod.widgets", "current_notebook"),
    ("nbprod.jupyter", "_jupyter_server_extension_points"),
    ("nbprod.jupyter", "_load_jupyter_server_extension"),
    ("nbprod.pytest_plugin", "pytest_addoption"),
    ("nbprod.extract", "extract"),
    ("nbprod.runtime.artifacts", "Format"),  # what a `nbprod.artifact_formats` plugin implements
]


@pytest.mark.parametrize(("module", "name"), DOCUMENTED, ids=[".".join(d) for d in DOCUMENTED])
def test_each_documented_name_imports(module: str, name: str) -> None:
    assert callable(getattr(importlib.import_module(module), name)) or name == "__version__"


def test_the_cli_keeps_its_commands() -> None:
    import click

    from nbprod.cli import main

    assert sorted(main.commands) == [
        "check",
        "ci",
        "extract",
        "monitor",
        "publish",
        "run",
        "runs",
        "test",
    ]
    runs = main.commands["runs"]
    assert isinstance(runs, click.Group)
    assert sorted(runs.commands) == ["compare", "export", "list", "show"]


def test_entry_points_point_at_modules_that_exist() -> None:
    scripts = {p.name: p for p in metadata.entry_points(group="console_scripts")}
    assert scripts["nbprod"].load() is importlib.import_module("nbprod.cli").main
    plugins = {p.name: p for p in metadata.entry_points(group="pytest11")}
    assert plugins["nbprod.pytest_plugin"].load() is importlib.import_module("nbprod.pytest_plugin")


def test_the_entry_point_groups_keep_their_names() -> None:
    """Other distributions register executors, publish targets and artifact formats under
    these group names; nbprod must keep reading the same ones."""
    sources = {
        "nbprod.executors": ROOT / "nbprod" / "execution" / "executors.py",
        "nbprod.publish_targets": ROOT / "nbprod" / "publish" / "targets.py",
        "nbprod.artifact_formats": ROOT / "nbprod" / "runtime" / "_formats.py",
    }
    for group, source in sources.items():
        assert f'"{group}"' in source.read_text(), (group, source)


def test_python_dash_m_nbprod_is_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nbprod", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("nbprod, version ")
