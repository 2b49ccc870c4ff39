"""Publish one run as a verified wheel: into a dist folder and, optionally, onto an index.

Reads top to bottom: generate the package, refuse a version that is already in the dist
folder or on the index, build the sdist and wheel with ``build``, install the wheel
into a clean virtual environment (only its own pinned dependencies), run the package's
tests there (parity included), upload the files with twine, and only then place them
in the dist folder.

Uploading comes before placing, so the dist folder only ever holds versions that passed
every step: a failed upload (a wrong password, a refused version) leaves it untouched.
Credentials are twine's own (``TWINE_USERNAME``/``TWINE_PASSWORD``, ``~/.pypirc``,
keyring); nbprod never prints them, and scrubs the password from any output it shows.
"""

from __future__ import annotations

import html.parser
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.client import HTTPMessage
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .exceptions import NbprodError, OutputExists, UsageError
from .extract import extract

Step = Callable[[str], None]

_UNCHANGED = "the dist folder was not changed"
_CREDENTIALS = "TWINE_USERNAME/TWINE_PASSWORD, ~/.pypirc or keyring"


class PublishFailed(NbprodError):
    """A publishing step failed; ``output`` holds what the step printed."""

    def __init__(self, step: str, output: str, hint: str | None = None) -> None:
        self.step = step
        self.output = output
        tail = "\n".join(line.rstrip() for line in output.strip().splitlines()[-40:])
        super().__init__(
            f"publishing stopped at step '{step}':\n{tail}",
            hint or f"fix the cause above; {_UNCHANGED}",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.step, self.output, self.hint))


@dataclass(frozen=True)
class Index:
    """A package index to upload to: twine's arguments and the simple index to check."""

    upload: str  # the upload URL, shown in steps and messages
    simple: str  # the PEP 503 simple index (ends with "/")
    twine_args: tuple[str, ...]  # ("--repository-url", URL) or ("--repository", NAME)
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass
class Published:
    package: str
    version: str
    run_id: str
    files: list[Path] = field(default_factory=list)
    tests: str = ""
    uploaded_to: str | None = None


