"""The UI benchmark (bench/ui.py) end to end at a small size, so that it keeps working: a filled
task, a real service process, every page and endpoint over HTTP, idle and while a pilot completes."""

from __future__ import annotations

from bench.ui import measure


def test_the_ui_benchmark_runs_on_a_small_task() -> None:
    result = measure("sqlite", 1000, 1)
    assert result["points"] == 1000 and result["live_completions"] >= 17
    for round_ in ("idle", "live"):
        assert len(result[round_]) == 16
        assert all(row["p95_ms"] > 0 for row in result[round_].values())
    # Whether the target is met is the benchmark's finding (make bench, docs/benchmarks.md), not this test's:
    # one load per URL on a busy CI machine says nothing about a p95. The report must be consistent, though.
    worst = max(row["p95_ms"] for round_ in ("idle", "live") for row in result[round_].values())
    assert result["worst_p95_ms"] == worst and result["target_met"] == (worst < result["target_p95_ms"])
