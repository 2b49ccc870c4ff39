"""The ipywidgets panel (``nbprod.widgets``), built in a plain Python process (widgets
need no front end to exist) and driven by clicking its buttons: real jobs, real
kernels, read back from the widgets' values."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nbbuild import write_notebook

from nbprod.runs.store import RunStore, store_path
from nbprod.widgets import Panel, current_notebook

# Runs in a second or two; `score` is best high, `rmse` best low (a=1: 6 and 4, a=3:
# 18 and 8), and a negative `a` fails the train cell (cell 3, line 2).
SCORED = (
    ("parameters", "a = 2\nlabel = 'x'\nsizes = [1, 2]"),
    ("data", "xs = [1, 2, 3]"),
    ("train", "if a < 0:\n    raise ValueError('a must not be negative')\nw = sum(xs) * a"),
    ("metrics", "score = float(w)\nrmse = abs(w - 10.0)"),
    ("inference", "def predict(x):\n    return x * w"),
    (None, "predict(5)"),
    ("test", "assert predict(1) == w"),
)
BROKEN = (
    (None, "df = [1]"),
    ("train", "x = 1\nmodel = len(df)"),
    ("inference", "def predict(v):\n    return model"),
)
# A notebook as papermill users write it: a parameters cell and nothing else of nbprod's.
PLAIN = (
    ("parameters", "n = 2"),
    (None, "total = n * 10"),
    (None, "import nbprod\nnbprod.log_metric('total', total)"),
)


def wait_for(condition: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what()}"
        time.sleep(0.2)


def ended(status: str) -> bool:
    return bool(re.search(r"<b>(succeeded|failed|cancelled)</b>", status))


def sweep(panel: Panel, timeout: float = 300, **values: str) -> None:
    """Fill the form, click Start, wait until the panel shows the job ended."""
    for name, text in values.items():
        panel.sweep.fields[name].value = text
    panel.sweep.start.click()
    assert panel.sweep.messages.widget.value == ""
    status = panel.sweep.status
    wait_for(lambda: ended(status.value), timeout, lambda: status.value)
    assert panel.wait(30)


def row_order(table: str, *run_ids: str) -> list[int]:
    return [table.index(run_id) for run_id in run_ids]


def text(cell: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()


def runs_table(table: str) -> dict[str, dict[str, str]]:
    """The runs table's rows by run id, each {column: text} (the sort mark dropped)."""
    headers = [text(h).rstrip(" ▲▼") for h in re.findall(r"<th[^>]*>(.*?)</th>", table)]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table, re.S):
        cells = [text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        if len(cells) == len(headers):
            rows[cells[1]] = dict(zip(headers, cells, strict=True))
    return rows


def test_the_panel_targets_the_given_notebook_else_the_one_the_front_end_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = write_notebook(tmp_path / "scored.ipynb", *SCORED)
    other = write_notebook(tmp_path / "other.ipynb", *SCORED)
    vscode = {"__vsc_ipynb_file__": str(notebook)}
    assert current_notebook(vscode, {}) == (notebook, "VS Code")
    assert current_notebook({}, {"JPY_SESSION_NAME": str(notebook)}) == (notebook, "Jupyter")
    monkeypatch.chdir(tmp_path)  # a kernel starts in its notebook's folder
    assert current_notebook({}, {"JPY_SESSION_NAME": "work/scored.ipynb"}) == (
        notebook,
        "Jupyter",
    )
    assert current_notebook({}, {"JPY_SESSION_NAME": "gone.ipynb"}) is None

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    panel = Panel()  # no IPython here, no session: the user types the path
    assert panel.notebook is None and panel.path.value == ""
    assert "type its path" in panel.target_note.value
    panel.path.value = "other.ipynb"
    assert panel.notebook == other
    assert "other.ipynb" in panel.target_note.value
    assert list(panel.sweep.fields) == ["a", "label", "sizes"]
    panel.close()

    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    panel = Panel()
    assert panel.notebook == notebook and panel.path.value == str(notebook)
    assert "(Jupyter)" in panel.target_note.value
    panel.close()

    given = Panel(tmp_path / "missing.ipynb")
    assert "missing.ipynb: no such file" in given.target_note.value
    given.check.button.click()
    assert "no such file" in given.check.messages.widget.value
    assert "Traceback" not in given.check.messages.widget.value
    given.close()


def test_check_shows_the_problems_of_the_saved_file_then_its_stages(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "nb.ipynb", *BROKEN)
    panel = Panel(notebook)
    assert "save it first" in panel.check.saved.value
    panel.check.button.click()
    shown = panel.check.result.value
    assert "1 problem</b>" in shown
    problems = shown.split('data-nbprod="problems"')[1].split("</table>")[0]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", problems)
    assert cells[:5] == [
        "2",
        "train",
        "2",
        "reads `df`, which only the untagged cell 1 defines",
        "tag cell 1 `data`",
    ]

    write_notebook(notebook, *SCORED)  # the user fixes the notebook and saves it
    panel.check.button.click()
    shown = panel.check.result.value
    assert "ok</b>: extractable as package <code>nb</code>" in shown
    assert 'data-nbprod="problems"' not in shown
    stages = shown.split('data-nbprod="stages"')[1].split("</table>")[0]
    assert "<b>train</b>" in stages and "<b>inference</b>" in stages
    artifacts = shown.split('data-nbprod="artifacts"')[1].split("</table>")[0]
    assert "<code>w</code>" in artifacts and "cell 3 (train), line 3" in artifacts
    assert list(panel.sweep.fields) == ["a", "label", "sizes"]  # the form follows the file
    panel.close()


def test_the_sweep_form_parses_values_as_nbprod_run_p(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "nb.ipynb", *SCORED, nbprod={"smoke": {"sizes": [1]}})
    panel = Panel(notebook)
    form = panel.sweep
    assert {n: f.value for n, f in form.fields.items()} == {
        "a": "2",
        "label": "'x'",
        "sizes": "[1, 2]",
    }
    assert form.axes() == {} and "1 run" in form.planned.value
    form.fields["a"].value = "1, 3"
    form.fields["label"].value = "x,y"
    form.fields["sizes"].value = "[3, 4]"
    assert form.axes() == {"a": [1, 3], "label": ["x", "y"], "sizes": [[3, 4]]}
    assert "→ 4 runs" in form.planned.value
    form.fields["sizes"].value = "[1, 2]"
    form.smoke.value = True  # untouched fields take the smoke values, and are not sent
    assert form.fields["sizes"].value == "[1]" and "sizes" not in form.axes()
    form.smoke.value = False
    assert form.fields["sizes"].value == "[1, 2]"

    panel.close()


def test_a_notebook_with_problems_sweeps_and_its_runs_say_why_they_cannot_be_extracted(
    tmp_path: Path,
) -> None:
    """Any notebook runs, as papermill runs it: the sweep starts, and the runs table marks
    the runs no package can be made of, with the check's reasons on hover."""
    broken = write_notebook(tmp_path / "broken.ipynb", *BROKEN)
    panel = Panel(broken)
    assert "no parameters cell: Start runs the notebook once" in panel.sweep.form.children[0].value
    note = panel.sweep.not_extractable.value
    assert 'data-nbprod="not-extractable-note"' in note
    assert "cell 2 (train), line 2: reads `df`, which only the untagged cell 1 defines" in note
    sweep(panel)
    assert "succeeded" in panel.sweep.status.value, panel.sweep.status.value
    panel.runs.refresh()
    table = panel.runs.table.value
    assert 'data-nbprod="not-extractable"' in table
    reasons = table.split('data-nbprod="not-extractable-reasons"')[1]
    assert "this run (extract and publish refuse it)" in reasons
    assert "<li>cell 2 (train), line 2: reads `df`" in html.unescape(reasons)
    panel.close()


@pytest.mark.slow
def test_a_notebook_with_only_a_parameters_cell_sweeps_its_form_and_says_why_not_extractable(
    tmp_path: Path,
) -> None:
    """A papermill notebook (a parameters cell, a metric logged, no other role): the form
    comes from its parameters cell, the note by Start says its runs will not be
    extractable, and each run of the sweep is marked so, the reasons under the table."""
    plain = write_notebook(tmp_path / "plain.ipynb", *PLAIN)
    panel = Panel(plain)
    assert list(panel.sweep.fields) == ["n"]
    note = html.unescape(panel.sweep.not_extractable.value)
    assert "recorded as <b>not extractable</b>" in note
    assert "no cell is tagged `inference`" in note
    panel.sweep.workers.value = 2
    sweep(panel, n="1, 3")
    assert "2/2 done, 0 failed, 0 running: <b>succeeded</b>" in panel.sweep.status.value
    table = panel.runs.table.value
    rows = runs_table(table)
    assert sorted((row["n"], row["total"]) for row in rows.values()) == [("1", "10"), ("3", "30")]
    assert all(row["status"] == "succeeded · not extractable" for row in rows.values()), rows
    reasons = html.unescape(table.split('data-nbprod="not-extractable-reasons"')[1])
    marked = re.search(r'data-runs="(.*?)"', reasons)
    assert marked is not None and sorted(marked.group(1).split()) == sorted(rows)
    assert "all 2 runs (extract and publish refuse them)" in reasons
    assert "no cell is tagged `inference`, so there is nothing to predict with" in reasons
    assert panel.publish.run.options  # the runs ran: publishing one is refused, saying why
    panel.publish.run.value = "latest"
    panel.publish.button.click()
    refused = html.unescape(panel.publish.messages.widget.value)
    assert "is not extractable" in refused and "no cell is tagged `inference`" in refused
    assert panel.publish.job is None
    panel.close()


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Panel]:
    """A panel whose sweep a=1,3 ran to its end."""
    notebook = write_notebook(tmp_path_factory.mktemp("widgets") / "scored.ipynb", *SCORED)
    panel = Panel(notebook)
    panel.sweep.workers.value = 2
    sweep(panel, a="1, 3")
    yield panel
    panel.close()