def publish(
    notebook: str | Path,
    run: str,
    *,
    version: str | None = None,
    dist: str | Path = "dist",
    repository: str | None = None,
    index_url: str | None = None,
    on_step: Step | None = None,
) -> Published:
    """Generate, build, verify in a clean venv, upload to ``repository`` (when given) and
    place the package of ``run`` in ``dist``.

    ``repository`` is an upload URL or a repository name from ``~/.pypirc``; ``index_url``
    is its PEP 503 simple index when it cannot be derived from the upload URL.
    """
    step = on_step or (lambda name: None)
    dist = Path(dist).resolve()
    version = _valid_version(version)
    if index_url and not repository:
        raise UsageError("--index-url is only used with --repository", "add --repository")
    index = resolve_index(repository, index_url) if repository else None
    with tempfile.TemporaryDirectory(prefix="nbprod-publish-") as scratch:
        work = Path(scratch)
        step("generate the package")
        extracted = extract(notebook, run, work / "project", version=version)
        project = extracted.path
        version = _version_of(project)
        distribution = extracted.package.replace("_", "-")
        _refuse_in_dist(dist, distribution, version)
        if index:
            checking = f"check that {distribution} {version} is new on {index.simple}"
            step(checking)
            _refuse_on_index(checking, index, distribution, version)
        step("build sdist and wheel")
        built = work / "built"
        _run(
            "build sdist and wheel",
            [
                sys.executable,
                "-m",
                "build",
                "--sdist",
                "--wheel",
                "--outdir",
                str(built),
                str(project),
            ],
        )
        wheel = next(built.glob("*.whl"))
        step("install the wheel into a clean venv")
        python = _clean_venv(work / "venv", f"{wheel}[test]")
        step("run the package's tests in that venv")
        checks = work / "checks"
        shutil.copytree(project / "tests", checks / "tests")
        tests = _run(
            "run the package's tests",
            [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
            cwd=checks,
        )
        files = sorted(built.iterdir())
        if index:
            step(f"upload to {index.upload}")
            _upload(index, files, version)
        step(f"place the files in {dist}")
        placed = _place(files, dist)
    return Published(
        distribution,
        version,
        extracted.run_id,
        placed,
        tests.strip().splitlines()[-1],
        index.upload if index else None,
    )


def resolve_index(repository: str, index_url: str | None = None) -> Index:
    """The index behind ``repository``: an upload URL, or a name twine finds in ~/.pypirc."""
    import twine.exceptions
    import twine.utils

    username = password = None
    if "://" in repository:
        if urlsplit(repository).password is not None:
            raise UsageError(
                "the repository URL holds a password",
                f"remove it from the URL and give the credentials through {_CREDENTIALS}",
            )
        upload, args = repository, ("--repository-url", repository)
    else:
        try:
            config = twine.utils.get_repository_from_config(
                twine.utils.DEFAULT_CONFIG_FILE, repository
            )
        except twine.exceptions.InvalidConfiguration as error:
            raise UsageError(
                f"cannot use repository {repository!r}: {str(error).splitlines()[0]}",
                "pass the upload URL, or add the repository to ~/.pypirc",
            ) from None
        upload, args = str(config["repository"]), ("--repository", repository)
        username, password = config.get("username"), config.get("password")
    # Same precedence as twine: the environment before ~/.pypirc.
    username = os.environ.get("TWINE_USERNAME") or username
    password = os.environ.get("TWINE_PASSWORD") or password
    simple = index_url or simple_index(upload)
    return Index(upload, simple.rstrip("/") + "/", args, username, password)


def simple_index(upload_url: str) -> str:
    """The PEP 503 simple index beside an upload URL of a known shape.

    Warehouse (PyPI, TestPyPI) uploads to ``https://upload.pypi.org/legacy/`` and serves
    ``https://pypi.org/simple/``; pypiserver uploads to its root and serves ``/simple/``.
    Other servers lay out their URLs in their own ways: they need ``--index-url``.
    """
    parts = urlsplit(upload_url)
    head, _, last = parts.path.rstrip("/").rpartition("/")
    if last == "legacy":
        host = parts.netloc.removeprefix("upload.")
        return urlunsplit((parts.scheme, host, f"{head}/simple/", "", ""))
    if not parts.path.strip("/"):
        return urlunsplit((parts.scheme, parts.netloc, "/simple/", "", ""))
    raise UsageError(
        f"cannot tell the simple index of {upload_url}",
        "pass --index-url with the index's PEP 503 simple URL (the one pip's --index-url takes)",
    )


def _valid_version(version: str | None) -> str | None:
    """A user's version, checked and normalised as build and the indexes will read it."""
    if version is None:
        return None
    try:
        return str(Version(version))
    except InvalidVersion:
        raise UsageError(
            f"--version {version!r} is not a valid version (PEP 440)",
            "use a version like 1.2.0, 2.0.0rc1 or 0.20261123.1",
        ) from None


def _version_of(project: Path) -> str:
    import tomllib

    data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    return str(data["project"]["version"])


def _refuse_in_dist(dist: Path, distribution: str, version: str) -> None:
    """A published version is never overwritten."""
    if dist.is_dir() and Version(version) in _releases(
        (p.name for p in dist.iterdir()), distribution
    ):
        raise OutputExists(
            f"{distribution} {version} is already in {dist}",
            "a published version is never overwritten: pass --version with a new version",
        )


def _refuse_on_index(step: str, index: Index, distribution: str, version: str) -> None:
    """Ask the index's simple page before anything is built: 404 means a new project."""
    page = f"{index.simple}{canonicalize_name(distribution)}/"
    passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    if index.username and index.password:
        # Sent only if the index asks (401), as twine's credentials for the same index.
        passwords.add_password(None, index.simple, index.username, index.password)
    opener = urllib.request.build_opener(
        urllib.request.HTTPBasicAuthHandler(passwords), _SameHostRedirects()
    )
    request = urllib.request.Request(page, headers={"Accept": "text/html"})
    try:
        with opener.open(request, timeout=60) as response:
            text = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        if error.code == 404 or 300 <= error.code < 400:
            return
        raise PublishFailed(
            step,
            f"{page} answered HTTP {error.code} {error.reason}",
            f"check the index URL and the credentials ({_CREDENTIALS}), or pass --index-url; "
            f"{_UNCHANGED}",
        ) from None
    except OSError as error:  # URLError, timeouts, refused connections
        raise PublishFailed(
            step,
            f"could not read {page}: {getattr(error, 'reason', error)}",
            f"check that the index is reachable, or pass --index-url; {_UNCHANGED}",
        ) from None
    links = _Links()
    links.feed(text)
    if Version(version) in _releases(links.files, distribution):
        raise OutputExists(
            f"{distribution} {version} is already on the index {page}",
            "a published version is never overwritten: pass --version with a new version",
        )


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects within the index only: pypiserver redirects a project it does not
    hold to PyPI, whose answer says nothing about this index."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).netloc != urlsplit(req.full_url).netloc:
            return None  # urllib then raises HTTPError with the redirect's code
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Links(html.parser.HTMLParser):
    """File names of a PEP 503 project page: the last path part of each link."""

    def __init__(self) -> None:
        super().__init__()
        self.files: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.files.append(unquote(urlsplit(href).path.rsplit("/", 1)[-1]))


def _releases(files: Iterable[str], distribution: str) -> set[Version]:
    """The versions of ``distribution`` among wheel and sdist file names."""
    wanted = canonicalize_name(distribution)
    found: set[Version] = set()
    for file in files:
        try:
            if file.endswith(".whl"):
                name, version, _, _ = parse_wheel_filename(file)
            elif file.endswith((".tar.gz", ".zip")):
                name, version = parse_sdist_filename(file)
            else:
                continue
        except ValueError:  # not a distribution file name
            continue
        if name == wanted:
            found.add(version)
    return found


def _upload(index: Index, files: list[Path], version: str) -> None:
    """twine upload, never prompting; PyPI's refusal of a local version gets its own fix."""
    step = f"upload to {index.upload}"
    command = [sys.executable, "-m", "twine", "--no-color", "upload", "--non-interactive"]
    command += ["--disable-progress-bar", *index.twine_args, *map(str, files)]
    try:
        _run(step, command, credentials=True, secrets=[index.password])
    except PublishFailed as failed:
        parsed = Version(version)
        if parsed.local and "local version" in failed.output.lower():
            hint = (
                f"this index refuses local versions like {version}: pass --version with a "
                f"public one, e.g. {parsed.public}; {_UNCHANGED}"
            )
        else:
            hint = f"fix the cause above (credentials come from {_CREDENTIALS}); {_UNCHANGED}"
        raise PublishFailed(failed.step, failed.output, hint) from None


def _run(
    step: str,
    command: list[str],
    cwd: Path | None = None,
    *,
    credentials: bool = False,
    secrets: Iterable[str | None] = (),
) -> str:
    """Run one step; only the upload (``credentials``) sees twine's password."""
    env = {**os.environ, "PYTHONNOUSERSITE": "1"}
    if not credentials:
        env.pop("TWINE_PASSWORD", None)
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    hidden = [os.environ.get("TWINE_PASSWORD"), *secrets]
    if result.returncode != 0:
        raise PublishFailed(step, _scrub(result.stdout + result.stderr, hidden))
    return _scrub(result.stdout, hidden)


def _scrub(text: str, secrets: Iterable[str | None]) -> str:
    """Twine never prints a password; make sure no output nbprod shows can either."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    return text


def _clean_venv(folder: Path, requirement: str) -> Path:
    """A venv with nothing but the wheel and what it pins (uv when available: fast, cached)."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv:
        _run(
            "create a clean venv", [uv, "venv", "--quiet", "--python", sys.executable, str(folder)]
        )
        python = folder / "bin" / "python"
        _run(
            "install the wheel",
            [uv, "pip", "install", "--quiet", "--python", str(python), requirement],
        )
        return python
    _run("create a clean venv", [sys.executable, "-m", "venv", str(folder)])
    python = folder / "bin" / "python"
    _run("install the wheel", [str(python), "-m", "pip", "install", "--quiet", requirement])
    return python


def _place(files: list[Path], dist: Path) -> list[Path]:
    """Copy into ``dist`` under temporary names, then rename: no half-written files."""
    dist.mkdir(parents=True, exist_ok=True)
    placed = []
    for file in files:
        target = dist / file.name
        partial = dist / f".{file.name}.partial"
        shutil.copyfile(file, partial)
        os.replace(partial, target)
        placed.append(target)
    return placed
