"""nbprod's JupyterLab extension in a real browser, against the real server extension.

A `jupyter lab` started here on a free loopback port serves a copy of
example_notebooks/; Debian's Chromium, driven by Playwright, goes through the story: set
a cell's role with the picker (badge, tag, undo), introduce a problem and land on its
cell from the panel, sweep two runs (and one that fails), publish the best run; sweep a
plain papermill notebook, whose runs are marked not extractable, saying why. Every
step leaves a screenshot in the pytest temporary folder (printed at the end); with
NBPROD_UPDATE_DOCS=1 the ones the README shows are also copied to docs/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nbbuild import write_notebook
from playwright.sync_api import Locator, Page, expect, sync_playwright
from tools import free_port

from nbprod.jobs.manager import JobManager

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CHROMIUM = Path("/usr/bin/chromium")
# Debian's Chromium, never a browser downloaded by `playwright install`.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "nbprod-browser-test"
NOTEBOOK = "wine_forest.ipynb"
# The notebook widget of the current tab (the page runs with expose_app_in_browser).
CURRENT = "window.jupyterapp.shell.currentWidget.content"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (scripts/setup.sh)"),
]


@dataclass
class Lab:
    url: str
    root: Path
    shots: Path

    def api(self, method: str, path: str) -> object:
        request = urllib.request.Request(
            f"{self.url}/{path}", method=method, headers={"Authorization": f"token {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")


def wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"jupyter lab exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"jupyter lab did not answer within 90 s:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server we started, by its pid (it shuts its kernels down on SIGTERM)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    assert (ROOT / "nbprod/labextension/package.json").is_file(), (
        "the JupyterLab extension is not built: run scripts/setup.sh"
    )
    home = tmp_path_factory.mktemp("lab")
    root = home / "notebooks"
    shutil.copytree(
        ROOT / "example_notebooks", root, ignore=shutil.ignore_patterns(".nbprod", "*.py")
    )
    # A fresh Lab: no news pop-up over the screenshots, no workspace from another run.
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.token={TOKEN}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = home / "lab.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    shots = home / "screenshots"
    shots.mkdir()
    try:
        wait_until_ready(url, process, log)
        lab = Lab(url=url, root=root, shots=shots)
        yield lab
        cancel_jobs(lab)
    finally:
        stop(process)
    print(f"\nscreenshots: {shots}")


def publish_jobs(lab: Lab) -> list[str]:
    """The ids of the notebook's publish jobs as the server lists them, newest first."""
    reply = lab.api("GET", f"nbprod/jobs?path={NOTEBOOK}")
    assert isinstance(reply, dict)
    return [job["id"] for job in reply["jobs"] if job["kind"] == "publish"]


def cancel_jobs(lab: Lab) -> None:
    """Jobs outlive the server by design: cancel any a failed test left running."""
    reply = lab.api("GET", f"nbprod/jobs?path={NOTEBOOK}")
    assert isinstance(reply, dict)
    for job in reply["jobs"]:
        if job["status"] in ("queued", "running"):
            lab.api("DELETE", f"nbprod/jobs/{job['id']}")


@pytest.fixture
def page(lab: Lab) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            yield context.new_page()
        finally:
            browser.close()


def cell(page: Page, number: int) -> Locator:
    """Cell `number` (1-based over all cells, as nbprod counts) of the open notebook."""
    return page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell").nth(number - 1)


def activate(page: Page, number: int) -> None:
    cell(page, number).locator(".jp-InputPrompt").click()
    page.wait_for_function(f"{CURRENT}.activeCellIndex === {number - 1}")


def tags(page: Page, number: int) -> object:
    return page.evaluate(f"{CURRENT}.widgets[{number - 1}].model.getMetadata('tags') ?? null")


def pick_role(page: Page, role: str) -> None:
    page.select_option("select[data-nbprod-role-select]", role)


def press_in_notebook(page: Page, key: str) -> None:
    """A command-mode key, once the notebook has the focus back from the picker."""
    page.wait_for_function(
        "document.activeElement && document.activeElement.closest('.jp-Notebook') !== null"
    )
    page.keyboard.press(key)


def shoot(page: Page, lab: Lab, name: str, *, docs: bool = False) -> None:
    page.wait_for_timeout(300)  # let the last render settle
    page.screenshot(path=lab.shots / name)
    # docs/ holds the README's screenshots: refreshed on request, not on every test run
    if docs and os.environ.get("NBPROD_UPDATE_DOCS"):
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(lab.shots / name, DOCS / name)


