"""Drift of production against the training profile: ``drift_report(logs)``.

The package carries a profile of what the notebook predicted on (``profile.json``:
bins, quantiles, value counts and null rates, never rows). This module compares the
prediction logs that ``serve --log-dir`` and ``predict --log-dir`` write (or any frame
of inputs) with it, per input column and per prediction, and says which moved.

Every verdict needs two things: the change is larger than its threshold (it matters)
and it is unlikely to be chance (its p-value is below ``p_value``), so a small
training profile or a quiet hour of traffic does not raise false alarms, and a large
one does not flag a change too small to matter. The checks, with their defaults:

- numeric columns: PSI on the training bins (``psi`` 0.2, p-value of a chi-square
  test on the same bins) and the Kolmogorov-Smirnov distance to the training
  distribution rebuilt from the profile's quantiles and bins (``ks`` 0.1; only for
  columns without ties, where the rebuilt distribution is continuous); the share of
  values outside the training range (``out_of_range`` 0.05 above the share a sample
  of the training distribution itself would have);
- categorical columns: Jensen-Shannon distance, base 2, between the value shares
  (``js`` 0.1, chi-square p-value), values never seen in training their own bucket;
  the share of such values (``unseen`` 0.05);
- every column, text included: the rise of the null rate (``null_rate`` 0.05);
- the share of requests the server refused on their schema (``rejections`` 0.05).

Thresholds are overridden per column in the notebook's ``metadata.nbprod.monitor``
(``{"defaults": {...}, "columns": {"alcohol": {"psi": 0.1}}}``), which the package
ships as ``monitor.json``. Only numpy and pandas are needed; reading log files needs
pyarrow (the package's ``[monitor]`` extra). No scipy: the p-values are computed here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from ._monitor_drift import Check, ColumnDrift, compare_column, missing_column
from ._profile import FORMAT

__all__ = ["DEFAULTS", "Check", "ColumnDrift", "Report", "drift_report", "read_logs"]

DEFAULTS: dict[str, float] = {
    "psi": 0.2,
    "ks": 0.1,
    "js": 0.05,
    "null_rate": 0.05,
    "out_of_range": 0.05,
    "unseen": 0.05,
    "rejections": 0.05,
    "p_value": 0.001,
}
_HERE = Path(__file__).parent
LOG_SUFFIXES = (".parquet", ".arrows")


@dataclass
class Report:
    """The drift of every profiled column, the server's refusals, and the verdict."""

    columns: list[ColumnDrift]
    requests: int
    rejections: dict[str, int]
    rejection_check: Check | None
    since: str | None = None
    until: str | None = None
    source: str = ""
    unprofiled: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        rejected = self.rejection_check is not None and self.rejection_check.drifted
        return rejected or any(column.drifted for column in self.columns)

    @property
    def drifted_columns(self) -> list[str]:
        return [column.name for column in self.columns if column.drifted]

    def to_dict(self) -> dict[str, Any]:
        columns = []
        for column in self.columns:
            data = asdict(column)
            data.update(drifted=column.drifted, verdict=column.verdict)
            columns.append(data)
        rejection = None if self.rejection_check is None else asdict(self.rejection_check)
        return {
            "drifted": self.drifted,
            "drifted_columns": self.drifted_columns,
            "requests": self.requests,
            "since": self.since,
            "until": self.until,
            "profile_source": self.source,
            "rejections": {"by_field": self.rejections, "check": rejection},
            "columns": columns,
            "unprofiled": self.unprofiled,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_html(self) -> str:
        from ._monitor_html import render

        return render(self.to_dict())

    def __str__(self) -> str:
        header = ("column", "role", "kind", "rows", "statistic", "value", "threshold", "verdict")
        rows = [header]
        for column in self.columns:
            main = column.main
            rows.append(
                (
                    column.name,
                    column.role,
                    column.kind,
                    str(column.rows),
                    main.name if main else "-",
                    f"{main.value:.3g}" if main else "-",
                    f"{main.threshold:g}" if main else "-",
                    column.verdict,
                )
            )
        check = self.rejection_check
        if check is not None:
            refused = sum(self.rejections.values())
            verdict = "DRIFT: " + str(check) if check.drifted else "ok"
            rows.append(
                (
                    "(requests)",
                    "-",
                    "-",
                    str(self.requests),
                    "rejections",
                    f"{check.value:.3g}",
                    f"{check.threshold:g}",
                    verdict,
                )
            )
            if refused:
                fields = ", ".join(f"{k}: {v}" for k, v in sorted(self.rejections.items()))
                rows.append(("", "", "", "", "", "", "", f"refused {refused} ({fields})"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
            for row in rows
        ]
        window = f" from {self.since or 'the start'} to {self.until or 'now'}"
        verdict = (
            f"drift in {', '.join(self.drifted_columns) or 'the rejections'}"
            if self.drifted
            else "no drift"
        )
        lines.append(f"{self.requests} logged requests{window}: {verdict}")
        return "\n".join(line.rstrip() for line in lines)


# -- the entry point ------------------------------------------------------------------------
def drift_report(
    data: pd.DataFrame | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    profile: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    thresholds: Mapping[str, Any] | None = None,
    *,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
) -> Report:
    """Compare logged predictions (a frame of log records, or log files and folders)
    with the training profile (default: the one this package ships) under
    ``thresholds`` (default: the notebook's ``metadata.nbprod.monitor``).

    A frame without ``in.``/``out.`` columns is taken as the inputs themselves (and
    predictions under their own names). Raises ``ValueError`` for a bad time, a bad
    threshold or a profile it cannot read; ``FileNotFoundError`` for missing logs.
    """
    profile = load_profile(profile)
    thresholds = dict(thresholds) if thresholds is not None else _shipped_thresholds()
    check_thresholds(thresholds)
    now = datetime.now(UTC)
    start = parse_time(since, now) if since is not None else None
    end = parse_time(until, now) if until is not None else None
    frame = data if isinstance(data, pd.DataFrame) else read_logs(_paths(data))
    frame = _window(frame, start, end)
    accepted, requests, rejections = _split(frame)
    inputs, predictions = _named_columns(accepted, profile)
    columns = []
    for role, profiled, values in (
        ("input", profile.get("columns") or {}, inputs),
        ("prediction", profile.get("prediction") or {}, predictions),
    ):
        for name, summary in profiled.items():
            limits = _limits(thresholds, name)
            if name not in values and role == "prediction" and not _is_log(accepted):
                continue  # a frame of inputs alone: nothing to say of the predictions
            if name not in values:
                columns.append(missing_column(name, role, summary, len(accepted)))
            else:
                columns.append(compare_column(name, role, summary, values[name], limits))
    unprofiled = [f"in.{n}" for n in inputs if n not in (profile.get("columns") or {})]
    unprofiled += [f"out.{n}" for n in predictions if n not in (profile.get("prediction") or {})]
    rejection_check = None
    if requests:
        refused = sum(rejections.values())
        limit = _limits(thresholds, None)["rejections"]
        rejection_check = Check(
            "rejections", refused / requests, limit, None, refused / requests > limit
        )
    return Report(
        columns=columns,
        requests=requests,
        rejections=rejections,
        rejection_check=rejection_check,
        since=start.isoformat() if start else None,
        until=end.isoformat() if end else None,
        source=str(profile.get("source", "")),
        unprofiled=unprofiled,
    )


# -- the package's command line (`<pkg> monitor`) -------------------------------------------
DRIFTED = 3  # the exit status when something drifted; 0 when nothing did


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``<pkg> monitor`` (its ``cli.py`` adds the subcommand)."""
    parser.add_argument("logs", nargs="+", metavar="LOGS", help="log files or folders of them")
    parser.add_argument("--since", metavar="TIME", help="from: ISO 8601, or back from now: 24h, 7d")
    parser.add_argument("--until", metavar="TIME", help="to: ISO 8601, or back from now")
    parser.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    """``<pkg> monitor``: print the report, write the HTML; 3 when something drifted.
    A bad time, a missing file or a missing profile raises ``ValueError`` or
    ``FileNotFoundError``, which the package's CLI answers with exit status 2."""
    report = drift_report(args.logs, since=args.since, until=args.until)
    if args.html:
        Path(args.html).write_text(report.to_html(), encoding="utf-8")
    print(report.to_json() if args.json else report)
    if args.html and not args.json:
        print(f"report: {args.html}", file=sys.stderr)
    return DRIFTED if report.drifted else 0


# -- profile and thresholds -----------------------------------------------------------------
def load_profile(profile: Mapping[str, Any] | str | os.PathLike[str] | None) -> dict[str, Any]:
    """The profile as a dict: given, read from a file, or the one beside this module."""
    if isinstance(profile, Mapping):
        data = dict(profile)
    else:
        path = Path(profile) if profile is not None else _HERE / "profile.json"
        if not path.is_file():
            raise ValueError(
                f"no training profile at {path}: this package was extracted without one "
                "(extract it again with a current nbprod)"
                if profile is None
                else f"no training profile at {path}"
            )
        data = json.loads(path.read_text(encoding="utf-8"))
    if data is None:  # a package of a run that recorded no profile
        raise ValueError("this package carries no training profile: its run recorded none")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"the training profile has format {found!r}; this monitor reads {FORMAT}")
    return data


def _shipped_thresholds() -> dict[str, Any]:
    path = _HERE / "monitor.json"
    shipped = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    return shipped or {}


def check_thresholds(thresholds: Mapping[str, Any], where: str = "thresholds") -> None:
    """Raise ``ValueError`` naming the key when ``thresholds`` is not
    ``{"defaults": {NAME: number}, "columns": {COLUMN: {NAME: number}}}``."""
    unknown = sorted(set(thresholds) - {"defaults", "columns"})
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; use 'defaults' and 'columns'")
    groups = [("defaults", thresholds.get("defaults") or {})]
    columns = thresholds.get("columns") or {}
    if not isinstance(columns, Mapping):
        raise ValueError(f"{where}.columns must be an object of columns")
    groups += [(f"columns.{name}", limits) for name, limits in columns.items()]
    for label, limits in groups:
        if not isinstance(limits, Mapping):
            raise ValueError(f"{where}.{label} must be an object of thresholds")
        for key, value in limits.items():
            if key not in DEFAULTS:
                raise ValueError(
                    f"{where}.{label}: unknown threshold {key!r}; known: {', '.join(DEFAULTS)}"
                )
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{where}.{label}.{key} must be a number >= 0, not {value!r}")


def _limits(thresholds: Mapping[str, Any], column: str | None) -> dict[str, float]:
    limits = dict(DEFAULTS)
    limits.update(thresholds.get("defaults") or {})
    if column is not None:
        limits.update((thresholds.get("columns") or {}).get(column) or {})
    return limits


# -- time windows ---------------------------------------------------------------------------
_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)(?:\s+ago)?")


