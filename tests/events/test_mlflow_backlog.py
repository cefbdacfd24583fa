"""The mlflow handler's backlog on its own: order, no calls during an outage, bounds (a tracker that
fails on demand stands in for MLflow; the real server's outage is in test_mlflow_handler.py)."""

from __future__ import annotations

import threading

import pytest

from hposteer.service.events.mlflow_backlog import Backlog
from tests.events.plugins import wait_for


class Tracker:
    """Records (task, point) pairs; fails while ``down`` is set, or always for the points in ``poisoned``."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.poisoned: set[tuple[int, int]] = set()
        self.recorded: list[tuple[int, int]] = []
        self.calls = 0
        self.probe_fails = False  # a point failing while the probe fails too looks like an outage

    def __call__(self, task_id: int, number: int) -> None:
        self.calls += 1
        if self.down.is_set() or (task_id, number) in self.poisoned:
            raise ConnectionError("tracking server unreachable")
        self.recorded.append((task_id, number))

    def reachable(self) -> bool:
        return not self.down.is_set() and not self.probe_fails


def test_an_outage_owes_points_without_calling_the_tracker_and_records_them_in_order_after() -> None:
    tracker = Tracker()
    backlog = Backlog(tracker, tracker.reachable, retry_s=0.5, max_retry_s=0.5)
    try:
        backlog.record(1, 1)
        tracker.down.set()
        backlog.record(1, 2)  # fails: owed, and from now on new points wait without a call
        calls_at_outage = tracker.calls
        for number in (3, 4, 5):
            backlog.record(1, number)
        backlog.record(1, 3)  # a replay of an owed point is owed once
        assert len(backlog) == 4 and tracker.calls - calls_at_outage <= 2, "only the retry thread calls"
        tracker.down.clear()
        wait_for(lambda: len(backlog) == 0, timeout_s=10, what="the backlog to drain")
        assert tracker.recorded == [(1, n) for n in (1, 2, 3, 4, 5)]
        backlog.record(1, 6)  # back to recording at once
        assert tracker.recorded[-1] == (1, 6)
    finally:
        backlog.close()
    assert backlog.lost == 0


def test_a_point_mlflow_refuses_while_it_answers_is_raised_and_holds_up_nothing() -> None:
    tracker = Tracker()
    backlog = Backlog(tracker, tracker.reachable, retry_s=0.05, max_retry_s=0.05)
    try:
        tracker.poisoned.add((3, 1))
        with pytest.raises(ConnectionError):  # the bus logs and counts it as the handler's failure
            backlog.record(3, 1)
        backlog.record(3, 2)
        assert len(backlog) == 0 and tracker.recorded == [(3, 2)]
        # Owed during an outage, then refused once MLflow is back: dropped, and the rest go through.
        tracker.down.set()
        for number in (3, 4):
            backlog.record(3, number)
        tracker.poisoned.add((3, 3))
        tracker.down.clear()
        wait_for(lambda: len(backlog) == 0, timeout_s=10, what="the backlog to drain")
        assert tracker.recorded == [(3, 2), (3, 4)] and backlog.lost == 1
    finally:
        backlog.close()


def test_the_backlog_is_bounded_and_gives_up_on_a_point_that_keeps_failing() -> None:
    tracker = Tracker()
    backlog = Backlog(tracker, tracker.reachable, retry_s=0.01, max_retry_s=0.01, capacity=3, max_failures=3)
    try:
        tracker.poisoned.add((2, 1))
        tracker.probe_fails = True
        for number in (1, 2, 3, 4):  # 1 fails as in an outage; 2 and 3 wait behind it; 4 is over capacity
            backlog.record(2, number)
        wait_for(lambda: len(backlog) == 0, timeout_s=10, what="the head given up after 3 failures, the rest drained")
        assert tracker.recorded == [(2, 2), (2, 3)] and backlog.lost == 2
    finally:
        backlog.close()
