"""The panel's four tabs. Each parses what the user typed and calls the library (the
functions the CLI and the REST routes call); the HTML comes from ``render``."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from nbprod.analysis.analyzer import analyze
from nbprod.exceptions import UsageError
from nbprod.execution.sweep import expand, parse_axis
from nbprod.jobs.model import Job
from nbprod.jobs.views import ranked_runs
from nbprod.notebook import load_notebook
from nbprod.runs.store import lower_is_better
from nbprod.widgets import render
from nbprod.widgets.follow import Follower, Messages

if TYPE_CHECKING:
    from nbprod.widgets.panel import Panel

_WIDE = widgets.Layout(width="100%")
_ONNX_TOOLTIP = (
    "Also ship the models converted to ONNX Runtime; each is used only where it predicts "
    "exactly what the notebook did (needs nbprod[onnx])"
)


def _notebook(panel: Panel) -> Path:
    if panel.notebook is None:
        raise UsageError("no notebook chosen", "type the notebook's path in the field above")
    return panel.notebook


class CheckTab:
    """Static analysis of the saved file: problems, warnings, stages and artifacts."""

    def __init__(self, panel: Panel) -> None:
        self.panel = panel
        self.button = widgets.Button(description="Check", icon="check", button_style="primary")
        self.button.on_click(lambda _: self.run())
        note = "reads the notebook as saved on disk: save it first (Ctrl+S / ⌘S)"
        self.saved = widgets.HTML(render.muted(note))
        self.result = widgets.HTML()
        self.messages = Messages()
        self.widget = widgets.VBox(
            [widgets.HBox([self.button, self.saved]), self.messages.widget, self.result]
        )
        self.analysis: dict[str, Any] | None = None

    def reset(self) -> None:
        self.analysis = None
        self.result.value = ""
        self.messages.clear()

    def run(self) -> None:
        self.result.value = ""
        with self.messages.catching():
            path = _notebook(self.panel)
            self.analysis = analyze(load_notebook(path)).to_json()
            saved = time.strftime("%H:%M:%S", time.localtime(path.stat().st_mtime))
            self.result.value = render.muted(f"the file as saved at {saved}") + render.check(
                self.analysis
            )
            self.panel.sweep.load()  # the parameters cell may have changed too


class _JobTab:
    """What the sweep and publish tabs share: one job at a time, followed from a thread."""

    panel: Panel
    messages: Messages
    cancel: widgets.Button
    job: Job | None
    follower: Follower | None

    def stop_job(self) -> None:
        with self.messages.catching():
            if self.job is not None:
                self.cancel.disabled = True
                self.panel.jobs.cancel(self.job.id, self.job.notebook)

    def stop(self) -> None:
        if self.follower is not None:
            self.follower.stop()


class SweepTab(_JobTab):
    """A form from the parameters cell (``V1,V2`` is an axis, as ``nbprod run -p``), the
    sweep's live progress, Start and Cancel. A notebook with check problems is swept
    too, told that its runs will not be extractable, and why."""

    def __init__(self, panel: Panel) -> None:
        self.panel = panel
        self.defaults: dict[str, str] = {}  # parameter → its literal in the notebook
        self.smoke_values: dict[str, str] = {}  # metadata.nbprod.smoke, as literals
        self.fields: dict[str, widgets.Text] = {}
        self.form = widgets.VBox()
        self.workers = widgets.BoundedIntText(
            value=0, min=0, max=1024, description="workers", tooltip="0: one per core"
        )
        self.smoke = widgets.Checkbox(description="smoke parameters", indent=False)
        self.smoke.observe(self._smoke_toggled, names="value")
        self.planned = widgets.HTML()
        self.not_extractable = widgets.HTML()  # why its runs will not be extractable, if so
        self.start = widgets.Button(description="Start", icon="play", button_style="primary")
        self.cancel = widgets.Button(
            description="Cancel", icon="stop", button_style="warning", disabled=True
        )
        self.start.on_click(lambda _: self.submit())
        self.cancel.on_click(lambda _: self.stop_job())
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="runs")
        self.status = widgets.HTML()
        self.messages = Messages()
        hint = render.muted(
            "Python literals; <code>V1,V2</code> makes an axis (as <code>nbprod run -p "
            "NAME=V1,V2</code>), <code>[1, 2]</code> is one list value; several axes make a grid"
        )
        self.widget = widgets.VBox(
            [
                widgets.HTML(hint),
                self.form,
                widgets.HBox([self.workers, self.smoke]),
                self.not_extractable,
                widgets.HBox([self.start, self.cancel, self.planned]),
                widgets.HBox([self.progress, self.status]),
                self.messages.widget,
            ]
        )
        self.job: Job | None = None
        self.follower: Follower | None = None
        self._done = -1  # runs finished when the runs table was last refreshed

    @property
    def parameter_names(self) -> list[str]:
        return list(self.defaults)

    def baseline(self, name: str) -> str:
        """What the field shows untouched: the notebook's value, or the smoke one."""
        if self.smoke.value and name in self.smoke_values:
            return self.smoke_values[name]
        return self.defaults[name]

    def load(self) -> None:
        """(Re)build the form from the saved notebook's parameters cell, keeping what was
        typed in fields that are still there."""
        typed = {n: f.value for n, f in self.fields.items() if f.value.strip() != self.baseline(n)}
        self.defaults, self.smoke_values = {}, {}
        self.not_extractable.value = ""
        with self.messages.catching():
            notebook = load_notebook(_notebook(self.panel))
            analysis = analyze(notebook).to_json()
            parameters = analysis["parameters"]
            # Any notebook runs, as papermill runs it: say up front what its runs will be.
            self.not_extractable.value = render.not_extractable_note(analysis["problems"])
            self.defaults = {name: repr(p["value"]) for name, p in parameters.items()}
            self.smoke_values = {
                name: repr(v) for name, v in notebook.settings.smoke.items() if name in parameters
            }
        self.smoke.disabled = not self.smoke_values
        self.fields = {}
        for name in self.defaults:
            field = widgets.Text(
                value=typed.get(name, self.baseline(name)),
                description=name,
                continuous_update=True,
                layout=_WIDE,
                style={"description_width": "initial"},
            )
            field.observe(lambda _: self._plan(), names="value")
            self.fields[name] = field
        if self.fields:
            self.form.children = list(self.fields.values())
        else:
            self.form.children = [
                widgets.HTML(render.muted("no parameters cell: Start runs the notebook once"))
            ]
        self._plan()

    def reset(self) -> None:
        """No job followed: Start enabled, the progress of another notebook's job gone."""
        self.stop()
        self.job, self.follower = None, None
        self.start.disabled, self.cancel.disabled = False, True
        self.progress.value, self.progress.bar_style = 0, ""
        self.status.value = ""
        self.messages.clear()

    def clear(self) -> None:
        self.defaults, self.smoke_values, self.fields = {}, {}, {}
        self.form.children = []
        self.planned.value = self.not_extractable.value = ""

    def axes(self) -> dict[str, list[Any]]:
        """The fields changed from their baseline, each parsed as ``nbprod run -p`` does."""
        chosen = {}
        for name, field in self.fields.items():
            text = field.value.strip()
            if text and text != self.baseline(name):
                chosen[name] = parse_axis(f"{name}={text}")[1]
        return chosen

    def _plan(self) -> None:
        try:
            count = len(expand(self.axes().items()))
        except UsageError as error:
            self.planned.value = render.failure(error.to_json())
            return
        self.planned.value = render.muted(f"→ {count} run{'s' * (count != 1)}")

    def _smoke_toggled(self, change: dict[str, Any]) -> None:
        for name, field in self.fields.items():
            if name in self.smoke_values:
                old = self.defaults[name] if change["new"] else self.smoke_values[name]
                if field.value.strip() == old:  # untouched: follows the checkbox
                    field.value = self.baseline(name)
        self._plan()

    def submit(self) -> None:
        with self.messages.catching():
            job = self.panel.jobs.sweep(
                _notebook(self.panel),
                self.axes(),
                workers=self.workers.value or None,
                smoke=bool(self.smoke.value),
            )
            self.follow(job)

    def follow(self, job: Job) -> None:
        self.stop()
        self.job, self._done = job, -1
        self.start.disabled, self.cancel.disabled = True, False
        self.progress.bar_style = ""
        self.show(job)
        self.follower = Follower(self.panel.jobs, job, self.show, self.messages)

    def show(self, job: Job) -> None:
        """One look at the job (from the follower's thread)."""
        self.job = job
        data = job.to_json()
        progress = data["progress"]
        if progress["done"] != self._done or job.done:
            self._done = progress["done"]
            self.panel.runs.refresh()  # runs appear as they end, before the status says so
        self.progress.max = max(1, progress["total"])
        self.progress.value = progress["done"]
        if job.status == "cancelled":  # its unfinished runs count as failed
            self.progress.bar_style = "warning"
        elif progress["failed"]:
            self.progress.bar_style = "danger"
        elif job.status == "succeeded":
            self.progress.bar_style = "success"
        self.status.value = render.sweep_status(data)
        if job.done:
            self.start.disabled, self.cancel.disabled = False, True