def first_sweep(panel: Panel) -> list[str]:
    """The run ids of the fixture's sweep: a=1, then a=3."""
    assert panel.notebook is not None
    store = RunStore(store_path(panel.notebook))
    sweep_ids = sorted({r.sweep_id for r in store.runs(panel.notebook) if r.sweep_id})
    runs = store.runs(panel.notebook, sweep_id=sweep_ids[0])
    return [r.id for r in sorted(runs, key=lambda r: r.parameters["a"])]


@pytest.mark.slow
def test_a_sweep_shows_its_progress_then_both_runs_with_their_metrics(swept: Panel) -> None:
    progress = swept.sweep.progress
    assert (progress.value, progress.max, progress.bar_style) == (2, 2, "success")
    assert "2/2 done, 0 failed, 0 running: <b>succeeded</b>" in swept.sweep.status.value
    assert not swept.sweep.start.disabled and swept.sweep.cancel.disabled
    low, high = first_sweep(swept)
    rows = runs_table(swept.runs.table.value)
    assert list(rows[low]) == ["status", "run", "a", "label", "sizes", "rmse", "score", "seconds"]
    for run_id, a, score, rmse in ((low, "1", "6", "4"), (high, "3", "18", "8")):
        row = rows[run_id]
        assert (row["status"], row["a"], row["label"], row["sizes"]) == (
            "succeeded",
            a,
            "'x'",
            "[1, 2]",
        )
        assert (row["score"], row["rmse"]) == (score, rmse)
        assert float(row["seconds"]) > 0