def parse_time(text: str | datetime, now: datetime | None = None) -> datetime:
    """An instant in UTC from ISO 8601 (``2024-05-01``, ``2024-05-01T12:00+02:00``; no
    zone means UTC), a duration back from now (``24h``, ``7d``, ``90 minutes ago``) or
    ``now``/``today``/``yesterday``. ``ValueError`` says what is accepted."""
    now = now or datetime.now(UTC)
    if isinstance(text, datetime):
        return text.replace(tzinfo=UTC) if text.tzinfo is None else text.astimezone(UTC)
    cleaned = str(text).strip().lower()
    named = {"now": now, "today": now.replace(hour=0, minute=0, second=0, microsecond=0)}
    named["yesterday"] = named["today"] - timedelta(days=1)
    if cleaned in named:
        return named[cleaned]
    relative = _RELATIVE.fullmatch(cleaned)
    if relative and relative.group(2) in _UNITS:
        return now - timedelta(seconds=float(relative.group(1)) * _UNITS[relative.group(2)])
    try:
        stamp = pd.Timestamp(str(text).strip())
    except ValueError:
        stamp = pd.NaT
    if pd.isna(stamp):
        raise ValueError(
            f"{text!r} is not a time: give ISO 8601 (2024-05-01, 2024-05-01T12:00:00Z) "
            "or a duration back from now (30m, 24h, 7d, 2w)"
        )
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _window(frame: pd.DataFrame, start: datetime | None, end: datetime | None) -> pd.DataFrame:
    if start is None and end is None:
        return frame
    if "timestamp" not in frame.columns:
        raise ValueError("--since/--until need log records with a 'timestamp' column")
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    keep = pd.Series(True, index=frame.index)
    if start is not None:
        keep &= stamps >= pd.Timestamp(start)
    if end is not None:
        keep &= stamps <= pd.Timestamp(end)
    return frame[keep.to_numpy()]


