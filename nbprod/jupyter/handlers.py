"""The REST routes under ``<base_url>nbprod/``: parse the request, confine its paths to
the server's root, call nbprod's library in a worker thread, answer JSON.

Every method is ``@web.authenticated``; POST and DELETE also pass jupyter_server's XSRF
check (in ``APIHandler.prepare``). nbprod's errors become statuses in ``status_of``
and replies ``{"message", "hint", "type"}``, with paths relative to the root.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from http.client import responses
from pathlib import Path
from typing import Any, TypeVar

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import IOLoop

from nbprod.analysis.analyzer import analyze
from nbprod.exceptions import (
    CellError,
    JobNotFound,
    NbprodError,
    OutputExists,
    RunNotFound,
    UsageError,
)
from nbprod.jobs.manager import JobManager
from nbprod.jobs.model import KINDS
from nbprod.jobs.views import ranked_runs, run_json, scrub_paths, shown_path
from nbprod.jupyter.paths import ApiError, confine
from nbprod.notebook import load_notebook, notebook_from_json
from nbprod.runs.records import run_dir
from nbprod.runs.store import existing_store

Result = TypeVar("Result")
JOBS = "nbprod_jobs"  # the JobManager in the web app's settings


def status_of(error: NbprodError) -> int:
    """The one mapping from nbprod's errors to HTTP statuses."""
    if isinstance(error, RunNotFound | JobNotFound):
        return 404
    if isinstance(error, OutputExists):
        return 409
    if isinstance(error, UsageError):  # NotebookFileError included: not a notebook
        return 400
    return 422  # understood, but the notebook or run does not allow it (CheckFailed, ...)


class NbprodHandler(APIHandler):
    """What every nbprod route shares: the root, the body, library calls off the loop."""

    @property
    def root(self) -> Path:
        return Path(self.settings["server_root_dir"]).resolve()

    @property
    def jobs(self) -> JobManager:
        manager: JobManager = self.settings[JOBS]
        return manager

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"null")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not valid JSON") from None
        except RecursionError:  # Python's JSON decoder recurses once per level
            raise ApiError(400, "the request body nests lists and objects too deeply") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return data

    def field(
        self,
        data: dict[str, Any],
        name: str,
        kind: type | tuple[type, ...],
        what: str,
        default: Any = ...,
    ) -> Any:
        """``data[name]``, checked to be ``kind`` (described as ``what``); missing is
        refused unless a default is given."""
        if name not in data:
            if default is ...:
                raise ApiError(400, f"field {name!r} is missing: it must be {what}")
            return default
        value = data[name]
        # JSON true/false are ints to Python; a count is never a bool.
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise ApiError(400, f"field {name!r} must be {what}")
        if not isinstance(value, kind):
            raise ApiError(400, f"field {name!r} must be {what}")
        return value

    def argument(self, name: str) -> str:
        value = self.get_query_argument(name, None)
        if not value:
            raise ApiError(400, f"query argument {name!r} is missing")
        return value

    def notebook(self, relative: object, *, must_exist: bool = True) -> Path:
        """The confined notebook path; 404 when there is no such file."""
        path = confine(self.root, relative)
        if path.is_dir():
            raise ApiError(400, f"{relative!r} is a folder, not a notebook")
        if must_exist and not path.is_file():
            raise ApiError(404, f"no notebook {relative!r}", "save the notebook first")
        if not path.parent.is_dir():
            raise ApiError(404, f"no folder for {relative!r}")
        return path

    async def call(self, function: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
        """Run a library call in a worker thread; its NbprodError becomes an HTTP error."""
        try:
            return await IOLoop.current().run_in_executor(None, partial(function, *args, **kwargs))
        except NbprodError as error:
            message = error.message
            if isinstance(error, CellError):
                message = f"{error.location}: {message}"
            raise ApiError(status_of(error), message, error.hint, type(error).__name__) from error

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, ApiError):
            reply = {
                "message": self._scrub(error.message),
                "hint": self._scrub(error.hint),
                "type": error.kind,
            }
        elif isinstance(error, web.HTTPError):
            text = error.log_message % error.args if error.log_message else None
            reply = {"message": text or error.reason or responses.get(status_code, "error")}
        else:
            super().write_error(status_code, **kwargs)
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(reply))

    def _scrub(self, text: str | None) -> str | None:
        return scrub_paths(text, Path(self.settings["server_root_dir"]))


def _check(path: Path, content: dict[str, Any] | None) -> dict[str, Any]:
    notebook = load_notebook(path) if content is None else notebook_from_json(content, path)
    return analyze(notebook).to_json()


class CheckHandler(NbprodHandler):
    @web.authenticated
    async def post(self) -> None:
        data = self.body()
        relative = self.field(data, "path", str, "a notebook path relative to the root")
        content = self.field(data, "notebook", (dict, type(None)), "a notebook (JSON)", None)
        path = self.notebook(relative, must_exist=content is None)
        analysis = await self.call(_check, path, content)
        self.reply({**analysis, "notebook": relative, "path": relative})


class RunsHandler(NbprodHandler):
    @web.authenticated
    async def get(self) -> None:
        path = self.notebook(self.argument("path"))
        metric = self.get_query_argument("sort", None) or None
        runs, _ = await self.call(ranked_runs, path, metric, self.root)
        self.reply({"runs": runs})


def _run(notebook: Path, selector: str, root: Path) -> dict[str, Any]:
    store = existing_store(notebook)
    return run_json(store.select(selector, notebook), root, store)