def show_sidebar(page: Page, widget_id: str) -> None:
    tab = page.locator(f'.jp-SideBar.jp-mod-right [data-id="{widget_id}"]')
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()


def widen_right_sidebar(page: Page, pixels: int) -> None:
    box = page.locator("#jp-right-stack").bounding_box()
    assert box is not None
    x, y = box["x"] - 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - pixels, y, steps=5)
    page.mouse.up()


def open_notebook(
    page: Page, lab: Lab, notebook: str = NOTEBOOK, cells: int = 13, check: str = "ok"
) -> None:
    """`notebook` (of `cells` cells) in a fresh Lab layout, file browser closed, nbprod
    panel open, once its check says `check` (ok or problems)."""
    page.goto(f"{lab.url}/lab/tree/{notebook}?reset&token={TOKEN}")
    expect(page.locator("select[data-nbprod-role-select]")).to_be_visible(timeout=60_000)
    expect(cell(page, cells)).to_be_attached()
    page.evaluate("window.jupyterapp.commands.execute('application:toggle-left-area')")
    show_sidebar(page, "nbprod-panel")
    widen_right_sidebar(page, 200)
    expect(page.locator(f'#nbprod-panel [data-nbprod-check-status="{check}"]')).to_be_visible(
        timeout=30_000
    )


