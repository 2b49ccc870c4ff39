"""`nbprod publish`: build, clean-venv verification, upload to an index, never overwrite.

The index is a real pypiserver with a password file; one run is published to it once
per module (a full publish costs ~30 s) and the tests read that one result.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
from nbbuild import SMALL, write_notebook
from tools import BIN, make_venv, nbprod

from nbprod.exceptions import OutputExists, UsageError
from nbprod.publish.flow import publish
from nbprod.publish.index import Index, simple_index
from nbprod.publish.steps import PublishFailed, run_step
from nbprod.publish.targets import target

USER = "publisher"
PASSWORD = "correct-horse-7f3k"


@dataclass(frozen=True)
class Server:
    url: str
    packages: Path

    def page(self, project: str) -> str:
        with urllib.request.urlopen(f"{self.url}/simple/{project}/", timeout=10) as response:
            return unquote(response.read().decode())


@dataclass(frozen=True)
class Upload:
    result: subprocess.CompletedProcess[str]
    dist: Path
    version: str
    run_id: str


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_notebook(tmp_path_factory.mktemp("notebook") / "tiny.ipynb", *SMALL)
    assert nbprod("run", path, "-p", "a=1,3", "--json").returncode == 0
    return path


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A pypiserver on 127.0.0.1 where uploads need USER/PASSWORD; stopped by its PID."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # passlib imports `crypt`
        from passlib.apache import HtpasswdFile
    folder = tmp_path_factory.mktemp("index")
    packages = folder / "packages"
    packages.mkdir()
    passwords = HtpasswdFile(str(folder / "htpasswd"), new=True)
    passwords.set_password(USER, PASSWORD)
    passwords.save()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        # Without --disable-fallback an unknown project redirects to pypi.org.
        [
            str(BIN / "pypi-server"),
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--authenticate",
            "update",
            "--passwords",
            str(folder / "htpasswd"),
            "--disable-fallback",
            str(packages),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, (folder / "server.log").read_text()
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (folder / "server.log").read_text()
                time.sleep(0.1)
        yield Server(url, packages)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def uploaded(notebook: Path, index: Server, tmp_path_factory: pytest.TempPathFactory) -> Upload:
    """The latest run published with the default version to the index and a dist folder."""
    dist = tmp_path_factory.mktemp("dist")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TWINE_USERNAME", USER)
        env.setenv("TWINE_PASSWORD", PASSWORD)
        result = nbprod(
            "publish", notebook, "--run", "latest", "--dist", dist, "--repository", index.url
        )
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"published tiny (\S+) \(run (\S+)\)", result.stdout)
    assert found, result.stdout
    return Upload(result, dist, found[1], found[2])


@pytest.mark.slow
def test_publish_verifies_uploads_then_places_the_files(uploaded: Upload, index: Server) -> None:
    steps = [
        "generate the package",
        f"check that tiny {uploaded.version} is new on {index.url}/simple/",
        "build sdist and wheel",
        "install the wheel into a clean venv",
        "run the package's tests in that venv",
        f"upload to {index.url}",
        f"place the files in {uploaded.dist}",
    ]
    shown = [uploaded.result.stderr.index(f"• {step}\n") for step in steps]
    assert shown == sorted(shown)
    assert re.search(r"tests in a clean venv: \d+ passed", uploaded.result.stdout)
    assert f"uploaded to {index.url}" in uploaded.result.stdout

    # The default version: PEP 440, the run's start time, then notebook hash and run.
    suffix = uploaded.run_id.rsplit("-", 1)[1]
    assert re.fullmatch(rf"0\.\d{{8}}\.\d+\+nb[0-9a-f]{{8}}\.r{suffix}", uploaded.version)

    files = [f"tiny-{uploaded.version}-py3-none-any.whl", f"tiny-{uploaded.version}.tar.gz"]
    assert sorted(p.name for p in uploaded.dist.iterdir()) == files
    assert sorted(p.name for p in index.packages.iterdir()) == files
    page = index.page("tiny")
    assert all(name in page for name in files)
    with zipfile.ZipFile(uploaded.dist / files[0]) as wheel:
        names = wheel.namelist()
        assert "tiny/artifacts/manifest.json" in names and "tiny/pipeline.py" in names
        metadata = wheel.read(f"tiny-{uploaded.version}.dist-info/METADATA").decode()
    assert "Requires-Dist: skops==" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert requires and not [line for line in requires if "nbprod" in line or "papermill" in line]


@pytest.mark.slow
def test_the_uploaded_package_installs_from_the_index_and_predicts(
    uploaded: Upload, index: Server, tmp_path: Path
) -> None:
    # Our index first, PyPI only for what it lacks (skops, scikit-learn...). With the
    # default first-index strategy a name found on our index is taken from it alone:
    # `--extra-index-url` would ask PyPI first, and PyPI has its own `tiny`.
    python = make_venv(
        tmp_path / "venv",
        f"tiny=={uploaded.version}",
        index=["--index", f"{index.url}/simple/", "--default-index", "https://pypi.org/simple"],
    )
    shown = subprocess.run(
        [
            str(python),
            "-c",
            "import json, tiny; print(json.dumps([tiny.info(), tiny.predict(5)]))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert shown.returncode == 0, shown.stderr
    info, prediction = json.loads(shown.stdout)
    assert info["version"] == uploaded.version and info["run_id"] == uploaded.run_id
    # The notebook's recorded call: predict(5) with w = sum([1, 2, 3]) * a.
    assert prediction == 5 * 6 * info["parameters"]["a"]


@pytest.mark.slow
def test_a_published_version_is_refused_before_building(
    uploaded: Upload, index: Server, notebook: Path, tmp_path: Path
) -> None:
    publish = ("publish", notebook, "--run", "latest", "--version", uploaded.version)
    in_dist = nbprod(*publish, "--dist", uploaded.dist, "--repository", index.url)
    assert in_dist.returncode == 2
    assert f"tiny {uploaded.version} is already in {uploaded.dist}" in in_dist.stderr
    assert "never overwritten" in in_dist.stderr

    dist = tmp_path / "dist"
    on_index = nbprod(*publish, "--dist", dist, "--repository", index.url)
    assert on_index.returncode == 2
    assert (
        f"tiny {uploaded.version} is already on the index {index.url}/simple/tiny/"
        in on_index.stderr
    )
    assert "fix: a published version is never overwritten: pass --version with a new version" in (
        on_index.stderr
    )
    assert "build sdist and wheel" not in on_index.stderr
    assert not dist.exists()
    assert len(list(index.packages.iterdir())) == 2


@pytest.mark.slow
def test_a_wrong_password_stops_at_the_upload(
    notebook: Path, index: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wrong-battery-9q2z"
    monkeypatch.setenv("TWINE_USERNAME", USER)
    monkeypatch.setenv("TWINE_PASSWORD", wrong)
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "other-0.1.tar.gz").write_text("kept")
    publish = ("publish", notebook, "--run", "latest", "--version", "2.0", "--dist", dist)
    result = nbprod(*publish, "--repository", index.url)
    assert result.returncode == 1
    assert f"publishing stopped at step 'upload to {index.url}'" in result.stderr
    assert "403" in result.stderr and "the dist folder was not changed" in result.stderr
    assert wrong not in result.stdout + result.stderr
    assert [p.name for p in dist.iterdir()] == ["other-0.1.tar.gz"]
    assert not [p for p in index.packages.iterdir() if "-2.0" in p.name]


@pytest.mark.slow
def test_an_invalid_version_is_a_usage_error(notebook: Path, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    result = nbprod(
        "publish", notebook, "--run", "latest", "--version", "not a version", "--dist", dist
    )
    assert result.returncode == 2
    assert "--version 'not a version' is not a valid version (PEP 440)" in result.stderr
    assert "generate the package" not in result.stderr
    assert not dist.exists()
    runs = json.loads(nbprod("runs", notebook, "--json").stdout)
    assert len(runs) == 2


@pytest.mark.parametrize(
    ("upload", "simple"),
    [
        ("https://upload.pypi.org/legacy/", "https://pypi.org/simple/"),
        ("https://test.pypi.org/legacy/", "https://test.pypi.org/simple/"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/simple/"),
        ("http://index.example/", "http://index.example/simple/"),
    ],
)
def test_the_simple_index_is_derived_from_known_upload_urls(upload: str, simple: str) -> None:
    assert simple_index(upload) == simple


def test_an_unknown_upload_url_asks_for_the_index_url() -> None:
    with pytest.raises(UsageError, match="cannot tell the simple index") as raised:
        simple_index("https://nexus.example/repository/models/")
    assert "--index-url" in str(raised.value)


def test_no_shown_output_holds_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINE_PASSWORD", "s3cret-hunter2")
    echo = [sys.executable, "-c", "import os; print(os.environ.get('TWINE_PASSWORD'))"]
    # Only the upload step sees the password at all...
    assert run_step("build", echo).strip() == "None"
    # ...and whatever a step prints, the password never reaches an error message.
    with pytest.raises(PublishFailed) as raised:
        run_step("upload", [*echo[:2], echo[2] + "; exit(1)"], credentials=True)
    assert "s3cret-hunter2" not in str(raised.value)
    assert "********" in raised.value.output


@pytest.mark.slow
def test_a_refused_local_version_says_to_pass_a_version(uploaded: Upload) -> None:
    """PyPI answers a local version with HTTP 400 "The use of local versions ... is not
    allowed"; a stand-in server answers the same to the real twine."""

    class Warehouse(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            reason = f"The use of local versions in <Version('{uploaded.version}')> is not allowed."
            self.send_response(400, reason)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Warehouse) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/legacy/"
        warehouse = Index(url, simple_index(url), ("--repository-url", url), USER, PASSWORD)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("TWINE_USERNAME", USER)
            env.setenv("TWINE_PASSWORD", PASSWORD)
            with pytest.raises(PublishFailed) as raised:
                warehouse.deliver(sorted(uploaded.dist.iterdir()), uploaded.version)
        server.shutdown()
    public = uploaded.version.split("+")[0]
    assert raised.value.step == f"upload to {url}"
    assert raised.value.hint is not None
    assert f"pass --version with a public one, e.g. {public}" in raised.value.hint