class RunHandler(NbprodHandler):
    @web.authenticated
    async def get(self, run_id: str) -> None:
        path = self.notebook(self.argument("path"))
        self.reply(await self.call(_run, path, run_id, self.root))


def _compare(notebook: Path, selectors: list[str], root: Path) -> list[dict[str, Any]]:
    store = existing_store(notebook)
    return [run_json(r, root, store) for r in store.compare(selectors, notebook)]


def _executed_notebook(notebook: Path, selector: str) -> Path:
    from nbprod.runs.records import EXECUTED

    store = existing_store(notebook)
    record = store.select(selector, notebook)
    folder = store.folder(record.id) or run_dir(Path(record.notebook), record.id)
    executed = folder / EXECUTED
    if not executed.is_file():
        raise RunNotFound(
            f"run {record.id} kept no executed notebook", "run the notebook again to get one"
        )
    return executed


class RunNotebookHandler(NbprodHandler):
    """The executed notebook of a run: it lives under the hidden .nbprod folder, which
    the contents API refuses to serve by default."""

    @web.authenticated
    async def get(self, run_id: str) -> None:
        path = self.notebook(self.argument("path"))
        executed = await self.call(_executed_notebook, path, run_id)
        if not executed.resolve().is_relative_to(self.root):
            raise ApiError(403, f"run {run_id!r} keeps its files outside the server root")
        self.reply(json.loads(executed.read_text(encoding="utf-8")))


class CompareHandler(NbprodHandler):
    @web.authenticated
    async def get(self) -> None:
        path = self.notebook(self.argument("path"))
        selectors = [s.strip() for s in self.argument("ids").split(",") if s.strip()]
        if not selectors:
            raise ApiError(400, "query argument 'ids' names no run")
        self.reply(await self.call(_compare, path, selectors, self.root))


class ExtractHandler(NbprodHandler):
    @web.authenticated
    async def post(self) -> None:
        from nbprod.extract import extract

        data = self.body()
        path = self.notebook(self.field(data, "path", str, "a notebook path"))
        run = self.field(data, "run", str, "a run id, latest, best:METRIC or min:METRIC")
        output = confine(self.root, self.field(data, "output", str, "a folder path"), "output")
        force = self.field(data, "force", bool, "true or false", False)
        version = self.field(data, "version", (str, type(None)), "a version or null", None)
        onnx = self.field(data, "onnx", bool, "true or false", False)
        if output == self.root or path.is_relative_to(output):
            raise ApiError(400, "the output folder would hold the notebook itself")
        result = await self.call(
            extract, path, run, output, force=force, version=version, onnx=onnx
        )
        self.reply(
            {
                "package": result.package,
                "path": shown_path(result.path, self.root),
                "run_id": result.run_id,
                "warnings": [self._scrub(w) for w in result.warnings],
            }
        )


class JobsHandler(NbprodHandler):
    @web.authenticated
    async def get(self) -> None:
        given = self.get_query_argument("path", None)
        notebook = self.notebook(given) if given else None
        jobs = await self.call(self.jobs.list, notebook)
        self.reply({"jobs": [job.to_json(self.root) for job in jobs]})

    @web.authenticated
    async def post(self) -> None:
        data = self.body()
        kind = self.field(data, "kind", str, f"one of {', '.join(KINDS)}")
        path = self.notebook(self.field(data, "path", str, "a notebook path"))
        if kind == "sweep":
            options = {
                "parameters": self.field(
                    data, "parameters", dict, "an object {name: [values]}", {}
                ),
                "workers": self.field(data, "workers", (int, type(None)), "an integer", None),
                "smoke": self.field(data, "smoke", bool, "true or false", False),
            }
        elif kind == "publish":
            dist = self.field(data, "dist", str, "a folder path", "dist")
            options = {
                "run": self.field(data, "run", str, "a run id, latest or best:METRIC"),
                "version": self.field(data, "version", (str, type(None)), "a version", None),
                "dist": confine(self.root, dist, "dist"),
                "repository": self.field(
                    data, "repository", (str, type(None)), "an upload URL or name", None
                ),
                "onnx": self.field(data, "onnx", bool, "true or false", False),
            }
        else:
            raise ApiError(400, f"field 'kind' must be one of {', '.join(KINDS)}")
        job = await self.call(self.jobs.submit, kind, path, **options)
        self.reply(job.to_json(self.root), status=202)


class JobHandler(NbprodHandler):
    @web.authenticated
    async def get(self, job_id: str) -> None:
        job = await self.call(self.jobs.get, job_id)
        self.reply(job.to_json(self.root))

    @web.authenticated
    async def delete(self, job_id: str) -> None:
        job = await self.call(self.jobs.cancel, job_id)
        self.reply(job.to_json(self.root), status=202)


ROUTES: list[tuple[str, type[NbprodHandler]]] = [
    ("check", CheckHandler),
    ("extract", ExtractHandler),
    ("runs", RunsHandler),
    ("runs/compare", CompareHandler),  # before runs/<id>: tornado takes the first match
    ("runs/(?P<run_id>[^/]+)/notebook", RunNotebookHandler),
    ("runs/(?P<run_id>[^/]+)", RunHandler),
    ("jobs", JobsHandler),
    ("jobs/(?P<job_id>[^/]+)", JobHandler),
]


def setup_handlers(web_app: web.Application, root_dir: str) -> None:
    """Register the routes under ``<base_url>nbprod/`` with one JobManager for the root."""
    web_app.settings[JOBS] = JobManager(root_dir)
    base = web_app.settings["base_url"]
    web_app.add_handlers(
        ".*$", [(url_path_join(base, "nbprod", pattern), handler) for pattern, handler in ROUTES]
    )
