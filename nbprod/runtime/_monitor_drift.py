"""The checks of one column against its training profile, and their statistics.

Part of ``monitor`` (see its docstring for the rules and their defaults); numpy,
pandas and ``math`` only: the p-values are computed here, without scipy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._profile import bin_counts

# Half a count added to every bin before shares are compared: PSI and JS stay finite
# when a bin is empty on one side, and an empty bin of a small sample counts little.
_SMOOTHING = 0.5
# Unseen values listed by name in a report (the rest are counted together).
_SHOWN_UNSEEN = 10


@dataclass
class Check:
    """One comparison of one column: its value, the threshold it was held to, and the
    p-value that says whether the difference could be chance (None: not a test)."""

    name: str
    value: float
    threshold: float
    p_value: float | None
    drifted: bool

    def __str__(self) -> str:
        sign = ">" if self.value > self.threshold else "<="
        p = "" if self.p_value is None else f", p={self.p_value:.2g}"
        return f"{self.name} {self.value:.3g} {sign} {self.threshold:g}{p}"


@dataclass
class ColumnDrift:
    """How one input column or prediction compares with its training profile."""

    name: str
    role: str  # "input" or "prediction"
    kind: str  # "numeric", "categorical" or "text"
    rows: int
    null_rate_train: float
    null_rate_production: float
    checks: list[Check] = field(default_factory=list)
    outside_range: float | None = None
    unseen: dict[str, int] = field(default_factory=dict)
    missing: bool = False
    # Shares per bucket (training bins, or values) for the report's chart.
    buckets: list[str] = field(default_factory=list)
    train_shares: list[float] = field(default_factory=list)
    production_shares: list[float] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return self.missing or any(check.drifted for check in self.checks)

    @property
    def main(self) -> Check | None:
        """The check the summary shows: the distribution's, else the null rate's."""
        return self.checks[0] if self.checks else None

    @property
    def verdict(self) -> str:
        if self.missing:
            return "DRIFT: not in the logs"
        if self.rows == 0:
            return "no data"
        fired = [str(check) for check in self.checks if check.drifted]
        return "DRIFT: " + "; ".join(fired) if fired else "ok"


# -- comparing one column -------------------------------------------------------------------
def missing_column(name: str, role: str, summary: Mapping[str, Any], rows: int) -> ColumnDrift:
    return ColumnDrift(
        name,
        role,
        str(summary.get("kind")),
        rows,
        float(summary.get("null_rate") or 0.0),
        math.nan,
        missing=rows > 0,
    )


def compare_column(
    name: str, role: str, summary: Mapping[str, Any], values: pd.Series, limits: dict[str, float]
) -> ColumnDrift:
    kind = str(summary.get("kind"))
    rows = len(values)
    present = values[values.notna()]
    train_nulls = float(summary.get("null_rate") or 0.0)
    result = ColumnDrift(
        name, role, kind, rows, train_nulls, 1 - len(present) / rows if rows else 0.0
    )
    if rows == 0:
        return result
    alpha = limits["p_value"]
    train_count = int(summary.get("count") or 0) + int(summary.get("nulls") or 0)
    if kind == "numeric":
        _numeric(result, summary, pd.to_numeric(present, errors="coerce").dropna(), limits)
    elif kind == "categorical":
        _categorical(result, summary, _as_text(present), limits)
    result.checks.append(
        _rise(
            "null_rate",
            rows - len(present),
            rows,
            train_nulls,
            train_count,
            limits["null_rate"],
            alpha,
        )
    )
    return result


def _numeric(
    result: ColumnDrift, summary: Mapping[str, Any], values: pd.Series, limits: dict[str, float]
) -> None:
    alpha = limits["p_value"]
    array = values.to_numpy(dtype=float)
    bins = summary.get("bins") or {}
    edges = [float(e) for e in bins.get("edges") or []]
    train = np.asarray(bins.get("counts") or [], dtype=float)
    if len(train) == len(edges) + 1 and train.sum() > 0:
        production = np.asarray(bin_counts(array, edges), dtype=float)
        value = psi(train, production)
        p = chi_square_p(train, production)
        result.checks.append(
            Check("psi", value, limits["psi"], p, value > limits["psi"] and p < alpha)
        )
        result.buckets = _bin_labels(edges)
        result.train_shares = _shares(train)
        result.production_shares = _shares(production)
    reference = reference_cdf(summary)
    count = int(summary.get("count") or 0)
    if reference is not None and len(array) and count:
        distance = ks_distance(array, *reference)
        p = ks_p(distance, len(array) * count / (len(array) + count))
        ks = limits["ks"]
        result.checks.append(Check("ks", distance, ks, p, distance > ks and p < alpha))
    low, high = summary.get("min"), summary.get("max")
    if low is not None and high is not None and len(array) and count:
        outside = int(((array < float(low)) | (array > float(high))).sum())
        result.outside_range = outside / len(array)
        # A sample of the training distribution itself falls outside the range of `count`
        # training values with probability 2 / (count + 1).
        expected = min(1.0, 2 / (count + 1))
        result.checks.append(
            _rise(
                "out_of_range", outside, len(array), expected, None, limits["out_of_range"], alpha
            )
        )


def _categorical(
    result: ColumnDrift, summary: Mapping[str, Any], values: pd.Series, limits: dict[str, float]
) -> None:
    alpha = limits["p_value"]
    known = {str(k): int(v) for k, v in (summary.get("values") or {}).items()}
    other = int(summary.get("other") or 0)
    counts = values.value_counts()
    unseen = {str(k): int(v) for k, v in counts.items() if str(k) not in known}
    buckets = list(known)
    train = [float(known[k]) for k in buckets]
    production = [float(counts.get(k, 0)) for k in buckets]
    if other:  # training had values it did not list: unseen ones may be among them
        buckets.append("(other)")
        train.append(float(other))
        production.append(float(sum(unseen.values())))
    else:
        for name, count in unseen.items():
            buckets.append(name)
            train.append(0.0)
            production.append(float(count))
    train_array, production_array = np.asarray(train), np.asarray(production)
    if train_array.sum() > 0 and production_array.sum() > 0:
        value = js_distance(train_array, production_array)
        p = chi_square_p(train_array, production_array)
        result.checks.append(
            Check("js", value, limits["js"], p, value > limits["js"] and p < alpha)
        )
    result.unseen = dict(sorted(unseen.items(), key=lambda kv: -kv[1])[:_SHOWN_UNSEEN])
    hidden = sum(unseen.values()) - sum(result.unseen.values())
    if hidden:
        result.unseen["(more)"] = hidden
    total = int(counts.sum())
    if total:
        listed = sum(known.values())
        result.checks.append(
            _rise(
                "unseen",
                sum(unseen.values()),
                total,
                other / (listed + other or 1),
                listed + other,
                limits["unseen"],
                alpha,
            )
        )
    shown = np.argsort(-(train_array + production_array), kind="stable")[:30]
    result.buckets = [buckets[i] for i in shown]
    result.train_shares = [_shares(train_array)[i] for i in shown]
    result.production_shares = [_shares(production_array)[i] for i in shown]


def _rise(
    name: str,
    hits: int,
    total: int,
    baseline: float,
    baseline_total: int | None,
    threshold: float,
    alpha: float,
) -> Check:
    """How much a share (nulls, values out of range, unseen values) rose above its
    training ``baseline``, and the one-sided p-value of that rise (the baseline
    estimated from ``baseline_total`` values, or exact when None)."""
    share = hits / total
    rise = share - baseline
    p = rise_p(hits, total, baseline, baseline_total)
    return Check(name, rise, threshold, p, rise > threshold and p < alpha)


def _as_text(values: pd.Series) -> pd.Series:
    """Values as the profile writes them (``str``); whole floats as integers, since an
    integer column with nulls comes back from Parquet as floats."""
    if pd.api.types.is_float_dtype(values.dtype) and (values == values.round()).all():
        return values.astype("int64").astype(str)
    return values.astype(str)


def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return [float(c / total) if total else 0.0 for c in counts]


def _bin_labels(edges: Sequence[float]) -> list[str]:
    if not edges:
        return ["all"]
    labels = [f"≤ {edges[0]:.4g}"]
    labels += [f"{a:.4g} to {b:.4g}" for a, b in itertools.pairwise(edges)]
    return [*labels, f"> {edges[-1]:.4g}"]


# -- statistics (numpy and math only) -------------------------------------------------------
def psi(train: np.ndarray, production: np.ndarray) -> float:
    """Population stability index of two count vectors on the same bins."""
    p = (train + _SMOOTHING) / (train.sum() + _SMOOTHING * len(train))
    q = (production + _SMOOTHING) / (production.sum() + _SMOOTHING * len(production))
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(train: np.ndarray, production: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two count vectors."""
    p, q = train / train.sum(), production / production.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nonzero = a > 0
        return float(np.sum(a[nonzero] * np.log2(a[nonzero] / m[nonzero])))

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def chi_square_p(train: np.ndarray, production: np.ndarray) -> float:
    """p-value of the chi-square test that production counts follow the training shares.

    The training shares are themselves estimated from ``train.sum()`` values, often far
    fewer than production has, and the profile's bins are cut at training quantiles:
    the statistic divides by the variance of the difference of the two samples,
    ``n t (1 + n / N)``, not by production's alone (a pooled two-sample table would
    take a narrow bin the training sample cut for an impossible one).
    """
    n, size = production.sum(), train.sum()
    if n == 0 or size == 0 or len(train) < 2:
        return 1.0
    shares = (train + _SMOOTHING) / (size + _SMOOTHING * len(train))
    expected = n * shares
    statistic = float(np.sum((production - expected) ** 2 / (expected * (1 + n / size))))
    return chi_square_sf(statistic, len(train) - 1)