class RunsTab:
    """The notebook's runs, best first by the chosen metric (lower is better for losses
    and errors, as ``nbprod runs --sort``); failed runs with their error."""

    def __init__(self, panel: Panel) -> None:
        self.panel = panel
        self.sort = widgets.Dropdown(description="sort by", options=[], disabled=True)
        self.sort.observe(self._sorted, names="value")
        self.reload = widgets.Button(description="Refresh", icon="refresh")
        self.reload.on_click(lambda _: self.refresh())
        self.table = widgets.HTML()
        self.messages = Messages()
        self.widget = widgets.VBox(
            [widgets.HBox([self.sort, self.reload]), self.messages.widget, self.table]
        )
        self.rows: list[dict[str, Any]] = []
        self.metric: str | None = None
        self._lock = threading.RLock()  # the kernel's thread and a follower's both refresh
        self._loading = False

    def _sorted(self, change: dict[str, Any]) -> None:
        if not self._loading:
            self.refresh()

    def refresh(self) -> None:
        with self._lock, self.messages.catching():
            if self.panel.notebook is None:
                self.rows, self.metric = [], None
            else:
                self.rows, self.metric = ranked_runs(self.panel.notebook, self.sort.value or None)
            metrics = list(dict.fromkeys(m for row in self.rows for m in row["metrics"]))
            self._loading = True
            try:
                self.sort.options = [(f"{m} ({render.order(m)})", m) for m in metrics]
                self.sort.value = self.metric if self.metric in metrics else None
            finally:
                self._loading = False
            self.sort.disabled = not metrics
            self.table.value = render.runs(self.rows, self.metric, self.panel.sweep.parameter_names)
        self.panel.publish.choose_from(self.rows)


