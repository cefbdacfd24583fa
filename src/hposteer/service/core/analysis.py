"""Summaries of an optimisation for the web UI: even samples, parameter importance, chart axes.

Pure functions over plain values (no storage), so that they are tested without a database.

**Parameter importance** is the share of the variation of the loss that each parameter explains
on its own, estimated on (a sample of) the done points:

1. the losses are replaced by their ranks (ties share the mean rank), so that a few huge losses
   cannot dominate and the measure does not depend on the loss's scale;
2. the parameter's values are grouped: a categorical (or any non-numeric) parameter by value, a
   numeric one into up to 10 bins of equal count by the values' order;
3. the importance is the **ω² (omega squared) of a one-way analysis of variance** of the loss
   ranks by group: ``(SS_between - (k - 1) * MS_within) / (SS_total + MS_within)``, clamped at 0
   (η² corrected for the variance that k groups explain by chance). 0 means the loss does not
   depend on the parameter alone; 1 means the parameter decides the loss's rank completely.

It is a first-order (main-effect) measure, like the first-order indices of fANOVA: interactions
between parameters are not credited to either. For numeric parameters the Spearman rank
correlation with the loss is given too: its sign says whether larger values give larger losses.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

BINS = 10
MIN_POINTS = 10  # fewer done points than this: no importance (nothing to say yet)
LOG_METHODS = frozenset({"loguniform", "qloguniform", "lognormal", "qlognormal"})


def even_numbers(total: int, count: int) -> list[int]:
    """At most ``count`` numbers spread evenly over 1..total, always including 1 and ``total``."""
    if total <= 0 or count <= 0:
        return []
    if total <= count:
        return list(range(1, total + 1))
    if count == 1:
        return [total]
    step = (total - 1) / (count - 1)
    return sorted({1 + round(i * step) for i in range(count)})


def records(pairs: Iterable[tuple[int, float]], mode: str) -> list[tuple[int, float]]:
    """The (number, loss) pairs that beat every pair with a smaller number: the steps of the
    best-so-far curve. Records of a set grown by new pairs are the records of (old records + new
    pairs), so the curve is kept up to date from what completed since, exactly."""
    out: list[tuple[int, float]] = []
    for number, loss in sorted(set(pairs)):
        if not out or (loss > out[-1][1] if mode == "max" else loss < out[-1][1]):
            out.append((number, loss))
    return out


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        mean_rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            out[order[k]] = mean_rank
        i = j + 1
    return out


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _groups(values: Sequence[Any]) -> tuple[list[int], bool]:
    """Group index of each value, and whether the values were binned as numbers."""
    if values and all(is_number(v) for v in values):
        distinct = len(set(values))
        if distinct <= BINS:
            keys = sorted(set(values))
            index = {v: i for i, v in enumerate(keys)}
            return [index[v] for v in values], True
        value_ranks = ranks([float(v) for v in values])
        n = len(values)
        return [min(int((r - 1) * BINS / n), BINS - 1) for r in value_ranks], True
    keys_text = [json.dumps(v, sort_keys=True) for v in values]
    index_of: dict[str, int] = {}
    return [index_of.setdefault(k, len(index_of)) for k in keys_text], False


def omega_squared(groups: Sequence[int], y: Sequence[float]) -> float:
    """ω² of a one-way analysis of variance of ``y`` by ``groups``, clamped at 0."""
    n = len(y)
    mean = sum(y) / n
    total = sum((v - mean) ** 2 for v in y)
    sums: dict[int, float] = defaultdict(float)
    counts: dict[int, int] = defaultdict(int)
    for g, v in zip(groups, y, strict=True):
        sums[g] += v
        counts[g] += 1
    k = len(counts)
    if k < 2 or total <= 0 or n <= k:
        return 0.0
    between = sum(counts[g] * (sums[g] / counts[g] - mean) ** 2 for g in counts)
    within_ms = (total - between) / (n - k)
    return max(0.0, (between - (k - 1) * within_ms) / (total + within_ms))


def spearman(x: Sequence[float], y_ranks: Sequence[float]) -> float | None:
    """Spearman's rank correlation of ``x`` with values whose ranks are ``y_ranks``."""
    if len(x) < 3:
        return None
    x_ranks = ranks(x)
    n = len(x)
    mx = my = (n + 1) / 2
    cov = sum((a - mx) * (b - my) for a, b in zip(x_ranks, y_ranks, strict=True))
    vx = sum((a - mx) ** 2 for a in x_ranks)
    vy = sum((b - my) ** 2 for b in y_ranks)
    return None if vx <= 0 or vy <= 0 else cov / math.sqrt(vx * vy)


@dataclass(frozen=True)
class Importance:
    name: str
    importance: float  # ω², 0..1
    spearman: float | None  # numeric parameters only
    groups: int  # bins or categories used


def importance(names: Sequence[str], samples: Sequence[tuple[Mapping[str, Any], float]]) -> list[Importance]:
    """Importance of each parameter from (params, loss) samples, most important first."""
    if len(samples) < MIN_POINTS:
        return []
    y = ranks([loss for _, loss in samples])
    out = []
    for name in names:
        values = [params.get(name) for params, _ in samples]
        groups, numeric = _groups(values)
        rho = spearman([float(v) for v in values if v is not None], y) if numeric else None
        out.append(Importance(name, round(omega_squared(groups, y), 4), rho and round(rho, 3), len(set(groups))))
    return sorted(out, key=lambda i: -i.importance)


def axis(name: str, spec: Mapping[str, Any] | None, values: Sequence[Any]) -> dict[str, Any]:
    """A parallel-coordinates axis: ``linear`` or ``log`` with its range, or ``category`` with its values.

    The search space gives the method and bounds; the sampled values widen them where they lie
    outside (normal distributions, q-rounding).
    """
    method = str((spec or {}).get("method", ""))
    dimension = (spec or {}).get("dimension") or {}
    if method in ("categorical", "fixed") or not all(is_number(v) for v in values if v is not None):
        known = list(dimension.get("categories", [])) if method == "categorical" else []
        texts = [json.dumps(v, sort_keys=True) for v in known]
        for v in values:
            text = json.dumps(v, sort_keys=True)
            if text not in texts:
                texts.append(text)
        return {"name": name, "kind": "category", "categories": texts}
    numbers = [float(v) for v in values if v is not None]
    low = [float(dimension["low"])] if is_number(dimension.get("low")) else []
    high = [float(dimension["high"])] if is_number(dimension.get("high")) else []
    lo, hi = min(numbers + low, default=0.0), max(numbers + high, default=1.0)
    kind = "log" if method in LOG_METHODS and lo > 0 else "linear"
    return {"name": name, "kind": kind, "min": lo, "max": hi}


def axis_value(ax: Mapping[str, Any], value: Any) -> float | int | None:
    """A value as the axis plots it: the number itself, or the index of its category."""
    if value is None:
        return None
    if ax["kind"] == "category":
        text = json.dumps(value, sort_keys=True)
        categories = ax["categories"]
        return int(categories.index(text)) if text in categories else None
    return float(value) if is_number(value) else None
