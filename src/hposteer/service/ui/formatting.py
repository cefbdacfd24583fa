"""How values look on the pages (Jinja filters), and the geometry of the small server-drawn SVGs:
progress bars, site mixes and a point's attempts timeline. Times are seconds since the epoch from
the database clock; ages are measured against the database's ``now`` of the same answer."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

PROGRESS_PARTS = ("done", "failed", "running", "pending", "cancelled")


def loss(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.5g}"
    return f"{value:.3e}"


def duration(seconds: float | None) -> str:
    """12.3 s, 4 min 5 s, 3 h 2 min, 2 d 4 h."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = max(0.0, seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    if s < 86400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    return f"{int(s // 86400)} d {int(s % 86400 // 3600)} h"


def ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "—"
    seconds = now - ts
    if seconds < 5:
        return "just now"
    return " ".join(duration(seconds).split(" ")[:2]) + " ago"  # the larger unit: "4 min ago"


def utc(ts: float | None) -> str:
    if ts is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def value(v: Any) -> str:
    """A parameter value: numbers to 5 significant digits, the rest as JSON."""
    if isinstance(v, float):
        return f"{v:.5g}"
    if isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True)


def pretty(v: Any) -> str:
    return json.dumps(v, indent=2, sort_keys=True, default=str)


def ms(v: float | None) -> str:
    return "—" if v is None else f"{v:,.1f} ms"


def progress_parts(progress: Any) -> list[dict[str, Any]]:
    """Stacked-bar parts (x and width in %) of a progress view against its budget (or what exists)."""
    counts = {name: int(getattr(progress, name)) for name in PROGRESS_PARTS}
    scale = max(int(progress.max_points), sum(counts.values()), 1)
    parts, x = [], 0.0
    for name in PROGRESS_PARTS:
        width = 100.0 * counts[name] / scale
        if width > 0:
            parts.append({"name": name, "x": round(x, 3), "width": round(width, 3), "count": counts[name]})
            x += width
    return parts


def site_parts(sites: Mapping[str, int], top: int = 4) -> list[dict[str, Any]]:
    """The sites' shares of attempts, largest first; beyond ``top`` they are summed as "other"."""
    total = sum(sites.values())
    if total <= 0:
        return []
    ranked = sorted(sites.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ranked[:top]
    if len(ranked) > top:
        shown.append(("other", sum(n for _, n in ranked[top:])))
    parts, x = [], 0.0
    for i, (site, n) in enumerate(shown):
        width = 100.0 * n / total
        parts.append(
            {"site": site, "count": n, "share": round(width), "x": round(x, 3), "width": round(width, 3), "i": i}
        )
        x += width
    return parts


def timeline(attempts: Sequence[Any], now: float) -> dict[str, Any]:
    """Bars (x and width in %) of a point's attempts on one time axis, from the first start to the
    last end (or now, for one still running), with tick labels in seconds from the start."""
    if not attempts:
        return {"bars": [], "ticks": [], "span": 0.0}
    start = min(a.started_at for a in attempts)
    end = max((a.ended_at if a.ended_at is not None else now) for a in attempts)
    span = max(end - start, 1e-3)
    bars = []
    for a in attempts:
        stop = a.ended_at if a.ended_at is not None else now
        x = 100.0 * (a.started_at - start) / span
        bars.append(
            {
                "attempt": a,
                "x": round(x, 3),
                "width": round(max(100.0 * (stop - a.started_at) / span, 0.4), 3),
                "open": a.ended_at is None,
            }
        )
    ticks = [{"x": round(100.0 * i / 4, 3), "label": duration(span * i / 4)} for i in range(5)]
    return {"bars": bars, "ticks": ticks, "span": span, "start": start}


FILTERS: dict[str, Callable[..., Any]] = {
    "loss": loss,
    "duration": duration,
    "ago": ago,
    "utc": utc,
    "value": value,
    "pretty": pretty,
    "ms": ms,
    "progress_parts": progress_parts,
    "site_parts": site_parts,
}
