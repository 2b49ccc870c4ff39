"""The panel: which notebook it targets, its four tabs, and what the tabs share (the job
manager; the messages and job followers of ``follow``).

Nothing here blocks the kernel for more than a moment: checking is static analysis of
the saved file, and sweeps and publishes are ``JobManager`` jobs (CLI processes) that a
daemon thread polls, updating the widgets from there, which ipykernel allows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# ipywidgets has no type hints; the project's mypy settings (ignore_missing_imports) make
# it Any, so no `type: ignore` is needed (an unused one would be reported).
import ipywidgets as widgets

from nbprod.jobs.manager import JobManager
from nbprod.widgets import render


def current_notebook(
    namespace: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Path, str] | None:
    """The notebook this kernel runs, and who said so, when the front end tells:
    VS Code sets ``__vsc_ipynb_file__`` in the user namespace; jupyter-server starts
    kernels with ``JPY_SESSION_NAME`` (an absolute path, or one relative to its root)."""
    if namespace is None:
        from IPython import get_ipython

        shell = get_ipython()
        namespace = shell.user_ns if shell is not None else {}
    environ = os.environ if environ is None else environ
    vscode = namespace.get("__vsc_ipynb_file__")
    if isinstance(vscode, str) and Path(vscode).is_file():
        return Path(vscode).resolve(), "VS Code"
    session = environ.get("JPY_SESSION_NAME", "")
    if session.endswith(".ipynb"):
        # The kernel starts in the notebook's folder; a root-relative path is matched
        # from there by name.
        for candidate in (Path(session), Path.cwd() / session, Path.cwd() / Path(session).name):
            if candidate.is_absolute() and candidate.is_file():
                return candidate.resolve(), "Jupyter"
    return None


class Panel:
    """``Panel()`` in a notebook: check, sweep, runs and publish for ``notebook`` (a path;
    default: the notebook this kernel runs, when the front end says which).

    Displays itself as the last expression of a cell; ``panel.widget`` is the ipywidgets
    box, to place it in a layout of your own.
    """

    def __init__(self, notebook: str | os.PathLike[str] | None = None) -> None:
        from nbprod.widgets.tabs import CheckTab, PublishTab, RunsTab, SweepTab

        self.jobs = JobManager()
        self.notebook: Path | None = None
        self.path = widgets.Text(
            description="notebook",
            placeholder="path/to/notebook.ipynb, then Enter",
            continuous_update=False,
            layout=widgets.Layout(width="100%"),
        )
        self.target_note = widgets.HTML()
        self.runs = RunsTab(self)
        self.check = CheckTab(self)
        self.sweep = SweepTab(self)
        self.publish = PublishTab(self)
        self.tabs = widgets.Tab(
            children=[t.widget for t in (self.check, self.sweep, self.runs, self.publish)],
            titles=("Check", "Sweep", "Runs", "Publish"),
        )
        self.widget = widgets.VBox([self.path, self.target_note, self.tabs])
        found: tuple[Path, str] | None
        if notebook is not None:
            found = Path(notebook).expanduser().resolve(), "given"
        else:
            found = current_notebook()
        if found is None:
            self.target_note.value = render.muted(
                "which notebook? The front end did not say: type its path above."
            )
        else:
            self.target(*found)
        self.path.observe(self._typed, names="value")

    def target(self, notebook: Path, how: str = "typed") -> None:
        """Work on ``notebook`` from now on: reload the form, the runs and the jobs."""
        self.stop_following()
        self.notebook = notebook
        self.path.value = str(notebook)
        self.target_note.value = render.muted(
            f"targets {render.code(notebook)} ({render.esc(how)}); "
            "check and runs read the file as saved on disk"
        )
        if not notebook.is_file():
            self.target_note.value += render.failure({"message": f"{notebook}: no such file"})
        self.check.reset()
        self.sweep.reset()
        self.publish.reset()
        if not notebook.is_file():
            self.sweep.clear()
            self.runs.refresh()
            return
        self.sweep.load()
        self.runs.refresh()
        # The newest unfinished job of each kind (started by an earlier panel, the Lab
        # panel) is followed again.
        with self.sweep.messages.catching():
            for kind, tab in (("sweep", self.sweep), ("publish", self.publish)):
                running = [j for j in self.jobs.list(notebook) if j.kind == kind and not j.done]
                if running:
                    tab.follow(running[0])

    def _typed(self, change: dict[str, Any]) -> None:
        text = str(change["new"]).strip()
        if text and (self.notebook is None or Path(text).expanduser().resolve() != self.notebook):
            self.target(Path(text).expanduser().resolve())

    def stop_following(self) -> None:
        self.sweep.stop()
        self.publish.stop()

    def close(self) -> None:
        """Stop following jobs (they run on) and close the widgets."""
        self.stop_following()
        _close(self.widget)

    def wait(self, timeout: float = 600) -> bool:
        """Block until the jobs this panel follows have ended and are shown (scripts,
        tests); True if they did within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        for tab in (self.sweep, self.publish):
            if tab.follower is not None:
                tab.follower.join(max(0.0, deadline - time.monotonic()))
        return not any(
            tab.follower is not None and tab.follower.running for tab in (self.sweep, self.publish)
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _close(widget: Any) -> None:
    for child in getattr(widget, "children", ()):
        _close(child)
    widget.close()
