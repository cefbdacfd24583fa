"""The oracle itself: each rule of tests/support/invariants.py catches the violation it is for."""

from __future__ import annotations

from typing import Any

from bench.soak.run import unhandled_exceptions
from tests.support.invariants import Outage, Snapshot, check


def _snapshot(points: list[dict[str, Any]], attempts: list[dict[str, Any]]) -> Snapshot:
    task = {"id": 1, "state": "finished", "max_attempts": 3, "failure_loss": 1e5, "max_points": 10, "message": None}
    segment = {"id": 1, "task_id": 1}
    return Snapshot([task], [segment], points, attempts, [], [])


def _point(number: int, state: str, loss: float | None, attempts: int, **extra: Any) -> dict[str, Any]:
    return {"id": number, "task_id": 1, "segment_id": 1, "number": number, "state": state, "loss": loss,
            "is_failure": state == "failed", "attempts": attempts, "params": {"x": float(number)}, **extra}  # fmt: skip


def _attempt(point: int, number: int, state: str, loss: float | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": point * 10 + number, "task_id": 1, "point_id": point, "number": number, "state": state,
            "loss": loss, "failure_class": None if state == "succeeded" else "payload_error", "started_at": 100.0,
            "heartbeat_at": None, "ended_at": 101.0, "lease_expires_at": 102.0, "pilot_id": 1, **extra}  # fmt: skip


def loss_of(params: dict[str, float]) -> float:
    return params["x"] * 2


GOOD_POINTS = [_point(1, "done", 2.0, 2), _point(2, "failed", 1e5, 3)]
GOOD_ATTEMPTS = [
    _attempt(1, 1, "failed"),
    _attempt(1, 2, "succeeded", 2.0),
    *(_attempt(2, n, "failed") for n in (1, 2, 3)),
]


def _failing(points: list[dict[str, Any]], attempts: list[dict[str, Any]], **kwargs: Any) -> list[str]:
    report = check(_snapshot(points, attempts), expected_loss=loss_of, **kwargs)
    return [v.name.split()[0] for v in report.verdicts if not v.ok]


def test_a_clean_run_passes() -> None:
    report = check(_snapshot(GOOD_POINTS, GOOD_ATTEMPTS), expected_loss=loss_of)
    assert report.ok and report.summary() == "5 passed, 0 failed"
    assert report.figures["failures_by_class"] == {"payload_error": 4}


def test_each_rule_catches_its_violation() -> None:
    running = [_point(1, "running", None, 1), GOOD_POINTS[1]]
    assert _failing(running, [_attempt(1, 1, "running"), *GOOD_ATTEMPTS[2:]]) == ["R1"]
    early = [GOOD_POINTS[0], _point(2, "failed", 1e5, 2)]
    assert _failing(early, GOOD_ATTEMPTS[:4]) == ["R2"]
    twice = [*GOOD_ATTEMPTS[:2], _attempt(1, 3, "succeeded", 2.0), *GOOD_ATTEMPTS[2:]]
    assert _failing([_point(1, "done", 2.0, 3), GOOD_POINTS[1]], twice) == ["R3"]
    wired = [_point(1, "done", 3.0, 2), GOOD_POINTS[1]]
    assert _failing(wired, [GOOD_ATTEMPTS[0], _attempt(1, 2, "succeeded", 3.0), *GOOD_ATTEMPTS[2:]]) == ["R3"]
    late = [_attempt(1, 1, "expired", heartbeat_at=100.5, lease_expires_at=102.5, ended_at=106.0), *GOOD_ATTEMPTS[1:]]
    assert _failing(GOOD_POINTS, late, lease_ttl_s=2.0, reaper_interval_s=0.25) == ["R6"]
    assert _failing(GOOD_POINTS, late, lease_ttl_s=2.0, reaper_interval_s=0.25, outages=[Outage(103, 105)]) == []
    assert _failing(GOOD_POINTS, GOOD_ATTEMPTS, always_fails=lambda p: p["x"] == 1.0) == ["R3"]


def test_tracebacks_in_process_output_are_found() -> None:
    text = """2026-01-01 00:00:00.000 pilot: started
Exception in thread heartbeat-12:
Traceback (most recent call last):
  File "x.py", line 1, in run
httpcore.ReadError: [Errno 104] Connection reset by peer

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "y.py", line 2, in run
httpx.ReadError: [Errno 104] Connection reset by peer
2026-01-01 00:00:01.000 pilot: slot 0: finished
unhandled error on PUT /x
Traceback (most recent call last):
  File "z.py", line 3, in stream
starlette.requests.ClientDisconnect
"""
    assert unhandled_exceptions(text) == [
        "thread heartbeat: httpx.ReadError",
        "main: starlette.requests.ClientDisconnect",
    ]
    assert unhandled_exceptions("2026-01-01 00:00:00.000 pilot: ValueError mentioned in a message\n") == []
