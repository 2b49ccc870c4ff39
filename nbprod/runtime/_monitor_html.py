"""A drift report as one self-contained HTML file: inline CSS and SVG, no script, no
font or image fetched, so it opens the same from a mail attachment or a CI artifact.

Part of ``monitor``; ``render`` takes ``Report.to_dict()``.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

_TRAIN, _PRODUCTION = "#4c78a8", "#f58518"
_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
       margin: 24px auto; max-width: 1080px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 0 0 6px; }
.meta { color: #59636e; margin-bottom: 16px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; font-weight: 600;
         font-size: 13px; vertical-align: middle; }
.badge.drift { background: #ffebe9; color: #b3261e; }
.badge.ok { background: #dafbe1; color: #116329; }
table { border-collapse: collapse; margin: 8px 0 16px; width: 100%; }
th, td { text-align: left; padding: 4px 10px; border-bottom: 1px solid #d1d9e0; }
th { background: #f6f8fa; font-weight: 600; } td.num { text-align: right;
     font-variant-numeric: tabular-nums; }
tr.drift td.verdict { color: #b3261e; font-weight: 600; } tr.ok td.verdict { color: #116329; }
section { border: 1px solid #d1d9e0; border-radius: 6px; padding: 12px 16px; margin: 14px 0; }
section.drift { border-left: 4px solid #b3261e; }
.facts { color: #59636e; margin: 2px 0 8px; } .legend span { margin-right: 14px; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
svg text { font: 10px system-ui, sans-serif; fill: #59636e; }
"""