@pytest.mark.slow
def test_the_runs_sort_by_the_chosen_metric_lower_is_better_for_errors(swept: Panel) -> None:
    low, high = first_sweep(swept)
    options = dict(swept.runs.sort.options)
    assert options == {"score (higher is better)": "score", "rmse (lower is better)": "rmse"}
    swept.runs.sort.value = "rmse"
    table = swept.runs.table.value
    assert "rmse ▲" in table and row_order(table, low, high) == sorted(row_order(table, low, high))
    swept.runs.sort.value = "score"
    table = swept.runs.table.value
    assert "score ▼" in table
    first, second = row_order(table, low, high)
    assert second < first  # a=3 scored higher


@pytest.mark.slow
def test_a_failing_run_shows_its_error_and_its_executed_notebook(swept: Panel) -> None:
    sweep(swept, a="-1, 2")
    assert swept.sweep.progress.bar_style == "danger"
    assert "2/2 done, 1 failed" in swept.sweep.status.value
    assert "1 of 2 runs did not succeed" in swept.sweep.status.value
    errors = re.findall(r'<tr data-nbprod="run-error".*?</tr>', swept.runs.table.value, re.S)
    assert len(errors) == 1, swept.runs.table.value
    assert "cell 3 (train), line 2: " in errors[0]
    assert "a must not be negative" in errors[0]
    executed = re.search(r"executed notebook: <code>(.*?)</code>", errors[0])
    assert executed is not None and Path(executed.group(1)).is_file()