def test_roles_check_sweep_and_publish_in_jupyterlab(lab: Lab, page: Page) -> None:
    open_notebook(page, lab)
    # The tagged cells of the example carry their badges.
    expect(cell(page, 3).locator("[data-nbprod-badge]")).to_have_text("parameters")
    expect(cell(page, 7).locator("[data-nbprod-badge]")).to_have_text("train")

    # 1. The role picker writes the tag JupyterLab's tag editor shows; Z undoes it.
    activate(page, 12)
    assert tags(page, 12) is None
    show_sidebar(page, "jp-property-inspector")
    page.locator(".jp-PropertyInspector-content").get_by_text("Common Tools").click()
    pick_role(page, "metrics")
    expect(cell(page, 12).locator("[data-nbprod-badge]")).to_have_text("metrics")
    assert tags(page, 12) == ["metrics"]
    expect(page.locator(".jp-CellTags-Applied")).to_have_text(["metrics"])
    expect(page.locator("select[data-nbprod-role-select]")).to_have_value("metrics")
    shoot(page, lab, "lab-role-picker.png", docs=True)
    press_in_notebook(page, "z")
    expect(cell(page, 12).locator("[data-nbprod-badge]")).to_have_count(0)
    assert tags(page, 12) in (None, [])  # JupyterLab's tag editor may leave an empty list
    expect(page.locator("select[data-nbprod-role-select]")).to_have_value("-")

    # 2. The panel checks the notebook as edited: untag the data cell, and the train
    # cell that reads `df` is reported; clicking the problem lands on that cell.
    show_sidebar(page, "nbprod-panel")
    panel = page.locator("#nbprod-panel")
    expect(panel.locator('[data-nbprod-artifact="model"]')).to_be_visible()
    expect(panel.locator('[data-nbprod-entry-point="predict"]')).to_be_visible()
    activate(page, 4)
    pick_role(page, "-")
    problem = panel.locator('[data-nbprod-problem="error"][data-nbprod-name="df"]').first
    expect(problem).to_be_visible(timeout=30_000)
    expect(problem).to_contain_text("cell 7 (train)")
    expect(problem).to_contain_text("tag cell 4 `data`")
    shoot(page, lab, "lab-panel.png", docs=True)
    activate(page, 1)
    problem.click()
    page.wait_for_function(f"{CURRENT}.activeCellIndex === 6")
    expect(cell(page, 7)).to_be_in_viewport()
    shoot(page, lab, "lab-problem-clicked.png")
    press_in_notebook(page, "z")  # the data cell gets its tag back
    expect(cell(page, 4).locator("[data-nbprod-badge]")).to_have_text("data")
    expect(panel.locator('[data-nbprod-check-status="ok"]')).to_be_visible(timeout=30_000)

    # 3. A sweep of two runs from the form built from the parameters cell.
    panel.locator('[data-nbprod-param="n_estimators"]').fill("5, 10")
    start = panel.locator('[data-nbprod-action="start-sweep"]')
    expect(start).to_have_text("Start sweep (2 runs)")
    start.click()
    sweep = panel.locator('[data-nbprod-job="sweep"]')
    expect(sweep).to_be_visible(timeout=30_000)
    expect(sweep).to_have_attribute("data-nbprod-total", "2")
    shoot(page, lab, "lab-sweep-running.png")
    expect(sweep).to_have_attribute("data-nbprod-job-status", "succeeded", timeout=240_000)
    runs = panel.locator("tr[data-nbprod-run]")
    expect(runs).to_have_count(2, timeout=30_000)
    expect(panel.locator('tr[data-nbprod-run-status="succeeded"]')).to_have_count(2)
    panel.locator("select[data-nbprod-sort]").select_option("accuracy")
    expect(panel.locator("th", has_text="accuracy ▼")).to_be_visible()
    panel.locator('[data-nbprod-section="runs"]').scroll_into_view_if_needed()
    shoot(page, lab, "lab-sweep.png", docs=True)

    # 4. Publish the best run by accuracy into dist/: steps, then the wheel and its tests.
    expect(panel.locator("select[data-nbprod-publish-run]")).to_have_value("best:accuracy")
    onnx = panel.locator("input[data-nbprod-publish-onnx]")
    expect(onnx).not_to_be_checked()
    fast_path = panel.locator("label", has=page.locator("input[data-nbprod-publish-onnx]"))
    expect(fast_path).to_have_text("Fast path (ONNX)")
    expect(fast_path).to_have_attribute("title", re.compile(r"ONNX Runtime.*nbprod\[onnx\]"))
    panel.locator('[data-nbprod-action="publish"]').click()
    publish = panel.locator('[data-nbprod-job="publish"]')
    expect(publish.locator("[data-nbprod-step]").first).to_be_visible(timeout=60_000)
    first = publish_jobs(lab)[0]
    assert JobManager(lab.root).get(first).options["onnx"] is False
    publish.scroll_into_view_if_needed()
    shoot(page, lab, "lab-publish-running.png")
    expect(publish).to_have_attribute("data-nbprod-job-status", "succeeded", timeout=600_000)
    wheel = publish.locator("[data-nbprod-wheel]").inner_text()
    assert re.fullmatch(r"dist/wine_forest-[^/]+\.whl", wheel), wheel
    assert (lab.root / wheel).is_file()
    expect(publish.locator("[data-nbprod-tests]")).to_contain_text("passed")
    publish.scroll_into_view_if_needed()
    shoot(page, lab, "lab-publish.png", docs=True)

    # 5. The fast path ticked: the server's job is asked for it, and its process says so in
    # its first step; cancelled there (what the conversion makes is extract's to test).
    onnx.check()
    panel.locator('[data-nbprod-action="publish"]').click()
    deadline = time.monotonic() + 30
    while (fast := publish_jobs(lab)[0]) == first:
        assert time.monotonic() < deadline, "no second publish job"
        time.sleep(0.2)
    try:
        assert JobManager(lab.root).get(fast).options["onnx"] is True
        expect(publish.locator("[data-nbprod-step]").first).to_have_text(
            re.compile(r"generate the package, with ONNX models$"), timeout=60_000
        )
        publish.scroll_into_view_if_needed()
        shoot(page, lab, "lab-publish-onnx.png")
    finally:
        lab.api("DELETE", f"nbprod/jobs/{fast}")
    expect(publish).to_have_attribute(
        "data-nbprod-job-status", re.compile("cancelled|failed"), timeout=60_000
    )


def test_a_failed_run_shows_its_error_and_opens_its_executed_notebook(lab: Lab, page: Page) -> None:
    open_notebook(page, lab)
    panel = page.locator("#nbprod-panel")
    panel.locator('[data-nbprod-param="max_depth"]').fill("-1")
    panel.locator('[data-nbprod-action="start-sweep"]').click()
    sweep = panel.locator('[data-nbprod-job="sweep"]')
    expect(sweep).to_have_attribute("data-nbprod-job-status", "failed", timeout=240_000)
    failed = panel.locator('tr[data-nbprod-run-status="failed"]')
    expect(failed).to_have_count(1, timeout=30_000)
    run_id = failed.get_attribute("data-nbprod-run")
    error = panel.locator(f'[data-nbprod-run-error="{run_id}"]')
    expect(error).to_contain_text("max_depth")
    error.scroll_into_view_if_needed()
    shoot(page, lab, "lab-run-failed.png")
    error.locator('[data-nbprod-action="open-executed"]').click()
    page.wait_for_function(
        f"window.jupyterapp.shell.currentWidget.context.path.includes({json.dumps(run_id)})"
    )
    # The executed notebook shows where the run stopped, read-only, next to the notebook.
    executed = page.locator(".jp-NotebookPanel:visible")
    expect(
        executed.locator(".jp-OutputArea-output", has_text="InvalidParameterError")
    ).to_have_count(1, timeout=30_000)
    expect(page.locator("#nbprod-panel [data-nbprod-path]")).to_have_attribute(
        "data-nbprod-path", NOTEBOOK
    )
    shoot(page, lab, "lab-executed-notebook.png")