class PublishTab(_JobTab):
    """Publish one run (an id, latest, or the best by a metric) as a verified wheel."""

    def __init__(self, panel: Panel) -> None:
        self.panel = panel
        wide = {"layout": _WIDE, "style": {"description_width": "6em"}}
        self.run = widgets.Dropdown(description="run", options=[], **wide)
        self.version = widgets.Text(
            description="version", placeholder="blank: 0.DATE.TIME+nb<hash>.r<run>", **wide
        )
        self.dist = widgets.Text(
            description="dist",
            value="dist",
            placeholder="a folder; relative to the notebook's folder",
            **wide,
        )
        self.repository = widgets.Text(
            description="repository",
            placeholder="blank: the dist folder only; else an upload URL or a ~/.pypirc name",
            **wide,
        )
        self.onnx = widgets.Checkbox(
            description="Fast path (ONNX)", tooltip=_ONNX_TOOLTIP, indent=False
        )
        self.button = widgets.Button(description="Publish", icon="upload", button_style="primary")
        self.cancel = widgets.Button(
            description="Cancel", icon="stop", button_style="warning", disabled=True
        )
        self.button.on_click(lambda _: self.submit())
        self.cancel.on_click(lambda _: self.stop_job())
        self.none = widgets.HTML()
        self.steps = widgets.HTML()
        self.result = widgets.HTML()
        # The model card, rendered by the front end's own Markdown renderer.
        self.card = widgets.Output(layout=widgets.Layout(max_height="40em", overflow="auto"))
        self.model_card: str | None = None
        self.messages = Messages()
        self.widget = widgets.VBox(
            [
                self.run,
                self.version,
                self.dist,
                self.repository,
                self.onnx,
                widgets.HBox([self.button, self.cancel, self.none]),
                self.messages.widget,
                self.steps,
                self.result,
                self.card,
            ]
        )
        self.job: Job | None = None
        self.follower: Follower | None = None

    def reset(self) -> None:
        """No job followed and nothing shown of one."""
        self.stop()
        self.job, self.follower = None, None
        self.button.disabled, self.cancel.disabled = not self.run.options, True
        self.messages.clear()
        self.steps.value = self.result.value = ""
        self.card.outputs = ()
        self.model_card = None

    def choose_from(self, rows: list[dict[str, Any]]) -> None:
        """The runs one can publish: the best by each metric, the latest, each success."""
        succeeded = [r for r in rows if r["status"] == "succeeded"]
        options = []
        for metric in dict.fromkeys(m for r in succeeded for m in r["metrics"]):
            # The direction spelled out, as the runs table sorts: a loss or an error is
            # best at its lowest (`min:`), anything else at its highest.
            if lower_is_better(metric):
                options.append((f"best by {metric} (lowest)", f"min:{metric}"))
            else:
                options.append((f"best by {metric} (highest)", f"best:{metric}"))
        if succeeded:
            options.append(("latest run", "latest"))
        for row in succeeded:
            scores = ", ".join(f"{k}={render.value(v)}" for k, v in row["metrics"].items())
            options.append((f"run {row['id']}" + (f" ({scores})" if scores else ""), row["id"]))
        chosen = self.run.value
        values = [value for _, value in options]
        self.run.options = options
        self.run.value = chosen if chosen in values else (values[0] if values else None)
        idle = self.job is None or self.job.done
        self.button.disabled = not options or not idle
        self.none.value = "" if options else render.muted("no successful run to publish yet")

    def submit(self) -> None:
        with self.messages.catching():
            notebook = _notebook(self.panel)
            dist = Path(self.dist.value.strip() or "dist").expanduser()
            job = self.panel.jobs.publish(
                notebook,
                self.run.value or "",
                version=self.version.value.strip() or None,
                dist=dist if dist.is_absolute() else notebook.parent / dist,
                repository=self.repository.value.strip() or None,
                onnx=bool(self.onnx.value),
            )
            self.follow(job)

    def follow(self, job: Job) -> None:
        self.reset()
        self.job = job
        self.button.disabled, self.cancel.disabled = True, False
        self.show(job)
        self.follower = Follower(self.panel.jobs, job, self.show, self.messages)

    def show(self, job: Job) -> None:
        """One look at the job (from the follower's thread)."""
        self.job = job
        data = job.to_json()
        self.steps.value = render.steps(data)
        self.result.value = render.published(data)
        if job.status == "succeeded" and self.model_card is None and job.result:
            self.model_card = model_card(job.result)
            if self.model_card:
                from IPython.display import Markdown

                self.card.outputs = ()
                self.card.append_display_data(Markdown(self.model_card))
        if job.done:
            self.button.disabled, self.cancel.disabled = not self.run.options, True


def model_card(result: dict[str, Any]) -> str | None:
    """The published package's README (its model card), as the publish job returned it."""
    card = result.get("model_card")
    return str(card) if card else None


__all__ = ["CheckTab", "PublishTab", "RunsTab", "SweepTab", "model_card"]
