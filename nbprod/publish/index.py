"""The package index target: find the index, refuse a version it holds, upload with twine.

``--repository`` is an upload URL or a repository name from ``~/.pypirc``; the index's
PEP 503 simple page tells, before anything is built, whether a version is already
there. Credentials are twine's own (``TWINE_USERNAME``/``TWINE_PASSWORD``,
``~/.pypirc``, keyring); nbprod never prints them, and scrubs the password from any
output it shows.
"""

from __future__ import annotations

import html.parser
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.client import HTTPMessage
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit, urlunsplit

from packaging.utils import canonicalize_name
from packaging.version import Version

from nbprod.exceptions import UsageError
from nbprod.publish.steps import (
    UNCHANGED,
    PublishFailed,
    Step,
    already_published,
    releases,
    run_step,
)

_CREDENTIALS = "TWINE_USERNAME/TWINE_PASSWORD, ~/.pypirc or keyring"


@dataclass(frozen=True)
class Index:
    """A package index to upload to: twine's arguments and the simple index to check."""

    upload: str  # the upload URL, shown in steps and messages
    simple: str  # the PEP 503 simple index (ends with "/")
    twine_args: tuple[str, ...]  # ("--repository-url", URL) or ("--repository", NAME)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    name = "index"

    def describe(self) -> str:
        return f"upload to {self.upload}"

    def refuse_existing(self, distribution: str, version: str, step: Step) -> None:
        """Ask the index's simple page before anything is built: 404 means a new project."""
        checking = f"check that {distribution} {version} is new on {self.simple}"
        step(checking)
        page = f"{self.simple}{canonicalize_name(distribution)}/"
        passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        if self.username and self.password:
            # Sent only if the index asks (401), as twine's credentials for the same index.
            passwords.add_password(None, self.simple, self.username, self.password)
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
                checking,
                f"{page} answered HTTP {error.code} {error.reason}",
                f"check the index URL and the credentials ({_CREDENTIALS}), or pass "
                f"--index-url; {UNCHANGED}",
            ) from None
        except OSError as error:  # URLError, timeouts, refused connections
            raise PublishFailed(
                checking,
                f"could not read {page}: {getattr(error, 'reason', error)}",
                f"check that the index is reachable, or pass --index-url; {UNCHANGED}",
            ) from None
        links = _Links()
        links.feed(text)
        if Version(version) in releases(links.files, distribution):
            raise already_published(distribution, version, f"on the index {page}")

    def deliver(self, files: list[Path], version: str) -> str:
        """twine upload, never prompting; PyPI's refusal of a local version gets its own fix."""
        command = [sys.executable, "-m", "twine", "--no-color", "upload", "--non-interactive"]
        command += ["--disable-progress-bar", *self.twine_args, *map(str, files)]
        try:
            run_step(self.describe(), command, credentials=True, secrets=[self.password])
        except PublishFailed as failed:
            parsed = Version(version)
            if parsed.local and "local version" in failed.output.lower():
                hint = (
                    f"this index refuses local versions like {version}: pass --version with a "
                    f"public one, e.g. {parsed.public}; {UNCHANGED}"
                )
            else:
                hint = f"fix the cause above (credentials come from {_CREDENTIALS}); {UNCHANGED}"
            raise PublishFailed(failed.step, failed.output, hint) from None
        return self.upload


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