# -- reading logs ---------------------------------------------------------------------------
def _paths(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    items = [data] if isinstance(data, str | os.PathLike) else list(data)
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in LOG_SUFFIXES and p.is_file())
            if not found:
                raise FileNotFoundError(f"{path}: no *.parquet or *.arrows log files in it")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    if not files:
        raise FileNotFoundError("no log files given")
    return files


def read_logs(paths: Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """The records of log files, Parquet (closed) or Arrow IPC streams (being written;
    a batch torn by a crash at the end is left out), as one frame."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ImportError(
            "reading prediction logs needs pyarrow: install this package's [monitor] extra"
        ) from error
    tables = []
    for path in map(Path, paths):
        if path.suffix == ".arrows":
            tables.append(_stream_table(path, pa))
        else:
            try:
                tables.append(pq.read_table(path))
            except (pa.ArrowInvalid, OSError) as error:
                raise ValueError(f"{path} is not a Parquet log file: {error}") from error
    frames = [table.to_pandas() for table in tables if table.num_rows]
    if not frames:
        return pd.DataFrame({"status": pd.Series([], dtype="int16")})
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _stream_table(path: Path, pa: Any) -> Any:
    batches = []
    try:
        with path.open("rb") as stream, pa.ipc.open_stream(stream) as reader:
            schema = reader.schema
            while True:
                try:
                    batches.append(reader.read_next_batch())
                except StopIteration:
                    break
                except (pa.ArrowInvalid, OSError, EOFError):
                    break  # the torn tail of a crashed writer
    except (pa.ArrowInvalid, OSError) as error:
        if path.stat().st_size == 0:  # created, nothing flushed yet
            return pa.table({})
        raise ValueError(f"{path} is not an Arrow IPC stream log file: {error}") from error
    return pa.Table.from_batches(batches, schema=schema)


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, int, dict[str, int]]:
    """The accepted records, the number of requests, the refusals by field."""
    if "status" not in frame.columns:
        return frame, 0, {}
    status = pd.to_numeric(frame["status"], errors="coerce").fillna(0)
    refused = frame[status != 200]
    fields = refused.get("rejected_field", pd.Series([None] * len(refused), dtype=object))
    counts = fields.fillna("(no field)").astype(str).value_counts()
    return frame[status == 200], len(frame), {str(k): int(v) for k, v in counts.items()}


def _is_log(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` holds log records (``in.``/``out.`` columns), not bare inputs."""
    return any(str(c).startswith(("in.", "out.")) for c in frame.columns)


def _named_columns(
    frame: pd.DataFrame, profile: Mapping[str, Any]
) -> tuple[dict[str, pd.Series], dict[str, pd.Series]]:
    names = [str(c) for c in frame.columns]
    if _is_log(frame):
        inputs = {
            n[3:]: frame[c]
            for n, c in zip(names, frame.columns, strict=True)
            if n.startswith("in.")
        }
        outputs = {
            n[4:]: frame[c]
            for n, c in zip(names, frame.columns, strict=True)
            if n.startswith("out.")
        }
        return inputs, outputs
    profiled = profile.get("prediction") or {}
    by_name = {n: frame[c] for n, c in zip(names, frame.columns, strict=True)}
    inputs = {n: s for n, s in by_name.items() if n not in profiled}
    return inputs, {n: s for n, s in by_name.items() if n in profiled}
