"""Add nbprod's recording cells to a copy of the notebook before it runs.

The user's cells run unchanged; hidden cells around them call the in-kernel
recorder (``runtime/capture.py``). ``strip`` removes them again from the executed
notebook, so what is kept looks like the user's notebook with outputs.
"""

from __future__ import annotations

import copy

import nbformat
from nbformat.v4 import new_code_cell

from nbprod import runtime
from nbprod.analysis.analyzer import Analysis

INJECTED = "nbprod_injected"
SOURCE_CELL = "nbprod_cell"
RECORDER = "__nbprod__"


def instrument(
    node: nbformat.NotebookNode, analysis: Analysis, run_dir: str, package: str
) -> nbformat.NotebookNode:
    """A copy of ``node`` with the recorder set up, hooked around the cells, and finished."""
    copied = copy.deepcopy(node)
    entry = analysis.entry
    assert entry is not None, "instrument() needs an analysis with an entry point"
    cells: list[nbformat.NotebookNode] = [_injected(_setup(run_dir, f"{package}.pipeline"))]
    inference = [c.number for c in analysis.role_cells("inference")]
    defining_cell = entry.cell
    if entry.kind == "function":
        for info in analysis.role_cells("inference"):
            if entry.name in info.outputs:
                defining_cell = info.number
    last_statement_cell = entry.returns["cell"] if entry.returns else None
    for number, cell in enumerate(copied.cells, start=1):
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        cell.metadata[SOURCE_CELL] = number
        if entry.kind == "synthesized" and number == inference[0]:
            cells.append(_injected(f"{RECORDER}.before_inference(globals(), {entry.params!r})"))
        if number in analysis.test_fixtures:
            names = analysis.test_fixtures[number]
            cells.append(_injected(f"{RECORDER}.before_test(globals(), {number}, {names!r})"))
        cells.append(cell)
        if entry.kind == "function" and number == defining_cell:
            cells.append(_injected(f"{RECORDER}.wrap(globals(), {entry.name!r})"))
        if entry.kind == "synthesized" and number == last_statement_cell:
            assert entry.returns is not None
            returns = entry.returns["expression"] if entry.returns["kind"] == "assignment" else None
            cells.append(_injected(f"{RECORDER}.after_inference(globals(), {returns!r})"))
    modules = sorted({i.module for i in analysis.imports.values() if i.module})
    cells.append(_injected(f"{RECORDER}.record_environment({modules!r})"))
    cells.append(_injected(f"{RECORDER}.record_local_modules()"))
    samples = [n for info in analysis.role_cells("data") for n in info.outputs]
    origins = {n: [d.info.number, d.line] for n, d in sorted(analysis.artifacts.items())}
    cells.append(
        _injected(
            f"{RECORDER}.finish(globals(), {entry.name!r}, {entry.kind!r}, "
            f"{origins!r}, {analysis.metric_names!r}, {samples!r})"
        )
    )
    copied.cells = cells
    return copied


def instrument_plain(
    node: nbformat.NotebookNode, analysis: Analysis, run_dir: str
) -> nbformat.NotebookNode:
    """A copy of ``node`` that records only what any notebook has: the values of its
    ``metrics`` cells and ``nbprod.log_metric`` calls. For notebooks that cannot become a
    package (no roles, check problems): no parity, no artifacts, and the kernel needs
    nothing beyond the standard library (the recorder of metrics is all it loads)."""
    copied = copy.deepcopy(node)
    cells: list[nbformat.NotebookNode] = [_injected(_setup(run_dir, "", modules=("capture",)))]
    for number, cell in enumerate(copied.cells, start=1):
        if cell.cell_type == "code":
            cell.metadata[SOURCE_CELL] = number
        cells.append(cell)
    cells.append(_injected(f"{RECORDER}.finish_metrics(globals(), {analysis.metric_names!r})"))
    copied.cells = cells
    return copied


def strip(node: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove nbprod's cells and markers from an executed notebook (in place)."""
    node.cells = [c for c in node.cells if not c.metadata.get(INJECTED)]
    for cell in node.cells:
        cell.metadata.pop(SOURCE_CELL, None)
    return node


def _injected(source: str) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.metadata[INJECTED] = True
    cell.metadata["tags"] = ["nbprod-injected"]
    return cell


def _setup(run_dir: str, package_module: str, modules: tuple[str, ...] = runtime.KERNEL) -> str:
    return f"""\
{runtime.loader(modules)}
def __nbprod_setup():
    modules = __nbprod_load()
    return modules["capture"].Recorder(
        {run_dir!r},
        {package_module!r},
        modules.get("values"),
        modules.get("artifacts"),
        modules.get("schema"),
    )
{RECORDER} = __nbprod_setup()
del __nbprod_setup, __nbprod_load
"""
