"""The pytest plugin, run by pytest itself (``pytester``) on small notebooks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from nbbuild import SMALL, write_notebook
from paths import ROOT

pytest_plugins = ["pytester"]

PLUGIN = ("-p", "nbprod.pytest_plugin", "-p", "no:cacheprovider")


def _small(path: Path, **replaced: str) -> Path:
    """SMALL with the source of some roles replaced."""
    cells = [(role, replaced.get(role or "", source)) for role, source in SMALL]
    return write_notebook(path, *cells)


def test_a_sound_notebook_passes_check_execute_and_parity(pytester: pytest.Pytester) -> None:
    _small(pytester.path / "good.ipynb")
    result = pytester.runpytest_subprocess(*PLUGIN, "--nbprod", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*good.ipynb::check PASSED*",
            "*good.ipynb::execute PASSED*",
            "*good.ipynb::parity PASSED*",
        ]
    )


def test_a_problem_fails_check_and_skips_the_rest(pytester: pytest.Pytester) -> None:
    _small(pytester.path / "problem.ipynb", train="w = sum(xs) * a * undefined_name")
    result = pytester.runpytest_subprocess(*PLUGIN, "--nbprod", "-rs")
    result.assert_outcomes(failed=1, skipped=2)
    result.stdout.fnmatch_lines(
        ["*nbprod check found*", "*cell 3 (train)*undefined_name*", "*check failed*"]
    )


def test_a_failing_cell_fails_execute_with_its_cell(pytester: pytest.Pytester) -> None:
    _small(pytester.path / "failing.ipynb", train="w = sum(xs) * a\nraise ValueError('no data')")
    result = pytester.runpytest_subprocess(*PLUGIN, "--nbprod")
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*cell 3 (train), line 2: ValueError: no data*",
            "*--- cell 3 (train) ---*",
            "    w = sum(xs) * a",
            ">   raise ValueError('no data')",
            "*--- kernel traceback ---*",
            "E   ValueError: no data",
            "*executed notebook: *executed.ipynb*",
        ]
    )


def test_randomness_outside_the_artifacts_fails_parity(pytester: pytest.Pytester) -> None:
    _small(
        pytester.path / "noisy.ipynb",
        inference="import random\n\ndef predict(x):\n    return x * w + random.random()",
        test="assert predict(1) >= w",
    )
    result = pytester.runpytest_subprocess(*PLUGIN, "--nbprod")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*fails its tests*", "*test_predictions_match_the_notebook*"])


def test_a_killed_kernel_fails_execute(pytester: pytest.Pytester) -> None:
    _small(pytester.path / "killed.ipynb", train="import os\nw = sum(xs) * a\nos._exit(1)")
    result = pytester.runpytest_subprocess(*PLUGIN, "--nbprod")
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*cell 3 (train)*the kernel died*", "*os._exit(1)*"])


def test_notebooks_without_roles_run_only_with_nbprod_all(pytester: pytest.Pytester) -> None:
    write_notebook(
        pytester.path / "plain.ipynb",
        (None, "x = 1"),
        ("raises-exception", "1 / 0"),  # the tags nbclient (and nbmake, nbval) honour
        ("skip-execution", "raise SystemExit('never run')"),
        (None, "assert x == 1"),
    )
    write_notebook(pytester.path / "broken.ipynb", (None, "1 / 0"))
    without = pytester.runpytest_subprocess(*PLUGIN, "--nbprod")
    without.assert_outcomes()
    with_all = pytester.runpytest_subprocess(*PLUGIN, "--nbprod-all", "-v")
    with_all.assert_outcomes(passed=1, failed=1)
    with_all.stdout.fnmatch_lines(["*cell 1: ZeroDivisionError*"])


def test_without_nbprod_no_notebook_is_collected(pytester: pytest.Pytester) -> None:
    _small(pytester.path / "good.ipynb")
    result = pytester.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes()
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_k_selects_one_item_and_computes_what_it_needs(pytester: pytest.Pytester) -> None:
    _small(pytester.path / "good.ipynb")
    result = pytester.runpytest_subprocess(*PLUGIN, "--nbprod", "-k", "good.ipynb and parity")
    result.assert_outcomes(passed=1, deselected=2)


def test_x_stops_at_the_first_failing_item(pytester: pytest.Pytester) -> None:
    _small(pytester.path / "a_problem.ipynb", train="w = undefined_name")
    _small(pytester.path / "b_good.ipynb")
    result = pytester.runpytest_subprocess(*PLUGIN, "--nbprod", "-x")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*a_problem.ipynb::check (nbprod)*"])


def test_the_example_notebooks_pass_under_xdist(pytester: pytest.Pytester) -> None:
    for notebook in (ROOT / "example_notebooks").glob("*.ipynb"):
        shutil.copy(notebook, pytester.path / notebook.name)
    shutil.copytree(ROOT / "example_notebooks" / "data", pytester.path / "data")
    result = pytester.runpytest_subprocess(*PLUGIN, "--nbprod", "-n", "2")
    result.assert_outcomes(passed=9)
    # The items of a notebook went to one worker: each notebook ran once, in a forked kernel.
    runs = list((pytester.path / ".nbprod" / "runs").glob("*/run.json"))
    assert len(runs) == 3
    assert {json.loads(run.read_text())["kernel_start"] for run in runs} == {"fork"}


def test_lf_reruns_only_the_failed_item(pytester: pytest.Pytester) -> None:
    _small(pytester.path / "good.ipynb")
    _small(pytester.path / "failing.ipynb", data="xs = [1]\nraise RuntimeError('boom')")
    first = pytester.runpytest_subprocess("-p", "nbprod.pytest_plugin", "--nbprod")
    first.assert_outcomes(passed=4, failed=1, skipped=1)
    again = pytester.runpytest_subprocess("-p", "nbprod.pytest_plugin", "--nbprod", "--lf", "-v")
    again.assert_outcomes(failed=1)  # and nothing else ran: no passed, no skipped
    again.stdout.fnmatch_lines(["*failing.ipynb::execute FAILED*", "*RuntimeError: boom*"])


def test_nbprod_timeout_also_bounds_notebooks_without_roles(pytester: pytest.Pytester) -> None:
    # The limit is for the whole run, as for tagged notebooks: no cell alone reaches it.
    write_notebook(
        pytester.path / "slow.ipynb",
        (None, "import time\ntime.sleep(3)"),
        (None, "time.sleep(3)"),
        (None, "time.sleep(60)"),
    )
    result = pytester.runpytest_subprocess(*PLUGIN, "--nbprod-all", "--nbprod-timeout", "5")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*cell 2: the run went past its timeout of 5 s in this cell*",
            "    time.sleep(3)",
            "*executed notebook: *",
        ]
    )


def test_nbprod_all_runs_each_notebook_on_its_languages_kernel(pytester: pytest.Pytester) -> None:
    python = write_notebook(pytester.path / "conda_env.ipynb", (None, "import sys\nx = 1"))
    r = write_notebook(pytester.path / "analysis_r.ipynb", (None, "x <- c(1, 2)\nmean(x)"))
    for path, spec in [
        (python, {"name": "conda-env-research-py", "language": "python", "display_name": "P"}),
        (r, {"name": "ir", "language": "R", "display_name": "R"}),
    ]:
        node = json.loads(path.read_text())
        node["metadata"]["kernelspec"] = spec
        path.write_text(json.dumps(node))
    result = pytester.runpytest_subprocess(*PLUGIN, "--nbprod-all", "-v")
    # A Python notebook runs here whatever its kernelspec is called; R code is not run
    # as Python: its kernel is asked for, and it is not installed on this machine.
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*conda_env.ipynb::execute PASSED*", "*kernel `ir` (R) is not installed here*"]
    )


def test_malformed_notebooks_fail_their_check_and_the_session_goes_on(
    pytester: pytest.Pytester,
) -> None:
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": {"a": 1}}
    (pytester.path / "cells.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    deep = '{"nbformat": 4, "cells": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (pytester.path / "deep.ipynb").write_text(deep, encoding="utf-8")
    (pytester.path / "empty.ipynb").write_text("", encoding="utf-8")
    _small(pytester.path / "good.ipynb")
    result = pytester.runpytest_subprocess(*PLUGIN, "--nbprod", "-v")
    result.assert_outcomes(passed=3, failed=3, skipped=6)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # not an internal or collection error
    result.stdout.fnmatch_lines(
        [
            "*cells.ipynb::check FAILED*",
            "*deep.ipynb::check FAILED*",
            "*empty.ipynb::check FAILED*",
            "*good.ipynb::parity PASSED*",
            "*cells.ipynb is not a valid notebook: 'cells' must be a list, not an object",
            "*deep.ipynb is not a notebook nbprod can read: its JSON nests lists and objects*",
            "*empty.ipynb is empty",
        ]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
