"""What a failed run says: the cell that stopped it (``failing_cell``, nbprod's cells
told from the user's), the error's name, message and line in the user's cell
(``traceback_line``, also for errors IPython reports on stderr only), and the
``ExecutionFailed`` that names them (``cell_failure``). Shared by ``nbprod run`` and the
execute stage of ``nbprod test``.
"""

from __future__ import annotations

import re
from typing import Any

import nbformat

from nbprod.analysis.parsing import leading_blank_lines
from nbprod.exceptions import ExecutionFailed, NbprodError
from nbprod.execution.instrument import INJECTED, SOURCE_CELL
from nbprod.notebook import Notebook
from nbprod.runtime.artifacts import UnsupportedArtifact

RAISES = "raises-exception"  # the cell tag nbclient (and nbmake) let raise
ANSI = re.compile(r"\x1b\[[0-9;]*m")


_CELL_LINE = re.compile(r"(?:Cell In\s*\[\d*\]|<ipython-input-\d+-\w+>), line (\d+)")


def failing_cell(executed: nbformat.NotebookNode) -> dict[str, Any] | None:
    """The first cell whose error stopped the run (a raises-exception cell did not)."""
    for cell in executed.cells:
        error = error_output(cell)
        if error is not None or cell.metadata.get("papermill", {}).get("exception") is True:
            traceback = list(error.get("traceback", [])) if error is not None else []
            # IPython reports some errors (a magic that does not exist) on stderr only
            ename, evalue = _stderr_error(cell) if error is None else (None, None)
            return {
                "cell": cell.metadata.get(SOURCE_CELL),
                "injected": bool(cell.metadata.get(INJECTED)),
                "line": traceback_line(traceback),
                "ename": error.get("ename") if error is not None else ename,
                "evalue": error.get("evalue") if error is not None else evalue,
            }
    return None


def _stderr_error(cell: nbformat.NotebookNode) -> tuple[str | None, str | None]:
    """``Name: message`` from the last line a cell printed on stderr, if it is one."""
    lines = [
        line
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stderr"
        for line in "".join(output.get("text", "")).splitlines()
        if line.strip()
    ]
    found = (
        re.fullmatch(r"(\w+(?:Error|Exception)): (.*)", ANSI.sub("", lines[-1])) if lines else None
    )
    return (found[1], found[2]) if found else (None, None)


def error_heading(ename: str, evalue: str) -> str:
    """``Name: value``, or the name alone for an exception raised without a message."""
    return f"{ename}: {evalue}" if evalue else ename


def error_output(cell: nbformat.NotebookNode) -> Any:
    """The cell's error output, unless the cell is tagged raises-exception."""
    if RAISES in cell.get("metadata", {}).get("tags", []):
        return None
    outputs = cell.get("outputs", [])
    return next((output for output in outputs if output.get("output_type") == "error"), None)


def error_traceback(cell: nbformat.NotebookNode) -> list[str]:
    """The traceback of the cell's error output (see ``error_output``), if it has one."""
    error = error_output(cell)
    return list(error.get("traceback", [])) if error is not None else []


def traceback_line(traceback: list[str]) -> int | None:
    """The line of the cell a kernel's traceback points at (IPython's own count)."""
    match = _CELL_LINE.search(ANSI.sub("", "\n".join(traceback)))
    return int(match.group(1)) if match else None


def cell_failure(
    notebook: Notebook, executed: nbformat.NotebookNode | None, ename: str, evalue: str
) -> NbprodError:
    failing = executed.metadata.get("nbprod_failing") if executed is not None else None
    if failing is None or failing["injected"] or failing["cell"] is None:
        # an artifact no format can store: the recorder names it and the cell that made it
        # ("cell 4, line 2: artifact `x` (type) cannot be saved ...\n  fix: ...")
        unsaved = re.fullmatch(
            r"cell (\d+), line (\d+): (artifact `(\w+)`.*?)\n  fix: (.*)", evalue, re.DOTALL
        )
        if ename == UnsupportedArtifact.__name__ and unsaved is not None:
            number = int(unsaved[1])
            made = next((c for c in notebook.cells if c.number == number), None)
            error = ExecutionFailed(
                unsaved[3],
                unsaved[5],
                cell=number,
                role=made.role if made else None,
                line=int(unsaved[2]),
                name=unsaved[4],
            )
            error.ename, error.evalue = ename, evalue
            return error
        return ExecutionFailed(
            f"nbprod could not record the run: {ename}: {evalue}",
            "see the executed notebook in the run folder",
            cell=notebook.cells[-1].number if notebook.cells else 0,
        )
    # papermill names the first error output, which may be an allowed one: use the cell's own
    if failing.get("ename") is not None:
        ename, evalue = failing["ename"], failing["evalue"] or ""
    number = int(failing["cell"])
    cell = next(c for c in notebook.cells if c.number == number)
    line = failing["line"]
    error = ExecutionFailed(
        error_heading(ename, evalue),
        "fix the cell and run again; the partly executed notebook is in the run folder",
        cell=number,
        role=cell.role,
        line=line + leading_blank_lines(cell.source) if line else line,
    )
    error.ename, error.evalue = ename, evalue
    return error
