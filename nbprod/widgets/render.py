"""HTML for the panel, from the same JSON the REST API answers: ``Analysis.to_json()``,
``run_json`` rows and ``Job.to_json()``. Pure functions, so what the panel shows is
tested without a front end; every value is escaped.

The styles are inline: classic Notebook, VS Code and JupyterLab load no stylesheet of
ours, and a ``<style>`` tag in one output would leak into the whole page.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from nbprod.runs.store import lower_is_better

RED = "#c62828"
GREEN = "#2e7d32"
MUTED = "opacity: 0.7"
_TABLE = "border-collapse: collapse; margin: 4px 0; font-size: 90%"
_CELL = "padding: 2px 8px; text-align: left; vertical-align: top; border-bottom: 1px solid #8884"


def esc(value: Any) -> str:
    return "" if value is None else html.escape(str(value))


def code(value: Any) -> str:
    return f"<code>{esc(value)}</code>"


def muted(text: str) -> str:
    return f'<div style="{MUTED}">{text}</div>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], name: str, rest: str = "") -> str:
    """A table of HTML cells (escape them first); ``name`` marks it for tests and styles.
    ``rest``: more rows, already HTML (a failed run's error line)."""
    head = "".join(f'<th style="{_CELL}">{h}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_CELL}">{c}</td>' for c in row) + "</tr>" for row in rows
    )
    return (
        f'<div style="overflow-x: auto"><table data-nbprod="{name}" style="{_TABLE}">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}{rest}</tbody></table></div>"
    )


def where(error: dict[str, Any]) -> str:
    """``cell 7 (train), line 3``, as nbprod's errors name a place; empty without a cell."""
    if not error.get("cell"):
        return ""
    text = f"cell {error['cell']} ({error.get('role') or 'untagged'})"
    return text + (f", line {error['line']}" if error.get("line") else "")


def failure(error: dict[str, Any], title: str = "") -> str:
    """An error as nbprod reports it: where, message, fix, and the output it printed."""
    place = where(error)
    message = f"{place}: {error.get('message') or ''}" if place else error.get("message") or ""
    parts = [f"<b>{esc(title)}</b> " if title else "", esc(message)]
    if error.get("hint"):
        parts.append(f"<div>fix: {esc(error['hint'])}</div>")
    if error.get("output"):
        parts.append(f'<pre style="max-height: 20em; overflow: auto">{esc(error["output"])}</pre>')
    if error.get("traceback"):
        parts.append(
            f"<details><summary>traceback</summary><pre>{esc(error['traceback'])}</pre></details>"
        )
    style = f"color: {RED}; white-space: pre-wrap"
    return f'<div data-nbprod="error" style="{style}">{"".join(parts)}</div>'


def value(item: Any) -> str:
    """A parameter or metric as the notebook would write it."""
    if isinstance(item, float):
        return f"{item:.6g}"
    return repr(item)


def order(metric: str) -> str:
    return "lower is better" if lower_is_better(metric) else "higher is better"


# -- check ---------------------------------------------------------------------------------


def problems(items: list[dict[str, Any]], name: str) -> str:
    return table(
        ["cell", "role", "line", "message", "fix"],
        (
            [
                esc(p["cell"]),
                esc(p["role"] or "untagged"),
                esc(p["line"] or ""),
                esc(p["message"]),
                esc(p["hint"] or ""),
            ]
            for p in items
        ),
        name,
    )


def check(analysis: dict[str, Any]) -> str:
    """Problems and warnings, the stages (roles with their cells) and the artifacts."""
    errors, warnings = analysis["problems"], analysis["warnings"]
    package = code(analysis["package"])
    if errors:
        count = f"{len(errors)} problem{'s' * (len(errors) != 1)}"
        summary = f'<b style="color: {RED}">{count}</b>: not extractable yet'
    else:
        entry = analysis["entry_point"]
        summary = (
            f'<b style="color: {GREEN}">ok</b>: extractable as package {package}, entry point '
            + (code(entry["signature"]) if entry else "?")
        )
    if warnings:
        summary += f", {len(warnings)} warning{'s' * (len(warnings) != 1)}"
    parts = [f'<div data-nbprod="check-summary">{summary}</div>']
    if errors:
        parts += ["<h4>Problems</h4>", problems(errors, "problems")]
    if warnings:
        parts += ["<h4>Warnings</h4>", problems(warnings, "warnings")]
    parts += ["<h4>Stages</h4>", stages(analysis["roles"])]
    parts += ["<h4>Artifacts: training → prediction</h4>", artifacts(analysis["artifacts"])]
    return "".join(parts)


