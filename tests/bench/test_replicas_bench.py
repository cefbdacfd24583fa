"""Benchmark (e), bench/replicas.py: its code runs end to end in a tiny configuration on real
PostgreSQL (1 replica, 4 slots, 2 s window, Optuna beside it), cleans up after itself, and its
small pieces (percentiles, verdicts, process labels) say what they should."""

from __future__ import annotations

import os
import uuid

import pytest

from bench.harness import ProcessCpu
from bench.replicas import Config, _postgres_label, percentile, run, verdicts
from tests.conftest import IN_CI, POSTGRES_URL


def _needs_postgres() -> str:
    if POSTGRES_URL is None:
        if IN_CI:
            pytest.fail("CI=true but HPOSTEER_TEST_POSTGRES_URL is not set: PostgreSQL tests must run in CI")
        pytest.skip("PostgreSQL not configured (set HPOSTEER_TEST_POSTGRES_URL)")
    return POSTGRES_URL


def _databases(admin_url: str, prefix: str) -> list[str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT datname FROM pg_database WHERE datname LIKE :p"), {"p": f"{prefix}%"})
            return [str(r[0]) for r in rows]
    finally:
        engine.dispose()


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(os.path.join(entry.path, "cmdline"), "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.mark.postgres
def test_a_tiny_run_measures_both_systems_and_leaves_nothing_behind() -> None:
    admin_url = _needs_postgres()
    prefix = f"hposteer_test_e{uuid.uuid4().hex[:8]}"
    config = Config(
        replicas=(1,),
        spread_tasks=0,
        paced_work_s=0.2,
        optuna_reference_slots=(),
        slots=4,
        processes=2,
        warmup_s=0.5,
        window_s=2.0,
        split_every=3,
        points_per_iteration=256,
        database_prefix=prefix,
    )

    result = run(config, admin_url=admin_url)

    ours, paced, theirs = result["rows"]
    assert ours["system"] == "hposteer" and ours["replicas"] == 1 and ours["errors"] == 0, ours["first_errors"]
    assert ours["evaluations"] > 0 and ours["server_done_points"] >= ours["evaluations"]
    assert ours["complete_acquire_next"]["count"] > 0 and ours["complete"]["count"] > 0  # both kinds were sampled
    assert ours["replica_log_problems"] == []
    assert ours["cpu_cores"]["replica 1: service process"] > 0
    assert ours["cpu_cores"]["load generators"] > 0
    assert paced["work_s"] == 0.2 and paced["errors"] == 0 and paced["label"].endswith("0.2 s of work per evaluation")
    assert 0 < paced["evaluations"] <= 4 * 2.0 / 0.2 + 4, "4 slots, 0.2 s each, over a 2 s window"
    assert theirs["system"].startswith("optuna") and theirs["errors"] == 0, theirs["first_errors"]
    assert theirs["evaluations"] > 0 and theirs["ask"]["count"] == theirs["evaluations"]
    assert theirs["label"].endswith(", 4 slots")
    assert list(result["ratios"]) == [f"hposteer, 1 replica / {theirs['label']}"]
    assert _databases(admin_url, prefix) == []  # every database dropped
    assert _processes_mentioning(prefix) == []  # every replica (and its steering child) stopped


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(map(float, range(1, 101))), 99) == 99.01


def _row(system: str, per_s: float, replicas: int | None, slots: int = 64, p99: float = 10.0) -> dict[str, object]:
    label = f"{system} {replicas}" if replicas else f"{system} {slots}"
    return {
        "system": system,
        "label": label,
        "replicas": replicas,
        "slots": slots,
        "evaluations_per_s": per_s,
        "acquire": {"p99_ms": p99},
        "complete_acquire_next": {"p99_ms": p99},
    }


def test_verdicts_compare_at_the_same_concurrency_and_with_optunas_best() -> None:
    rows = [
        _row("hposteer", 300.0, 1),
        _row("hposteer", 1200.0, 3, p99=60.0),
        _row("optuna", 100.0, None, slots=64),
        _row("optuna", 400.0, None, slots=8),
    ]
    result = verdicts(rows, slots=64)
    assert result["ratios"] == {
        "hposteer 1 / optuna 64": 3.0,
        "hposteer 1 / optuna 8": 0.75,
        "hposteer 3 / optuna 64": 12.0,
        "hposteer 3 / optuna 8": 3.0,
    }
    assert result["targets"] == {
        "hposteer 3: >= 1000 evaluations/s": True,
        "hposteer 3: >= 3x Optuna's trials/s (optuna 64)": True,
        "hposteer 3: plain acquire p99 <= 50 ms": False,
        "hposteer 3: complete+acquire_next p99 <= 50 ms": False,
    }


def test_postgres_processes_are_told_apart_by_their_titles() -> None:
    def proc(cmdline: str, comm: str = "postgres") -> ProcessCpu:
        return ProcessCpu(pid=1, ppid=0, comm=comm, cmdline=cmdline, ticks=0)

    assert _postgres_label(proc("postgres: 15/main: postgres mydb 127.0.0.1(5000) idle"), "mydb") == (
        "postgres: backends of this database"
    )
    assert _postgres_label(proc("postgres: postgres other 127.0.0.1(5000) idle"), "mydb") == (
        "postgres: other databases"
    )
    assert str(_postgres_label(proc("postgres: 15/main: walwriter"), "mydb")).startswith("postgres: server processes")
    assert _postgres_label(proc("python -m hposteer.service serve", comm="python"), "mydb") is None