SHELF = """
from nbprod.exceptions import OutputExists


class Shelf:
    name = "shelf"

    def __init__(self, holds):
        self.holds = holds

    def describe(self):
        return "put the files on the shelf"

    def refuse_existing(self, distribution, version, step):
        step(f"look for {distribution} {version} on the shelf")
        if version == self.holds:
            raise OutputExists(f"{distribution} {version} is already on the shelf")

    def deliver(self, files, version):
        return "the shelf"
"""


@pytest.mark.slow
def test_a_plugin_target_comes_from_its_entry_point_and_refuses_before_building(
    notebook: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """A third-party package registers a target in the ``nbprod.publish_targets`` group."""
    plugin = tmp_path / "site"
    info = plugin / "nbprod_shelf-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nbprod-shelf\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[nbprod.publish_targets]\nshelf = nbprod_shelf:Shelf\n")
    (plugin / "nbprod_shelf.py").write_text(SHELF)
    monkeypatch.syspath_prepend(plugin)
    request.addfinalizer(lambda: sys.modules.pop("nbprod_shelf", None))

    shelf = target("shelf", holds="3.0")
    assert type(shelf).__module__ == "nbprod_shelf" and shelf.name == "shelf"
    steps: list[str] = []
    dist = tmp_path / "dist"
    with pytest.raises(OutputExists, match=re.escape("tiny 3.0 is already on the shelf")):
        publish(
            notebook,
            "latest",
            version="3.0",
            targets=[target("folder", dist=dist), shelf],
            on_step=steps.append,
        )
    assert steps == ["generate the package", "look for tiny 3.0 on the shelf"]
    assert not dist.exists()

    with pytest.raises(UsageError, match="unknown publish target 'nowhere'") as raised:
        target("nowhere")
    assert "choose one of: folder, index, shelf" in str(raised.value)