def stages(roles: dict[str, Any]) -> str:
    if not roles:
        return muted("no cell is tagged with a role yet")
    return table(
        ["role", "cells", "reads", "defines"],
        (
            [
                f"<b>{esc(role)}</b>",
                esc(", ".join(map(str, info["cells"]))),
                esc(", ".join(info["inputs"])),
                esc(", ".join(info["outputs"])),
            ]
            for role, info in roles.items()
        ),
        "stages",
    )


def artifacts(items: list[dict[str, Any]]) -> str:
    if not items:
        return muted("none: prediction reads nothing that training made")
    return table(
        ["name", "made in", "line"],
        ([code(a["name"]), esc(where(a)), esc(a["line"])] for a in items),
        "artifacts",
    )


# -- runs ----------------------------------------------------------------------------------


def runs(rows: list[dict[str, Any]], metric: str | None, declared: Sequence[str] = ()) -> str:
    """The runs table: status, parameters (in the notebook's order), metrics (the sorted
    one marked), seconds; under a failed run its error and executed notebook; under the
    table why the runs marked not extractable are."""
    if not rows:
        return muted("no runs yet")
    seen = dict.fromkeys(name for row in rows for name in row["parameters"])
    names = [n for n in declared if n in seen] + [n for n in seen if n not in declared]
    metrics = list(dict.fromkeys(name for row in rows for name in row["metrics"]))
    arrow = {m: (" ▲" if lower_is_better(m) else " ▼") if m == metric else "" for m in metrics}
    headers = [
        "status",
        "run",
        *map(esc, names),
        *(f'<span title="{order(m)}">{esc(m)}{arrow[m]}</span>' for m in metrics),
        "seconds",
    ]
    body = []
    for row in rows:
        cells = [
            status(row["status"]) + not_extractable(row.get("not_extractable") or []),
            code(row["id"]),
            *(esc(value(row["parameters"][n])) if n in row["parameters"] else "" for n in names),
            *(esc(value(row["metrics"][m])) if m in row["metrics"] else "" for m in metrics),
            esc(f"{row['duration']:.1f}") if row.get("duration") is not None else "",
        ]
        body.append(
            "<tr>"
            + "".join(f'<td style="{_CELL}">{c}</td>' for c in cells)
            + "</tr>"
            + (run_error(row, len(cells)) if row.get("error") else "")
        )
    return table(headers, [], "runs", "".join(body)) + not_extractable_reasons(rows)


def status(text: str) -> str:
    color = {"succeeded": GREEN, "failed": RED}.get(text)
    return f'<span style="color: {color}">{esc(text)}</span>' if color else esc(text)


def not_extractable(reasons: Sequence[str]) -> str:
    """A mark for a run no package can be made of; its reasons show on hover."""
    if not reasons:
        return ""
    shown = esc("\n".join(reasons))
    return f' <span data-nbprod="not-extractable" title="{shown}">· not extractable</span>'


SHOWN_REASONS = 3  # the rest are in the check tab, or on hover


def _reasons(items: Sequence[str], hover: str) -> str:
    shown = "".join(f"<li>{esc(item)}</li>" for item in items[:SHOWN_REASONS])
    more = len(items) - SHOWN_REASONS
    if more > 0:
        shown += f'<li title="{esc(hover)}">and {more} more</li>'
    return f'<ul style="margin: 2px 0; padding-left: 1.5em; white-space: pre-wrap">{shown}</ul>'


def not_extractable_note(problems: Sequence[dict[str, Any]]) -> str:
    """By the sweep's Start: a notebook with check problems runs, but its runs will be
    recorded as not extractable; the first problems say why."""
    if not problems:
        return ""
    lines = [f"{where(p)}: {p['message']}" if where(p) else p["message"] for p in problems]
    return (
        f'<div data-nbprod="not-extractable-note" style="{MUTED}">The runs will be recorded '
        "as <b>not extractable</b>: extract and publish refuse them until the check is ok."
        f"{_reasons(lines, 'see the check tab')}</div>"
    )


