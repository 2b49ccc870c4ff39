"""The jupyter-server extension in a real server (pytest-jupyter): every route, its
authentication and XSRF check, path confinement, bad requests, and jobs from submit to
result, failure and cancel.

The fixtures are imported into this module rather than named in ``pytest_plugins``:
that would register the plugin for the whole session, and its autouse fixtures (a new
event loop and a ServerApp clean-up around every test) would wrap every other module's
tests too. Without its async hooks the tests here are plain functions that drive the
server's loop through ``Api``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from nbbuild import SCORED, notebook_node, write_notebook
from pytest_jupyter.jupyter_server import *  # noqa: F403
from tools import UV_CACHE, nbprod
from tornado import web
from tornado.routing import Router
from traitlets.config import Config

from nbprod.jobs.manager import JobManager

pytestmark = pytest.mark.slow

NOTEBOOK = "proj/scored.ipynb"


# -- the server ---------------------------------------------------------------------------


@dataclass
class Workspace:
    root: Path
    outside: Path  # a folder beside the root, with a notebook in it
    runs: list[dict[str, Any]]  # the CLI's records of a two-run sweep of NOTEBOOK


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """One root for the module: a notebook with two runs, and links that lead outside."""
    base = tmp_path_factory.mktemp("server")
    root, outside = base / "root", base / "outside"
    (root / "proj").mkdir(parents=True)
    outside.mkdir()
    notebook = write_notebook(root / NOTEBOOK, *SCORED)
    write_notebook(outside / "secret.ipynb", *SCORED)
    (root / "elsewhere").symlink_to(outside, target_is_directory=True)
    (root / "secret.ipynb").symlink_to(outside / "secret.ipynb")
    (root / "notes.ipynb").write_text("not a notebook")
    swept = nbprod("run", notebook, "-p", "a=1,3", "--json")
    assert swept.returncode == 0, swept.stderr
    return Workspace(root, outside, json.loads(swept.stdout)["runs"])


@pytest.fixture
def jp_root_dir(workspace: Workspace) -> Path:
    return workspace.root


@pytest.fixture
def jp_server_config() -> Config:
    return Config({"ServerApp": {"jpserver_extensions": {"nbprod.jupyter": True}}})


@dataclass
class Reply:
    code: int
    body: Any
    cookies: list[str]

    @property
    def message(self) -> str:
        return str(self.body.get("message"))


class Api:
    """Requests to the test server, authenticated with its token unless told otherwise."""

    def __init__(self, client: Any, loop: Any, base_url: str, token: str) -> None:
        self.client, self.loop, self.base_url, self.token = client, loop, base_url, token

    def url(self, route: str) -> str:
        return f"{self.base_url}nbprod/{quote(route)}"

    def request(
        self,
        method: str,
        route: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        token: bool = True,
        raw_url: str | None = None,
    ) -> Reply:
        url = raw_url or self.url(route)
        if params:
            url += "?" + urlencode(params)
        sent = {"Authorization": f"token {self.token}"} if token else {}
        sent.update(headers or {})
        if body is not None and not isinstance(body, str | bytes):
            body = json.dumps(body)
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        response = self.loop.run_until_complete(
            self.client.fetch(
                url,
                method=method,
                body=body,
                headers=sent,
                raise_error=False,
                allow_nonstandard_methods=True,
                follow_redirects=False,
                request_timeout=120,
            )
        )
        text = response.body.decode() if response.body else ""
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = text
        return Reply(response.code, data, response.headers.get_list("Set-Cookie"))

    def get(self, route: str, **params: str) -> Reply:
        return self.request("GET", route, params=params)

    def post(self, route: str, body: Any) -> Reply:
        return self.request("POST", route, body)

    def job(self, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float) -> Any:
        """Poll the job (as a reloaded browser would) until ``until`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.get(f"jobs/{job_id}")
            assert reply.code == 200, reply.body
            if until(reply.body):
                return reply.body
            assert time.monotonic() < deadline, reply.body
            time.sleep(0.3)


@pytest.fixture
def api(
    jp_serverapp: Any,
    http_server_client: Any,
    jp_asyncio_loop: Any,
    jp_base_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Api:
    # jp_environ gives the server a fresh HOME: keep the shared uv cache for clean venvs.
    monkeypatch.setenv("UV_CACHE_DIR", UV_CACHE)
    # An earlier asyncio.run() in this process (other test modules) leaves no current loop,
    # and tornado's client creates its futures on the current one.
    asyncio.set_event_loop(jp_asyncio_loop)
    token = jp_serverapp.identity_provider.token
    return Api(http_server_client, jp_asyncio_loop, jp_base_url, token)


def place(path: Path, *cells: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_notebook(path, *cells)


def finished(job: dict[str, Any]) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")


# -- authentication and XSRF --------------------------------------------------------------


def nbprod_routes(app: web.Application) -> list[tuple[str, type[web.RequestHandler]]]:
    """Every (URL pattern, handler) the server registered from nbprod's modules."""
    found = []

    def walk(router: Router) -> None:
        for rule in getattr(router, "rules", []):
            target = rule.target
            if isinstance(target, type) and issubclass(target, web.RequestHandler):
                if target.__module__.startswith("nbprod."):
                    found.append((rule.matcher.regex.pattern, target))
            elif isinstance(target, Router):
                walk(target)

    walk(app.default_router)
    return found


def methods(handler: type[web.RequestHandler]) -> list[str]:
    return [
        name.upper()
        for name in ("get", "post", "put", "patch", "delete")
        if getattr(handler, name) is not getattr(web.RequestHandler, name)
    ]


def concrete(pattern: str) -> str:
    return re.sub(r"\(\?P<\w+>[^)]*\)", "x", pattern).removesuffix("$")


def test_every_route_refuses_requests_without_credentials(api: Api, jp_serverapp: Any) -> None:
    routes = nbprod_routes(jp_serverapp.web_app)
    assert {concrete(p).split("/nbprod/")[1] for p, _ in routes} >= {
        "check",
        "extract",
        "runs",
        "runs/compare",
        "runs/x/notebook",
        "runs/x",
        "jobs",
        "jobs/x",
    }
    for pattern, handler in routes:
        for method in methods(handler):
            body = "{}" if method in ("POST", "PUT", "PATCH") else None
            reply = api.request(method, "", body, token=False, raw_url=concrete(pattern))
            assert reply.code == 403, (method, pattern, reply.code)


def test_a_cookie_session_needs_the_xsrf_token_to_change_anything(
    api: Api, jp_serverapp: Any
) -> None:
    """jupyter_server's rule: a request that carries the token (header or ?token=) is
    exempt from XSRF, since no other site can add it; a browser session authenticated by
    its login cookie must send the ``_xsrf`` cookie back as the X-XSRFToken header on
    every POST/PUT/PATCH/DELETE. So: token → allowed; cookie without _xsrf → 403;
    cookie with it → allowed."""
    login = api.get("runs", path=NOTEBOOK)
    assert login.code == 200
    jar = SimpleCookie()
    for header in login.cookies:
        jar.load(header)
    assert jar, "a token-authenticated request sets the login cookie"
    session = "; ".join(f"{name}={morsel.value}" for name, morsel in jar.items())
    xsrf = secrets.token_hex(16)
    with_xsrf = {"Cookie": f"{session}; _xsrf={xsrf}", "X-XSRFToken": xsrf}
    cookie_only = {"Cookie": session}

    def send(method: str, pattern: str, headers: dict[str, str]) -> Reply:
        body = "{}" if method == "POST" else None
        url = concrete(pattern)
        return api.request(method, "", body, headers=headers, token=False, raw_url=url)

    for pattern, handler in nbprod_routes(jp_serverapp.web_app):
        for method in methods(handler):
            if method == "GET":
                # Reading needs no XSRF token, only the session (400: no ?path= given).
                assert send(method, pattern, cookie_only).code in (200, 400, 404), pattern
                continue
            refused = send(method, pattern, cookie_only)
            assert refused.code == 403, (method, pattern, refused.body)
            assert "_xsrf" in refused.message
            allowed = send(method, pattern, with_xsrf)
            assert allowed.code in (400, 404), (method, pattern, allowed.body)


# -- check --------------------------------------------------------------------------------


def test_check_returns_the_analysis_with_relative_paths(api: Api, workspace: Workspace) -> None:
    reply = api.post("check", {"path": NOTEBOOK})
    assert reply.code == 200, reply.body
    analysis = reply.body
    assert analysis["ok"] is True and analysis["path"] == analysis["notebook"] == NOTEBOOK
    assert str(workspace.root) not in json.dumps(analysis)
    # Cells are numbered over all cells: the markdown cell is 1.
    assert analysis["cells"][0]["cell"] == 2 and analysis["cells"][0]["role"] == "parameters"
    assert analysis["parameters"]["a"]["value"] == 2
    assert [a["name"] for a in analysis["artifacts"]] == ["w"]
    assert analysis["entry_point"]["signature"] == "predict(x)"
    assert analysis["metrics"] == ["score"]
    assert set(analysis) >= {"roles", "problems", "warnings"}


def test_check_reads_unsaved_content_instead_of_the_file(api: Api, workspace: Workspace) -> None:
    edited = notebook_node(
        "Unsaved: the train cell now reads a name only an untagged cell defines.",
        (None, "df = [1]"),
        ("train", "x = 1\nmodel = len(df)"),
        ("inference", "def predict(v):\n    return model"),
    )
    on_disk = (workspace.root / NOTEBOOK).read_text()
    reply = api.post("check", {"path": NOTEBOOK, "notebook": edited})
    assert reply.code == 200, reply.body
    assert reply.body["ok"] is False and reply.body["path"] == NOTEBOOK
    problem = reply.body["problems"][0]
    assert (problem["cell"], problem["role"], problem["line"]) == (3, "train", 2)
    assert problem["name"] == "df" and "tag cell 2 `data`" in problem["hint"]
    assert (workspace.root / NOTEBOOK).read_text() == on_disk
    # Content for a notebook not saved yet: its folder is enough.
    fresh = api.post("check", {"path": "proj/untitled.ipynb", "notebook": edited})
    assert fresh.code == 200 and fresh.body["path"] == "proj/untitled.ipynb"


def test_check_refuses_what_is_not_a_notebook(api: Api, workspace: Workspace) -> None:
    reply = api.post("check", {"path": "notes.ipynb"})
    assert reply.code == 400
    assert reply.message.startswith("notes.ipynb is not valid JSON")
    assert reply.body["type"] == "NotebookFileError" and reply.body["hint"]
    assert str(workspace.root) not in json.dumps(reply.body)
    content = api.post("check", {"path": NOTEBOOK, "notebook": {"cells": "no"}})
    assert content.code == 400 and "not a Jupyter notebook" in content.message
    missing = api.post("check", {"path": "proj/missing.ipynb"})
    assert missing.code == 404 and missing.message == "no notebook 'proj/missing.ipynb'"
    folder = api.post("check", {"path": "proj"})
    assert folder.code == 400 and "is a folder" in folder.message


@pytest.mark.parametrize(
    ("route", "body", "message"),
    [
        ("check", "{not json", "the request body is not valid JSON"),
        ("check", "[1, 2]", "the request body must be a JSON object"),
        ("check", {}, "field 'path' is missing"),
        ("check", {"path": 3}, "field 'path' must be"),
        ("check", {"path": NOTEBOOK, "notebook": [1]}, "field 'notebook' must be"),
        ("extract", "", "the request body must be a JSON object"),
        ("extract", {"path": NOTEBOOK, "output": "o"}, "field 'run' is missing"),
        ("extract", {"path": NOTEBOOK, "run": "latest", "output": "o", "force": "yes"}, "force"),
        (
            "extract",
            {"path": NOTEBOOK, "run": "latest", "output": "o", "onnx": "yes"},
            "field 'onnx' must be true or false",
        ),
        ("jobs", "\xff", "the request body is not valid JSON"),
        ("jobs", {"path": NOTEBOOK}, "field 'kind' is missing"),
        ("jobs", {"kind": "train", "path": NOTEBOOK}, "field 'kind' must be one of sweep"),
        ("jobs", {"kind": "sweep", "path": NOTEBOOK, "workers": True}, "field 'workers'"),
        ("jobs", {"kind": "sweep", "path": NOTEBOOK, "parameters": [1]}, "field 'parameters'"),
        ("jobs", {"kind": "sweep", "path": NOTEBOOK, "parameters": {"b": 1}}, "unknown param"),
        ("jobs", {"kind": "publish", "path": NOTEBOOK}, "field 'run' is missing"),
        ("jobs", {"kind": "publish", "path": NOTEBOOK, "run": 1}, "field 'run' must be"),
        (
            "jobs",
            {"kind": "publish", "path": NOTEBOOK, "run": "latest", "onnx": "yes"},
            "field 'onnx' must be true or false",
        ),
        (
            "jobs",
            {"kind": "publish", "path": NOTEBOOK, "run": "latest", "onnx": 1},
            "field 'onnx' must be true or false",
        ),
    ],
)
def test_bad_requests_are_400_with_a_message(api: Api, route: str, body: Any, message: str) -> None:
    reply = api.post(route, body)
    assert reply.code == 400, reply.body
    assert message in reply.message


def test_bad_query_arguments_are_400(api: Api) -> None:
    assert api.get("runs").message == "query argument 'path' is missing"
    assert api.get("runs/compare", path=NOTEBOOK).code == 400
    assert api.get("runs/compare", path=NOTEBOOK, ids=",").message == (
        "query argument 'ids' names no run"
    )


# -- path confinement ---------------------------------------------------------------------

ESCAPES = {  # for a notebook, and for a folder (output, dist)
    "dotdot": ("proj/../../outside/secret.ipynb", "proj/../../outside/pkg"),
    "absolute": ("/{outside}/secret.ipynb", "/{outside}/pkg"),
    "symlinked folder": ("elsewhere/secret.ipynb", "elsewhere/pkg"),
    "symlink itself": ("secret.ipynb", "elsewhere"),
}
PLACES: list[tuple[str, str, str]] = [  # (method, route, where the path goes)
    ("POST", "check", "path"),
    ("GET", "runs", "path"),
    ("GET", "runs/latest", "path"),
    ("GET", "runs/compare", "path"),
    ("POST", "extract", "path"),
    ("POST", "extract", "output"),
    ("POST", "jobs", "path"),
    ("POST", "jobs", "dist"),
    ("GET", "jobs", "path"),
]


@pytest.mark.parametrize("escape", ESCAPES)
@pytest.mark.parametrize(("method", "route", "field"), PLACES)
def test_paths_that_leave_the_root_are_403(
    api: Api, workspace: Workspace, escape: str, method: str, route: str, field: str
) -> None:
    notebook, folder = ESCAPES[escape]
    path = (folder if field in ("output", "dist") else notebook).format(
        outside=str(workspace.outside).strip("/")
    )
    request = {"path": NOTEBOOK, "run": "latest", "output": "pkg", "kind": "publish"}
    request[field] = path
    if method == "GET":
        reply = api.request("GET", route, params={"path": path, "ids": "latest"})
    else:
        reply = api.post(route, request)
    assert reply.code == 403, reply.body
    assert str(workspace.root) not in json.dumps(reply.body)
    assert [p.name for p in workspace.outside.iterdir()] == ["secret.ipynb"]


# -- runs ---------------------------------------------------------------------------------


def test_runs_are_listed_best_first_with_their_executed_notebook(
    api: Api, workspace: Workspace
) -> None:
    reply = api.get("runs", path=NOTEBOOK, sort="score")
    assert reply.code == 200, reply.body
    runs = [r for r in reply.body["runs"] if r["sweep_id"] == workspace.runs[0]["sweep_id"]]
    assert [r["parameters"]["a"] for r in runs] == [3, 1]
    for run in runs:
        assert run["notebook"] == NOTEBOOK
        assert run["executed_path"] == f"proj/.nbprod/runs/{run['id']}/executed.ipynb"
        assert (workspace.root / run["executed_path"]).is_file()
    assert str(workspace.root) not in json.dumps(reply.body)
    assert api.get("runs", path="proj/untitled.ipynb").code == 404
    write_notebook(workspace.root / "proj" / "never_ran.ipynb", *SCORED)
    assert api.get("runs", path="proj/never_ran.ipynb").body == {"runs": []}


def test_one_run_by_id_or_selector(api: Api, workspace: Workspace) -> None:
    best = api.get("runs/best:score", path=NOTEBOOK)
    assert best.code == 200, best.body
    assert best.body["metrics"]["score"] == max(r["metrics"]["score"] for r in workspace.runs)
    by_id = api.get(f"runs/{workspace.runs[0]['id']}", path=NOTEBOOK)
    assert by_id.body["parameters"] == workspace.runs[0]["parameters"]
    assert by_id.body["executed_path"].endswith("executed.ipynb")
    unknown = api.get("runs/20200101-000000-000000", path=NOTEBOOK)
    assert unknown.code == 404 and "no run '20200101-000000-000000'" in unknown.message


def test_the_executed_notebook_of_a_run_is_served(api: Api, workspace: Workspace) -> None:
    run = api.get(f"runs/{workspace.runs[0]['id']}", path=NOTEBOOK).body
    reply = api.get(f"runs/{run['id']}/notebook", path=NOTEBOOK)
    assert reply.code == 200, reply.body
    on_disk = json.loads((workspace.root / run["executed_path"]).read_text())
    assert reply.body == on_disk and reply.body["cells"]
    assert api.get("runs/20200101-000000-000000/notebook", path=NOTEBOOK).code == 404
    assert api.get("runs/best:nothing", path=NOTEBOOK).code == 404
    assert api.get("runs/bad:selector:x", path=NOTEBOOK).code == 400


def test_compare_gives_what_the_cli_gives(api: Api, workspace: Workspace) -> None:
    ids = [r["id"] for r in workspace.runs]
    reply = api.get("runs/compare", path=NOTEBOOK, ids=",".join(ids))
    assert reply.code == 200, reply.body
    cli = nbprod("runs", "compare", *ids, "--notebook", workspace.root / NOTEBOOK, "--json").stdout
    expected = json.loads(cli)
    for shown, record in zip(reply.body, expected, strict=True):
        assert shown["notebook"] == NOTEBOOK  # the CLI's is absolute; the server's never
        assert {k: v for k, v in shown.items() if k in record and k != "notebook"} == {
            k: v for k, v in record.items() if k != "notebook"
        }


# -- extract ------------------------------------------------------------------------------


def test_extract_writes_the_package_inside_the_root(api: Api, workspace: Workspace) -> None:
    request = {"path": NOTEBOOK, "run": "best:score", "output": "packages/scored"}
    reply = api.post("extract", request)
    assert reply.code == 200, reply.body
    best = max(workspace.runs, key=lambda r: r["metrics"]["score"])
    assert reply.body == {
        "package": "scored",
        "path": "packages/scored",
        "run_id": best["id"],
        "warnings": reply.body["warnings"],
    }
    assert (workspace.root / "packages" / "scored" / "pyproject.toml").is_file()
    again = api.post("extract", request)
    assert again.code == 409 and again.message == "packages/scored already exists"
    assert api.post("extract", {**request, "force": True}).code == 200
    holding = api.post("extract", {**request, "output": "proj", "force": True})
    assert holding.code == 400 and "hold the notebook" in holding.message
    assert (workspace.root / NOTEBOOK).is_file()
    missing = api.post("extract", {**request, "path": "proj/gone.ipynb"})
    assert missing.code == 404


# -- jobs ---------------------------------------------------------------------------------


def test_a_sweep_job_from_submit_to_result(api: Api, workspace: Workspace) -> None:
    place(workspace.root / "sweeps" / "scored.ipynb", *SCORED)
    submitted = api.post(
        "jobs",
        {"kind": "sweep", "path": "sweeps/scored.ipynb", "parameters": {"a": [1, 2]}},
    )
    assert submitted.code == 202, submitted.body
    job = submitted.body
    assert job["kind"] == "sweep" and job["path"] == "sweeps/scored.ipynb"
    assert job["status"] == "running" and job["progress"]["total"] == 2
    assert set(job) == {
        "id",
        "kind",
        "path",
        "status",
        "created",
        "started",
        "finished",
        "progress",
        "runs",
        "result",
        "error",
        "output",
    }
    done = api.job(job["id"], finished, timeout=300)
    assert done["status"] == "succeeded", done
    assert done["progress"] == {"total": 2, "done": 2, "failed": 0, "running": 0}
    assert done["finished"] >= done["started"] >= done["created"]
    listed = api.get("runs", path="sweeps/scored.ipynb").body["runs"]
    assert sorted(r["id"] for r in listed) == sorted(done["runs"])
    assert [r["executed_path"] is not None for r in done["result"]["runs"]] == [True, True]
    assert str(workspace.root) not in json.dumps(done)
    # A reload lists the notebook's jobs, newest first; a restarted server finds it too.
    jobs = api.get("jobs", path="sweeps/scored.ipynb").body["jobs"]
    assert [j["id"] for j in jobs] == [job["id"]]
    everything = api.get("jobs").body["jobs"]
    assert [j["created"] for j in everything] == sorted(
        (j["created"] for j in everything), reverse=True
    )
    restarted = JobManager(workspace.root).get(job["id"]).to_json(workspace.root)
    assert restarted == done


def test_cancel_stops_a_sweep_its_runs_and_kernels(
    api: Api, workspace: Workspace, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    place(
        workspace.root / "slow" / "slow.ipynb",
        ("parameters", "x = 1"),
        (
            "train",
            f"import os, time\nopen(os.path.join({str(pids)!r}, str(os.getpid())), 'w')"
            ".close()\ntime.sleep(120)\nw = x",
        ),
        ("inference", "def predict(v):\n    return v * w"),
    )
    request = {"kind": "sweep", "path": "slow/slow.ipynb", "parameters": {"x": [1, 2]}}
    job = api.post("jobs", {**request, "workers": 2}).body
    deadline = time.monotonic() + 120
    while len(list(pids.iterdir())) < 2:
        assert time.monotonic() < deadline, api.get(f"jobs/{job['id']}").body
        time.sleep(0.2)
    running = api.job(job["id"], lambda j: j["progress"]["running"] == 2, timeout=30)
    assert running["status"] == "running"
    kernels = [int(p.name) for p in pids.iterdir()]
    pid = JobManager(workspace.root).get(job["id"]).pid
    assert pid is not None

    cancelled = api.request("DELETE", f"jobs/{job['id']}")
    assert cancelled.code == 202 and cancelled.body["id"] == job["id"]
    done = api.job(job["id"], finished, timeout=60)
    assert done["status"] == "cancelled", done
    assert done["error"] is None
    runs = api.get("runs", path="slow/slow.ipynb").body["runs"]
    assert [r["status"] for r in runs] == ["cancelled", "cancelled"]
    deadline = time.monotonic() + 15
    while (alive := [p for p in [pid, *kernels] if running_pid(p)]) or group_alive(pid):
        assert time.monotonic() < deadline, f"left running: {alive}"
        time.sleep(0.2)
    assert api.request("DELETE", "jobs/20200101-000000-000000").code == 404
    assert api.get("jobs/20200101-000000-000000").code == 404
    assert api.get("jobs/..%2F..%2Fetc").code == 404


def running_pid(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is left in the process group."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    return True
    return False


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    yield port


def test_a_publish_job_that_fails_names_its_step(
    api: Api, workspace: Workspace, closed_port: int
) -> None:
    index = f"http://127.0.0.1:{closed_port}/"
    request = {
        "kind": "publish",
        "path": NOTEBOOK,
        "run": "best:score",
        "dist": "dist-failed",
        "repository": index,
    }
    job = api.post("jobs", request)
    assert job.code == 202, job.body
    done = api.job(job.body["id"], finished, timeout=300)
    assert done["status"] == "failed", done
    check = f"check that scored {{}} is new on http://127.0.0.1:{closed_port}/simple/"
    steps = done["progress"]["steps"]
    assert steps[0] == "generate the package"
    assert re.fullmatch(re.escape(check).replace(r"\{\}", r"\S+"), steps[1]), steps
    assert done["progress"]["current"] is None
    error = done["error"]
    assert error["step"] == steps[1] and error["type"] == "PublishFailed"
    assert "could not read" in error["output"]
    assert "publishing stopped at step" in error["message"]
    assert error["hint"].endswith("the dist folder was not changed")
    assert not (workspace.root / "dist-failed").exists()
    assert api.post("jobs", {**request, "run": "best:nothing"}).code == 404


def test_a_publish_job_places_a_verified_wheel_in_dist(api: Api, workspace: Workspace) -> None:
    request = {"kind": "publish", "path": NOTEBOOK, "run": "latest", "dist": "dist"}
    job = api.post("jobs", request).body
    assert set(job["progress"]) == {"steps", "current"}
    assert JobManager(workspace.root).get(job["id"]).options["onnx"] is False  # the default
    done = api.job(job["id"], finished, timeout=600)
    assert done["status"] == "succeeded", done
    result = done["result"]
    # the sweep's two runs ran side by side: "latest" is the one that started last
    latest = max(workspace.runs, key=lambda run: run["started"])
    assert result["package"] == "scored" and result["run_id"] == latest["id"]
    assert sorted(Path(f).suffix for f in result["files"]) == [".gz", ".whl"]
    for file in result["files"]:
        assert file.startswith("dist/scored-") and (workspace.root / file).is_file()
    assert re.fullmatch(r"\d+ passed.*", result["tests"]), result["tests"]
    assert result["uploaded_to"] == []
    assert result["model_card"].startswith("# scored\n") and "## Model card" in result["model_card"]
    assert done["progress"]["steps"][0] == "generate the package"
    assert done["progress"]["steps"][-1].startswith("place the files in")
    assert str(workspace.root) not in json.dumps(done)
    placed = sorted(p.name for p in (workspace.root / "dist").iterdir())
    assert placed == sorted(Path(f).name for f in result["files"])


def test_a_publish_job_passes_onnx_on_to_the_cli(api: Api, workspace: Workspace) -> None:
    """``"onnx": true`` is kept in the job's options, and the job's command line is one
    ``nbprod publish`` accepts: an invalid version stops it before any package is generated
    (what ``--onnx`` makes is ``extract``'s to test), with the CLI's own error. That the
    command line holds ``--onnx`` is test_jobs.py's to show."""
    request = {
        "kind": "publish",
        "path": NOTEBOOK,
        "run": "latest",
        "dist": "dist-onnx",
        "version": "not a version",
        "onnx": True,
    }
    reply = api.post("jobs", request)
    assert reply.code == 202, reply.body
    job = JobManager(workspace.root).get(reply.body["id"])
    assert job.options["onnx"] is True
    done = api.job(job.id, finished, timeout=120)
    assert done["status"] == "failed", done
    assert done["error"]["type"] == "UsageError", done["error"]
    assert done["error"]["message"] == (
        "--version 'not a version' is not a valid version (PEP 440)"
    )
    assert done["progress"]["steps"] == []
    assert not (workspace.root / "dist-onnx").exists()


def test_a_notebook_with_problems_sweeps_and_its_runs_cannot_be_published(
    api: Api, workspace: Workspace
) -> None:
    """Any notebook runs (as papermill runs it); one with check problems is recorded as not
    extractable, and publishing one of its runs is refused up front (422), with the reasons."""
    place(
        workspace.root / "broken" / "broken.ipynb",
        ("parameters", "n = 1"),
        (None, "df = [n]"),
        ("train", "model = len(df)"),
        ("inference", "def predict(v):\n    return model"),
    )
    sweep = {"kind": "sweep", "path": "broken/broken.ipynb", "parameters": {"n": [1, 2]}}
    reply = api.post("jobs", sweep)
    assert reply.code == 202, reply.body
    done = api.job(reply.body["id"], finished, timeout=300)
    assert done["status"] == "succeeded", done
    runs = done["result"]["runs"]
    assert len(runs) == 2 and all(not run["extractable"] for run in runs)
    assert all("cell 3 (train), line 1: reads `df`" in run["not_extractable"][0] for run in runs)
    refused = api.post("jobs", {"kind": "publish", "path": "broken/broken.ipynb", "run": "latest"})
    assert refused.code == 422, refused.body
    assert refused.body["type"] == "NotExtractable"
    assert "is not extractable" in refused.message and "reads `df`" in refused.message


def test_unknown_notebooks_are_404(api: Api) -> None:
    for reply in (
        api.post("check", {"path": "nowhere/x.ipynb"}),
        api.get("runs", path="nowhere/x.ipynb"),
        api.post("extract", {"path": "x.ipynb", "run": "latest", "output": "o"}),
        api.post("jobs", {"kind": "sweep", "path": "x.ipynb"}),
        api.get("jobs", path="x.ipynb"),
    ):
        assert reply.code == 404, reply.body
        assert reply.message.startswith("no notebook")


def test_malformed_notebooks_are_400_with_what_is_wrong(api: Api, workspace: Workspace) -> None:
    folder = workspace.root / "malformed"
    folder.mkdir(exist_ok=True)
    broken = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": {"a": 1}}
    (folder / "cells.ipynb").write_text(json.dumps(broken), encoding="utf-8")
    nested = "[" * 100_000 + "]" * 100_000
    (folder / "deep.ipynb").write_text(f'{{"nbformat": 4, "cells": {nested}}}', encoding="utf-8")
    unsaved = {**broken, "cells": [{"cell_type": "code", "metadata": {}, "source": 3}]}
    # nested deeper than nbprod reads, not than the JSON decoder: the body decodes
    deeper = {**broken, "metadata": {"deep": json.loads("[" * 300 + "]" * 300)}}
    for reply, message in [
        (
            api.post("check", {"path": "malformed/cells.ipynb"}),
            "malformed/cells.ipynb is not a valid notebook: 'cells' must be a list, not an object",
        ),
        (
            api.post("check", {"path": "malformed/deep.ipynb"}),
            "malformed/deep.ipynb is not a notebook nbprod can read: its JSON nests lists and "
            "objects more than 200 levels deep",
        ),
        (
            api.post("jobs", {"kind": "sweep", "path": "malformed/cells.ipynb"}),
            "malformed/cells.ipynb is not a valid notebook: 'cells' must be a list, not an object",
        ),
        (
            api.post("check", {"path": NOTEBOOK, "notebook": unsaved}),
            f"{NOTEBOOK} is not a valid notebook: cell 1: 'source' must be a string or a list "
            "of strings, not a number",
        ),
        (
            api.post("check", {"path": NOTEBOOK, "notebook": {**deeper, "cells": []}}),
            f"{NOTEBOOK} is not a notebook nbprod can read: its JSON nests lists and objects "
            "more than 200 levels deep",
        ),
    ]:
        assert (reply.code, reply.message) == (400, message)
        assert reply.body["type"] == "NotebookFileError"
    # content nested deeper than the JSON decoder goes: refused as the body it came in
    body = api.post("check", f'{{"path": "{NOTEBOOK}", "notebook": {nested}}}')
    assert (body.code, body.message) == (400, "the request body nests lists and objects too deeply")
    assert not (folder / ".nbprod").exists()  # no job was started
