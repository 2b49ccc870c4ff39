"""Requests name files relative to the server's root; nothing outside it is reachable.

``confine`` refuses absolute paths, ``..`` segments and anything whose real location
(symbolic links followed) is not inside the real root, so a link in the root that points
elsewhere leads nowhere. Messages never show the server's own absolute paths.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from tornado.web import HTTPError


class ApiError(HTTPError):
    """A refused request, answered as ``{"message", "hint", "type"}``: a path that would
    leave the root (403), a malformed one (400), and every other refusal of the routes."""

    def __init__(
        self, status: int, message: str, hint: str | None = None, kind: str | None = None
    ) -> None:
        super().__init__(status, "%s", message)  # the message is data, never a format
        self.message = message
        self.hint = hint
        self.kind = kind


def confine(root: str | Path, relative: object, field: str = "path") -> Path:
    """The real path of ``relative`` ('/'-separated, as JupyterLab's contents API writes
    it) inside ``root``; ApiError if it is not a relative path that stays inside."""
    if not isinstance(relative, str):
        raise ApiError(400, f"field {field!r} must be a string: a path relative to the root")
    if "\x00" in relative:
        raise ApiError(400, f"field {field!r} holds a NUL character")
    hint = "give the path relative to the server's root, as the file browser shows it"
    if PurePosixPath(relative).is_absolute() or PureWindowsPath(relative).anchor:
        raise ApiError(403, f"{field} {relative!r} is an absolute path", hint)
    if ".." in relative.replace("\\", "/").split("/"):
        raise ApiError(403, f"{field} {relative!r} leaves the server's root ('..')", hint)
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise ApiError(
            403,
            f"{field} {relative!r} leads outside the server's root (a symbolic link)",
            "only files inside the server's root can be used",
        )
    return target