def not_extractable_reasons(rows: Sequence[dict[str, Any]]) -> str:
    """Under the runs table, why the marked runs are not extractable: once per distinct
    list of reasons (a sweep's runs share theirs; a row each would repeat them)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for row in rows:
        if row.get("not_extractable"):
            groups.setdefault(tuple(row["not_extractable"]), []).append(row["id"])
    parts = []
    for reasons, ids in groups.items():
        if len(ids) == len(rows):
            who = "this run" if len(ids) == 1 else f"all {len(ids)} runs"
        else:
            more = f" and {len(ids) - 4} more" if len(ids) > 4 else ""
            who = f"run{'s' * (len(ids) != 1)} {', '.join(ids[:4])}{more}"
        them, they = ("it", "it") if len(ids) == 1 else ("them", "they")
        problem = "this problem" if len(reasons) == 1 else "these problems"
        parts.append(
            f'<div data-nbprod="not-extractable-reasons" data-runs="{esc(" ".join(ids))}">'
            f"<b>not extractable</b>: {esc(who)} (extract and publish refuse {them}); the "
            f"notebook had {problem} when {they} ran:{_reasons(reasons, chr(10).join(reasons))}"
            "</div>"
        )
    return "".join(parts)


def run_error(row: dict[str, Any], width: int) -> str:
    error = row["error"]
    message = error.get("message") or ""
    text = f"{where(error)}: {message}" if where(error) else message
    executed = row.get("executed_path")
    note = f"<div>executed notebook: {code(executed)}</div>" if executed else ""
    return (
        f'<tr data-nbprod="run-error" data-run="{esc(row["id"])}"><td colspan="{width}" '
        f'style="{_CELL}; color: {RED}; white-space: pre-wrap">{esc(text)}{note}</td></tr>'
    )


# -- jobs ----------------------------------------------------------------------------------


def sweep_status(job: dict[str, Any]) -> str:
    progress = job["progress"]
    text = (
        f"{progress['done']}/{progress['total']} done, {progress['failed']} failed, "
        f"{progress['running']} running: <b>{esc(job['status'])}</b>"
    )
    if job["status"] == "failed" and job.get("error"):
        text += failure(job["error"])
    return f'<span data-nbprod="sweep-status">{text}</span>'


def steps(job: dict[str, Any]) -> str:
    """A publish's steps so far: ✓ done, … running, ✗ the one that failed."""
    names = job["progress"]["steps"]
    failed = job["status"] == "failed"
    items = []
    for number, name in enumerate(names, start=1):
        mark = "✓"
        if number == len(names) and job["status"] not in ("succeeded",):
            mark = "✗" if failed else ("…" if job["status"] == "running" else "·")
        items.append(f"<li>{mark} {esc(name)}</li>")
    return f'<ol data-nbprod="steps" style="margin: 4px 0">{"".join(items)}</ol>'


def published(job: dict[str, Any]) -> str:
    """The result of a publish job: its files and tests, or the step that failed."""
    if job["status"] == "failed" and job.get("error"):
        error = job["error"]
        step = f"failed at: {error['step']}" if error.get("step") else "failed"
        return failure(error, step)
    if job["status"] == "cancelled":
        return muted("cancelled")
    result = job.get("result")
    if job["status"] != "succeeded" or not result:
        return ""
    files = [str(f) for f in result.get("files", [])]
    lines = [f"published <b>{esc(result['package'])}</b> {esc(result['version'])}"]
    lines += [
        f'wheel <code data-nbprod="wheel">{esc(f)}</code>' for f in files if f.endswith(".whl")
    ]
    lines += [f"also {code(f)}" for f in files if not f.endswith(".whl")]
    lines.append(f'tests in a clean venv: <b data-nbprod="tests">{esc(result["tests"])}</b>')
    lines += [f"uploaded to {esc(u)}" for u in result.get("uploaded_to", [])]
    return '<div data-nbprod="published">' + "".join(f"<div>{x}</div>" for x in lines) + "</div>"
