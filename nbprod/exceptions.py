"""Every error nbprod raises on purpose.

Errors about a cell read ``cell 7 (train), line 3: message`` and carry the cell's
1-based position, its role, the line within the cell and the name involved, so the
CLI, the server and the UI can all point at the same place. ``exit_code`` is the
one mapping from error to process exit status; the CLI reads it and nothing else.
"""

from __future__ import annotations

import shlex
from typing import Any


class NbprodError(Exception):
    """Base of every error nbprod raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"

    def __reduce__(self) -> tuple[type[NbprodError], tuple[str, str | None]]:
        return (type(self), (self.message, self.hint))

    def to_json(self) -> dict[str, Any]:
        """The error as plain data, for ``--json`` output, the server and the jobs."""
        return {"type": type(self).__name__, "message": self.message, "hint": self.hint}


class UsageError(NbprodError):
    """The command was asked for something it cannot do (bad option, unknown name)."""

    exit_code = 2


class NotebookFileError(UsageError):
    """The notebook file is missing, is not JSON, or is not a notebook nbprod can read."""


class CellError(NbprodError):
    """An error located in one cell of the notebook."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        cell: int,
        role: str | None = None,
        line: int | None = None,
        name: str | None = None,
    ) -> None:
        self.cell = cell
        self.role = role
        self.line = line
        self.name = name
        super().__init__(message, hint)

    @property
    def location(self) -> str:
        role = f" ({self.role})" if self.role else " (untagged)"
        line = f", line {self.line}" if self.line else ""
        return f"cell {self.cell}{role}{line}"

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}"
        return text if not self.hint else f"{text}\n  fix: {self.hint}"

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "cell": self.cell,
            "role": self.role,
            "line": self.line,
            "name": self.name,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_cell_error, (type(self), self.message, self.hint, self.__dict__))


def _rebuild_cell_error(
    cls: type[CellError], message: str, hint: str | None, state: dict[str, object]
) -> CellError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class CheckFailed(NbprodError):
    """Static analysis found problems that make the notebook impossible to extract."""

    def __init__(self, problems: list[str], notebook: str = "NOTEBOOK") -> None:
        self.problems = problems
        self.notebook = notebook
        count = len(problems)
        super().__init__(
            f"the notebook has {count} problem{'s' if count != 1 else ''}:\n" + "\n".join(problems),
            f"run `nbprod check {shlex.quote(notebook)}` and fix each problem it lists",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems, self.notebook))


class NotExtractable(CheckFailed):
    """A run of a notebook that had check problems: it ran and was recorded, but no
    package can be made of it (``extract`` and ``publish`` refuse it with the reasons)."""

    def __init__(self, run_id: str, problems: list[str], notebook: str = "NOTEBOOK") -> None:
        super().__init__(problems, notebook)
        self.run_id = run_id
        count = len(problems)
        self.message = (
            f"run {run_id} is not extractable: the notebook had {count} "
            f"problem{'s' if count != 1 else ''} when it ran:\n" + "\n".join(problems)
        )
        self.hint = (
            f"fix them (`nbprod check {shlex.quote(notebook)}` lists them), run the notebook "
            "again and extract that run"
        )
        self.args = (self.message,)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.run_id, self.problems, self.notebook))


class ExecutionFailed(CellError):
    """A cell raised (or the kernel died) while nbprod ran the notebook."""

    run_id: str | None = None
    run_folder: object = None
    ename: str | None = None  # the exception the cell raised, when it raised one
    evalue: str | None = None


class RunNotFound(UsageError):
    """No run with the given id exists for this notebook."""


class ArtifactError(NbprodError):
    """An artifact could not be saved, or failed its hash check."""


class OutputExists(UsageError):
    """The output folder exists and ``--force`` was not given."""


class JobNotFound(UsageError):
    """No background job with the given id is known."""


class Cancelled(BaseException):
    """A run or sweep was stopped on request (Ctrl-C, SIGTERM, a cancelled job).

    A BaseException like KeyboardInterrupt, so no ``except Exception`` swallows it."""


class PackageBroken(NbprodError):
    """The generated package failed to import, load its artifacts or replay parity."""