def chi_square_sf(x: float, df: int) -> float:
    """P(X > x) for X ~ chi-square(df): the regularized upper incomplete gamma function
    Q(df/2, x/2), by its series below a + 1 and its continued fraction above."""
    a, x = df / 2, x / 2
    if x <= 0:
        return 1.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1 / a
        n = a
        for _ in range(10_000):
            n += 1
            term *= x / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1 - total * math.exp(log_front))
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_front) * h)


def reference_cdf(summary: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """The training distribution function rebuilt from the profile: knots at the
    minimum, the quantiles, the bin edges (with their exact cumulative counts) and the
    maximum, linear between. None when the column has ties (quantiles that repeat):
    its distribution has steps that no interpolation rebuilds, and the bins' PSI
    speaks for it."""
    quantiles = {float(k): v for k, v in (summary.get("quantiles") or {}).items()}
    values = [float(v) for v in quantiles.values() if v is not None]
    if len(values) < 3 or len(set(values)) < len(values):
        return None
    points = [(float(v), q) for q, v in quantiles.items() if v is not None]
    if summary.get("min") is not None and summary.get("max") is not None:
        points += [(float(summary["min"]), 0.0), (float(summary["max"]), 1.0)]
    bins = summary.get("bins") or {}
    counts = np.asarray(bins.get("counts") or [], dtype=float)
    edges = bins.get("edges") or []
    if len(counts) == len(edges) + 1 and counts.sum() > 0:
        cumulative = np.cumsum(counts)[:-1] / counts.sum()
        points += [(float(e), float(f)) for e, f in zip(edges, cumulative, strict=True)]
    frame = pd.DataFrame(points, columns=["x", "f"]).groupby("x", sort=True)["f"].mean()
    knots = frame.index.to_numpy(dtype=float)
    shares = np.maximum.accumulate(np.clip(frame.to_numpy(dtype=float), 0, 1))
    return knots, shares


def ks_distance(values: np.ndarray, knots: np.ndarray, shares: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of a sample to a piecewise-linear distribution."""
    ordered = np.sort(values)
    n = len(ordered)
    reference = np.interp(ordered, knots, shares, left=0.0, right=1.0)
    above = np.arange(1, n + 1) / n - reference
    below = reference - np.arange(n) / n
    return float(max(above.max(), below.max()))


def ks_p(distance: float, n: float) -> float:
    """Asymptotic p-value of a KS distance for effective sample size ``n``: Kolmogorov's
    series with Stephens' small-sample correction."""
    root = math.sqrt(n)
    scaled = (root + 0.12 + 0.11 / root) * distance
    if scaled < 0.3:
        return 1.0
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * scaled * scaled) for k in range(1, 101))
    return min(1.0, max(0.0, 2 * total))


def rise_p(hits: int, total: int, baseline: float, baseline_total: int | None) -> float:
    """One-sided p-value that ``hits`` of ``total`` is a share above ``baseline``
    (normal approximation; two-sample when the baseline was itself counted)."""
    share = hits / total
    if baseline_total:
        pooled = (hits + baseline * baseline_total) / (total + baseline_total)
        variance = pooled * (1 - pooled) * (1 / total + 1 / baseline_total)
    else:
        variance = baseline * (1 - baseline) / total
    if variance <= 0:
        return 0.0 if share > baseline else 1.0
    return 0.5 * math.erfc((share - baseline) / math.sqrt(2 * variance))