def test_a_plain_notebook_sweeps_and_its_runs_say_why_they_are_not_extractable(
    lab: Lab, page: Page
) -> None:
    """A notebook as papermill users write it (a parameters cell, a metric logged, no
    other role) is offered a sweep; its runs are recorded, marked not extractable with the
    check's reasons, and publishing one is refused with them. One without a parameters
    cell is offered one run."""
    write_notebook(
        lab.root / "plain.ipynb",
        ("parameters", "n = 2"),
        (None, "total = n * 10"),
        (None, "import nbprod\nnbprod.log_metric('total', total)"),
    )
    open_notebook(page, lab, "plain.ipynb", cells=3, check="problems")
    panel = page.locator("#nbprod-panel")
    note = panel.locator("[data-nbprod-not-extractable-note]")
    expect(note).to_contain_text("The runs will be recorded as not extractable")
    expect(note).to_contain_text("extract and publish refuse them")
    expect(note).to_contain_text("cell 1 (parameters): no cell is tagged `inference`")

    panel.locator('[data-nbprod-param="n"]').fill("1, 3")
    start = panel.locator('[data-nbprod-action="start-sweep"]')
    expect(start).to_have_text("Start sweep (2 runs)")
    start.click()
    sweep = panel.locator('[data-nbprod-job="sweep"]')
    expect(sweep).to_have_attribute("data-nbprod-job-status", "succeeded", timeout=240_000)
    runs = panel.locator('tr[data-nbprod-run-status="succeeded"]')
    expect(runs).to_have_count(2, timeout=30_000)
    expect(panel.locator('[data-nbprod-metric="total"]')).to_have_text(["30", "10"])
    marks = panel.locator("tr[data-nbprod-run] [data-nbprod-not-extractable]")
    expect(marks).to_have_text(["not extractable", "not extractable"])
    for number in range(2):
        run_id = runs.nth(number).get_attribute("data-nbprod-run")
        mark = marks.nth(number)
        assert mark.get_attribute("data-nbprod-not-extractable") == run_id
        assert "no cell is tagged `inference`" in (mark.get_attribute("title") or "")
    reasons = panel.locator("[data-nbprod-not-extractable-reasons]")
    expect(reasons).to_contain_text("not extractable: all 2 runs (extract and publish refuse them)")
    expect(reasons.locator("li").first).to_contain_text(
        "cell 1 (parameters): no cell is tagged `inference`, so there is nothing to predict with"
    )
    panel.locator('[data-nbprod-section="runs"]').scroll_into_view_if_needed()
    shoot(page, lab, "lab-not-extractable.png")

    # Publishing one of them is refused up front (422), with the reasons.
    expect(panel.locator("select[data-nbprod-publish-run]")).to_have_value("best:total")
    panel.locator('[data-nbprod-action="publish"]').click()
    refused = panel.locator('[data-nbprod-failure="publish"]')
    expect(refused).to_contain_text("is not extractable: the notebook had 1 problem when it ran")
    expect(refused).to_contain_text("no cell is tagged `inference`")
    expect(refused).to_contain_text("fix: fix them")
    expect(panel.locator('[data-nbprod-job="publish"]')).to_have_count(0)
    refused.scroll_into_view_if_needed()
    shoot(page, lab, "lab-not-extractable-publish.png")

    # Without a parameters cell the notebook is still offered a run, as the widgets do.
    write_notebook(lab.root / "once.ipynb", (None, "total = 3"), (None, "print(total)"))
    open_notebook(page, lab, "once.ipynb", cells=2, check="problems")
    expect(panel.locator("[data-nbprod-no-parameters]")).to_contain_text(
        "no parameters cell (tag one cell parameters to sweep its values): "
        "Start runs the notebook once"
    )
    expect(panel.locator('[data-nbprod-action="start-sweep"]')).to_have_text("Start (1 run)")
    expect(panel.locator("[data-nbprod-not-extractable-note]")).to_contain_text(
        "cell 1: no cell has an nbprod role"
    )
