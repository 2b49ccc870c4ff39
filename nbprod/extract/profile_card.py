"""The training profile in the model card: one row per column, a small histogram each.

People look at distributions, they do not read them: each profiled column gets an SVG
of a few bars, written beside the card (``profile/<group>-<column>.svg``) and linked
relatively. The SVGs are built here by hand, the same bytes for the same profile.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

FOLDER = "profile"
WIDTH, HEIGHT = 120, 36
BAR = "#4c78a8"
OTHER = "#b0b0b0"  # the values summed as "other"
MAX_BARS = 12  # most frequent values drawn for a label or short text
TOP_VALUES = 3  # most frequent values named in the card's table


@dataclass(frozen=True)
class ProfileRow:
    """One line of the card's profile table."""

    group: str  # "input" or "prediction"
    name: str
    kind: str
    missing: str
    summary: str
    image: str | None  # relative to the card


def write_profile_images(profile: dict[str, Any] | None, root: Path) -> list[ProfileRow]:
    """The card's rows of ``profile``, each column's histogram written under ``root``."""
    if not profile:
        return []
    rows: list[ProfileRow] = []
    taken: set[str] = set()
    for group, key in (("input", "columns"), ("prediction", "prediction")):
        for name, column in profile.get(key, {}).items():
            svg = histogram_svg(name, column)
            image = None
            if svg is not None:
                image = f"{FOLDER}/{_file_name(f'{group}-{name}', taken)}.svg"
                (root / image).parent.mkdir(exist_ok=True)
                (root / image).write_text(svg, encoding="utf-8")
            rows.append(
                ProfileRow(
                    group,
                    _cell(name),
                    column["kind"],
                    f"{column['null_rate']:.1%}",
                    _cell(_summary(column)),
                    image,
                )
            )
    return rows


def profile_summary(profile: dict[str, Any] | None) -> dict[str, Any] | None:
    """What ``info()`` says of the profile: its size and columns by kind."""
    if not profile:
        return None
    return {
        "rows": profile["rows"],
        "source": profile["source"],
        "columns": {name: c["kind"] for name, c in profile["columns"].items()},
        "prediction": {name: c["kind"] for name, c in profile["prediction"].items()},
    }


def histogram_svg(name: str, column: dict[str, Any]) -> str | None:
    """A small bar chart of one profiled column (None for text: nothing to draw).

    A number's bins are drawn to scale between its min and max, each bar as high as
    its density (count over width), so the quantile bins, which hold about as many
    values each, still show the shape; without a finite range, one bar per bin.
    """
    if column["kind"] == "numeric":
        bars = _numeric_bars(column)
        title = f"{name}: {column['count']} values in {len(bars)} bins"
    elif column["kind"] == "categorical":
        items = list(column["values"].items())
        bars = [(1.0, float(n), BAR, f"{value}: {n}") for value, n in items[:MAX_BARS]]
        rest = column["other"] + sum(n for _, n in items[MAX_BARS:])
        if rest:
            bars.append((1.0, float(rest), OTHER, f"other values: {rest}"))
        title = f"{name}: {len(items)} values"
    else:
        return None
    return _svg(title, bars)


def _numeric_bars(column: dict[str, Any]) -> list[tuple[float, float, str, str]]:
    edges, counts = column["bins"]["edges"], column["bins"]["counts"]
    low, high = column["min"], column["max"]
    bounds = [low, *edges, high] if edges else [low, high]
    labels = [
        f"{_number(a)} .. {_number(b)}: {n}"
        for (a, b), n in zip(pairwise(bounds), counts, strict=True)
    ]
    finite = low is not None and high is not None and math.isfinite(low) and math.isfinite(high)
    if not finite or high <= low:
        return [(1.0, float(n), BAR, label) for n, label in zip(counts, labels, strict=True)]
    least = (high - low) / 100  # a bin of one repeated value still shows, as a spike
    widths = [max(b - a, least) for a, b in pairwise(bounds)]
    return [
        (width, n / width, BAR, label)
        for width, n, label in zip(widths, counts, labels, strict=True)
    ]


def _svg(title: str, bars: list[tuple[float, float, str, str]]) -> str:
    total = sum(width for width, *_ in bars) or 1.0
    tallest = max((height for _, height, *_ in bars), default=0.0) or 1.0
    x = 0.0
    rects = []
    for width, height, color, label in bars:
        w = width / total * WIDTH
        h = height / tallest * (HEIGHT - 2)
        rects.append(
            f'<rect x="{x:.2f}" y="{HEIGHT - 1 - h:.2f}" width="{max(w - 0.5, 0.5):.2f}" '
            f'height="{h:.2f}" fill="{color}"><title>{escape(label)}</title></rect>'
        )
        x += w
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img">\n'
        f"<title>{escape(title)}</title>\n"
        + "".join(f"{rect}\n" for rect in rects)
        + f'<line x1="0" y1="{HEIGHT - 0.5}" x2="{WIDTH}" y2="{HEIGHT - 0.5}" stroke="#666"/>\n'
        "</svg>\n"
    )


def _summary(column: dict[str, Any]) -> str:
    if column["kind"] == "numeric":
        parts = [_number(column[key]) for key in ("min", "mean", "max")]
        return " / ".join(parts)
    if column["kind"] == "text":
        return f"{column['distinct']} distinct values"
    count = column["count"] or 1
    top = list(column["values"].items())
    shares = [f"{value} {n / count:.0%}" for value, n in top[:TOP_VALUES]]
    more = len(top) - TOP_VALUES + (1 if column["other"] else 0)
    return ", ".join(shares) + (f" (+{more} more)" if more > 0 else "")


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _file_name(text: str, taken: set[str]) -> str:
    """A file name of letters, digits, ``-`` and ``_`` for ``text``, unique (whatever the
    file system's case rules) among ``taken``, which learns it."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:60] or "column"
    name, n = stem, 1
    while name.lower() in taken:
        n += 1
        name = f"{stem}-{n}"
    taken.add(name.lower())
    return name
