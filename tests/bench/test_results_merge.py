"""`python -m bench --only X` replaces its own section of the results file and keeps the others."""

from __future__ import annotations

import json
from pathlib import Path

from bench.__main__ import _merged
from bench.containers import _stats


def _report(section: str, value: object) -> dict[str, object]:
    return {"machine": "m2", "platform": "p2", "date": "2026-12-01 10:00", "command": "make bench", section: value}


def test_only_replaces_its_section_and_keeps_the_others(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    out.write_text(json.dumps({"machine": "m1", "platform": "p1", "date": "d1", "command": "make bench",
                               "latency": [{"p50_ms": 1.0}], "containers": {"old": True}}))  # fmt: skip

    merged = _merged(out, "containers", _report("containers", {"new": True}))

    assert merged["latency"] == [{"p50_ms": 1.0}]
    assert merged["containers"] == {"new": True}
    assert (merged["machine"], merged["date"]) == ("m1", "d1")  # the full run's header stays
    assert merged["runs"] == {
        "containers": {"machine": "m2", "date": "2026-12-01 10:00", "command": "python -m bench --only containers"}
    }


def test_a_missing_or_broken_file_starts_afresh(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    assert _merged(out, "containers", _report("containers", 1))["containers"] == 1
    out.write_text("{not json")
    merged = _merged(out, "containers", _report("containers", 2))
    assert merged["containers"] == 2 and merged["machine"] == "m2"


def test_stats() -> None:
    assert _stats([3.0, 1.0, 2.0, 10.0]) == {"p50_ms": 2.5, "p95_ms": 3.0, "max_ms": 10.0}
