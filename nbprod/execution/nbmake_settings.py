"""nbmake's settings in a notebook, honoured when nbprod executes one without roles.

nbmake reads the notebook's ``metadata.execution`` (``timeout`` in seconds,
``allow_errors``) and, per cell, ``metadata.nbmake``: ``mock`` (globals set to these
values once the cell ran) and ``post_cell_execute`` (code run after the cell; its
older name is ``post_command``). A repository that tests its notebooks with nbmake
keeps passing, and failing, for the same reasons under ``nbprod test --all``.

Each cell's follow-up becomes a code cell of its own after it, in the copy that
runs: it runs only when the cell succeeded, so an error of the cell is not masked,
and a failure in it names the cell it follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nbformat.v4 import new_code_cell

FOLLOWS = "nbprod_follows"  # metadata of an added cell: the number of the cell it follows
SKIP = "skip-execution"


@dataclass(frozen=True)
class Execution:
    """The notebook's own ``metadata.execution``: what nbmake calls its settings."""

    timeout: float | None = None
    allow_errors: bool = False


def execution_settings(metadata: Any) -> Execution:
    execution = metadata.get("execution") if isinstance(metadata, dict) else None
    if not isinstance(execution, dict):
        return Execution()
    timeout = execution.get("timeout")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        timeout = None  # nbmake's -1 (no limit) included: then nbprod's own --timeout
    return Execution(
        timeout=float(timeout) if timeout is not None else None,
        allow_errors=execution.get("allow_errors") is True,
    )


def add_follow_ups(node: Any) -> list[int]:
    """Insert each cell's nbmake follow-up after it (in place); return, for every cell
    of the result, the number of the user's cell it is or follows (1-based)."""
    cells, numbers = [], []
    for number, cell in enumerate(node.cells, 1):
        cells.append(cell)
        numbers.append(number)
        code = follow_up(cell)
        if code:
            added = new_code_cell(code)
            added.metadata[FOLLOWS] = number
            if SKIP in (cell.get("metadata", {}).get("tags") or []):
                added.metadata["tags"] = [SKIP]
            cells.append(added)
            numbers.append(number)
    node.cells = cells
    return numbers


def follow_up(cell: Any) -> str:
    """The code nbmake runs after ``cell``: its mocks, then its post_cell_execute."""
    settings: Any = (
        cell.get("metadata", {}).get("nbmake") if cell.get("cell_type") == "code" else None
    )
    if not isinstance(settings, dict):
        return ""
    mock = settings.get("mock")
    lines = (
        [f"{name} = {value!r}" for name, value in mock.items()] if isinstance(mock, dict) else []
    )
    for key in ("post_cell_execute", "post_command"):
        code = settings.get(key)
        if isinstance(code, list):
            lines += [str(line) for line in code]
        elif isinstance(code, str):
            lines.append(code)
    return "\n".join(lines)
