"""What the tabs share: ``Messages`` (errors and notes shown in place, never a traceback
in the output area) and ``Follower`` (a daemon thread that polls a ``JobManager`` job
and updates the widgets). Its own module so that the panel and its tabs both import
it and not each other.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# ipywidgets has no type hints; the project's mypy settings (ignore_missing_imports) make
# it Any, so no `type: ignore` is needed (an unused one would be reported).
import ipywidgets as widgets

from nbprod.exceptions import CellError, NbprodError
from nbprod.jobs.manager import JobManager
from nbprod.jobs.model import Job
from nbprod.widgets import render

POLL = 0.5  # seconds between two looks at a running job


class Messages:
    """One HTML area where a tab reports what went wrong: nbprod's own errors as their
    message and fix, anything else (a bug) with its traceback folded away."""

    def __init__(self) -> None:
        self.widget = widgets.HTML()

    def clear(self) -> None:
        self.widget.value = ""

    def show(self, error: BaseException) -> None:
        if isinstance(error, NbprodError):
            data = error.to_json()
            if isinstance(error, CellError):
                data.update(cell=error.cell, role=error.role, line=error.line)
        else:
            data = {
                "message": f"{type(error).__name__}: {error}",
                "traceback": "".join(traceback.format_exception(error)),
            }
        self.widget.value = render.failure(data)

    @contextmanager
    def catching(self) -> Iterator[None]:
        """Run a step; an error ends it and is shown here instead of raised."""
        self.clear()
        try:
            yield
        except Exception as error:
            self.show(error)


class Follower:
    """A daemon thread that reads a job until it ends, handing each state to ``update``;
    ``stop()`` ends it early (the panel is closed or targets another notebook)."""

    def __init__(
        self,
        jobs: JobManager,
        job: Job,
        update: Callable[[Job], None],
        messages: Messages,
    ) -> None:
        self.jobs, self.job, self.update, self.messages = jobs, job, update, messages
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=self._follow, name=f"nbprod-panel-{job.id}", daemon=True
        )
        self.thread.start()

    def _follow(self) -> None:
        job = self.job
        while not self.stopped.is_set():
            try:
                job = self.jobs.get(job.id, job.notebook)
                self.update(job)
            except Exception as error:  # shown in the panel: a thread has no caller
                self.messages.show(error)
                return
            if job.done:
                return
            self.stopped.wait(POLL)

    def stop(self) -> None:
        self.stopped.set()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)