@pytest.mark.slow
def test_cancel_stops_a_sweep_that_a_new_panel_follows(tmp_path: Path) -> None:
    notebook = write_notebook(
        tmp_path / "slow.ipynb",
        ("parameters", "x = 1"),
        ("train", "import time\ntime.sleep(120)\nw = x"),
        ("inference", "def predict(v):\n    return v * w"),
    )
    first = Panel(notebook)
    first.sweep.start.click()
    assert first.sweep.start.disabled and not first.sweep.cancel.disabled
    running = first.sweep.status
    wait_for(lambda: "1 running" in running.value, 60, lambda: running.value)

    again = Panel(notebook)  # e.g. the cell run again: the job is found on disk
    assert again.sweep.job is not None and first.sweep.job is not None
    assert again.sweep.job.id == first.sweep.job.id
    again.sweep.cancel.click()
    for panel in (again, first):
        status = panel.sweep.status
        wait_for(lambda s=status: ended(s.value), 60, lambda s=status: s.value)
        assert "<b>cancelled</b>" in status.value
        assert panel.sweep.progress.bar_style == "warning"
        assert panel.wait(30)
    assert ">cancelled<" in again.runs.table.value
    again.close()
    first.close()


@pytest.mark.slow
def test_publish_places_a_verified_wheel_and_shows_the_model_card(
    swept: Panel, tmp_path: Path
) -> None:
    tab = swept.publish
    options = dict(tab.run.options)
    assert options["best by score (highest)"] == "best:score"
    assert options["best by rmse (lowest)"] == "min:rmse"
    assert options["latest run"] == "latest"
    assert tab.run.value == tab.run.options[0][1] and not tab.button.disabled
    assert tab.onnx.description == "Fast path (ONNX)" and tab.onnx.value is False
    assert "ONNX Runtime" in tab.onnx.tooltip and "nbprod[onnx]" in tab.onnx.tooltip
    high = first_sweep(swept)[1]
    assert high in options.values()
    tab.run.value = "best:score"
    tab.dist.value = str(tmp_path / "dist")
    tab.button.click()
    assert tab.messages.widget.value == ""
    assert tab.follower is not None and tab.job is not None
    assert tab.job.options["onnx"] is False
    wait_for(lambda: not tab.follower.running, 600, lambda: tab.steps.value)
    shown = tab.result.value
    assert 'data-nbprod="published"' in shown, shown + tab.steps.value
    wheel = re.search(r'<code data-nbprod="wheel">(.*?)</code>', shown)
    assert wheel is not None
    assert Path(wheel.group(1)).parent == tmp_path / "dist" and Path(wheel.group(1)).is_file()
    assert re.search(r'data-nbprod="tests">\d+ passed', shown), shown
    steps = tab.steps.value
    assert "✓ generate the package" in steps and "✓ place the files in" in steps
    assert tab.model_card is not None and "## Model card" in tab.model_card
    assert high in tab.model_card  # the best run by score was published
    shown = tab.card.outputs[0]["data"]["text/markdown"]
    assert shown == tab.model_card
    assert not tab.button.disabled and tab.cancel.disabled  # ready for the next one

    # The fast path ticked: the job is asked for it and its process says so in its first
    # step; cancelled there (what the conversion makes is extract's to test).
    tab.onnx.value = True
    tab.button.click()
    try:
        assert tab.messages.widget.value == ""
        assert tab.job is not None and tab.job.options["onnx"] is True
        wait_for(lambda: "generate the package" in tab.steps.value, 120, lambda: tab.steps.value)
        assert "generate the package, with ONNX models" in tab.steps.value
    finally:
        tab.cancel.click()
        follower = tab.follower
        wait_for(lambda: follower is None or not follower.running, 120, lambda: tab.steps.value)
    tab.onnx.value = False