def render(report: dict[str, Any]) -> str:
    """The HTML text of a report (``Report.to_dict()``)."""
    drifted = report["drifted"]
    window = f"{report['since'] or 'the first record'} to {report['until'] or 'the last'}"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>Drift report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Drift report "
        + _badge(drifted, ", ".join(report["drifted_columns"]) or "schema rejections")
        + "</h1>",
        f'<div class="meta">{report["requests"]} logged requests, {escape(window)}; '
        f"training profile: {escape(report['profile_source'] or 'unknown')}</div>",
        _summary(report),
        _rejections(report["rejections"]),
    ]
    parts += [_column(column) for column in report["columns"]]
    if report["unprofiled"]:
        names = ", ".join(escape(name) for name in report["unprofiled"])
        parts.append(f'<p class="facts">Logged but not in the training profile: {names}</p>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _badge(drifted: bool, what: str) -> str:
    if drifted:
        return f'<span class="badge drift">DRIFT: {escape(what)}</span>'
    return '<span class="badge ok">no drift</span>'


def _summary(report: dict[str, Any]) -> str:
    rows = [
        "<table><thead><tr><th>column</th><th>role</th><th>kind</th><th>rows</th>"
        "<th>statistic</th><th>value</th><th>threshold</th><th>verdict</th></tr></thead><tbody>"
    ]
    for column in report["columns"]:
        main = column["checks"][0] if column["checks"] else None
        cells = [
            f'<a href="#{_anchor(column)}">{escape(column["name"])}</a>',
            escape(column["role"]),
            escape(column["kind"]),
            f'<td class="num">{column["rows"]}</td>',
            escape(main["name"]) if main else "-",
            f'<td class="num">{_number(main["value"]) if main else "-"}</td>',
            f'<td class="num">{_number(main["threshold"]) if main else "-"}</td>',
            f'<td class="verdict">{escape(column["verdict"])}</td>',
        ]
        rows.append(_row(cells, column["drifted"]))
    check = report["rejections"]["check"]
    if check is not None:
        verdict = ("DRIFT: " if check["drifted"] else "") + (
            f"{_number(check['value'])} of requests refused" if check["value"] else "ok"
        )
        cells = [
            "schema rejections",
            "-",
            "-",
            f'<td class="num">{report["requests"]}</td>',
            "rejections",
            f'<td class="num">{_number(check["value"])}</td>',
            f'<td class="num">{_number(check["threshold"])}</td>',
            f'<td class="verdict">{escape(verdict)}</td>',
        ]
        rows.append(_row(cells, check["drifted"]))
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _row(cells: list[str], drifted: bool) -> str:
    tds = "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells)
    return f'<tr class="{"drift" if drifted else "ok"}">{tds}</tr>'


def _rejections(rejections: dict[str, Any]) -> str:
    by_field = rejections["by_field"]
    if not by_field:
        return ""
    rows = "".join(
        f'<tr><td>{escape(name)}</td><td class="num">{count}</td></tr>'
        for name, count in sorted(by_field.items(), key=lambda kv: -kv[1])
    )
    return (
        "<h2>Requests refused by the schema check</h2>"
        f"<table><thead><tr><th>field</th><th>requests</th></tr></thead><tbody>{rows}"
        "</tbody></table>"
    )


def _column(column: dict[str, Any]) -> str:
    drifted = column["drifted"]
    facts = [
        f"{column['role']}, {column['kind']}, {column['rows']} rows",
        f"null rate {_percent(column['null_rate_train'])} in training, "
        f"{_percent(column['null_rate_production'])} in production",
    ]
    if column["outside_range"] is not None:
        facts.append(f"{_percent(column['outside_range'])} outside the training range")
    if column["unseen"]:
        values = ", ".join(f"{escape(k)} ({v})" for k, v in column["unseen"].items())
        facts.append(f"not seen in training: {values}")
    checks = "".join(
        f'<tr class="{"drift" if c["drifted"] else "ok"}"><td>{escape(c["name"])}</td>'
        f'<td class="num">{_number(c["value"])}</td>'
        f'<td class="num">{_number(c["threshold"])}</td>'
        f'<td class="num">{_p(c["p_value"])}</td>'
        f'<td class="verdict">{"DRIFT" if c["drifted"] else "ok"}</td></tr>'
        for c in column["checks"]
    )
    table = (
        "<table><thead><tr><th>check</th><th>value</th><th>threshold</th><th>p-value</th>"
        f"<th>verdict</th></tr></thead><tbody>{checks}</tbody></table>"
        if checks
        else ""
    )
    return (
        f'<section id="{_anchor(column)}" class="{"drift" if drifted else "ok"}">'
        f"<h2>{escape(column['name'])} {_badge(drifted, column['verdict'][7:])}</h2>"
        f'<div class="facts">{escape("; ".join(facts[:3]))}'
        f"{'; ' + facts[3] if len(facts) > 3 else ''}</div>"
        f"{_chart(column)}{table}</section>"
    )


def _chart(column: dict[str, Any]) -> str:
    """Training and production shares per bucket, as bars side by side."""
    labels, train, production = (
        column["buckets"],
        column["train_shares"],
        column["production_shares"],
    )
    if not labels:
        return ""
    slot, height, top, bottom, left = max(24, min(70, 900 // len(labels))), 150, 16, 62, 40
    width = left + slot * len(labels) + 10
    peak = max([*train, *production, 1e-9])
    scale = height / peak
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top + height + bottom}"'
        f' role="img" aria-label="distribution of {escape(column["name"])}">'
    ]
    for fraction in (0, 0.5, 1):
        y = top + height - fraction * peak * scale
        parts.append(
            f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d1d9e0"/>'
            f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{_percent(fraction * peak)}'
            "</text>"
        )
    bar = slot * 0.38
    for i, label in enumerate(labels):
        x = left + i * slot + slot * 0.1
        for offset, share, color, who in (
            (0, train[i], _TRAIN, "training"),
            (bar, production[i], _PRODUCTION, "production"),
        ):
            h = share * scale
            parts.append(
                f'<rect x="{x + offset:.1f}" y="{top + height - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{escape(label)}: {who} '
                f"{_percent(share)}</title></rect>"
            )
        cx, cy = left + i * slot + slot / 2, top + height + 10
        parts.append(
            f'<text x="{cx:.1f}" y="{cy:.1f}" text-anchor="end" '
            f'transform="rotate(-35 {cx:.1f} {cy:.1f})">{escape(_short(label))}</text>'
        )
    parts.append("</svg>")
    legend = (
        '<div class="legend">'
        f'<span><i class="swatch" style="background:{_TRAIN}"></i>training</span>'
        f'<span><i class="swatch" style="background:{_PRODUCTION}"></i>production</span></div>'
    )
    return legend + "".join(parts)


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def _anchor(column: dict[str, Any]) -> str:
    return escape(f"{column['role']}-{column['name']}".replace(" ", "_"), quote=True)


def _short(label: str) -> str:
    return label if len(label) <= 18 else label[:17] + "…"


def _number(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3g}"


def _percent(share: float) -> str:
    return "-" if share is None or math.isnan(share) else f"{100 * share:.1f} %"
