"""What one write transaction will tell the outside, handed over only once it committed.

A use case fills an Outbox inside its transaction (where the records and the round's state are
at hand and consistent) and calls ``publish()`` after the ``with`` block: a rolled-back
transaction publishes nothing, and the sink and meters never run under a database lock.
Events cost reads only when a handler listens (``services.events.listening``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import Connection

from hposteer.core.searchspace import Params
from hposteer.service.core.events import Event, JobEnded, JobStarted, RecommendationsAvailable, RoundEnded
from hposteer.service.core.states import PointState
from hposteer.service.operations.context import Services
from hposteer.service.store import rounds
from hposteer.service.store.claims import Claim
from hposteer.service.store.pilots import PilotRecord
from hposteer.service.store.points import Settled
from hposteer.service.store.records import AttemptRecord

_TERMINAL = (PointState.DONE, PointState.FAILED)


def recommendations_available(
    services: Services,
    task_id: int,
    segment: int,
    iteration: int,
    numbers: Sequence[int],
    params: Sequence[Params],
    runner: str,
    duration_s: float,
) -> None:
    """Tell handlers of the points a steering run stored; call after its transaction committed."""
    if numbers and services.events.listening:
        services.events.emit(
            RecommendationsAvailable(
                task_id=task_id,
                segment=segment,
                iteration=iteration,
                points=tuple(numbers),
                params=tuple(params),
                runner=runner,
                duration_s=duration_s,
                at=time.time(),
            )
        )


class Outbox:
    def __init__(self, services: Services):
        self._services = services
        self._events: list[Event] = []
        self._started = 0
        self._ended: list[str] = []

    def job_started(self, claim: Claim, pilot: PilotRecord, slot: str) -> None:
        self._started += 1
        if not self._services.events.listening:
            return
        self._events.append(
            JobStarted(
                task_id=claim.task.id,
                task_name=claim.task.name,
                segment=claim.segment.idx,
                point=claim.point.number,
                attempt_id=claim.attempt_id,
                attempt=claim.attempt_number,
                job_number=claim.job_number,
                pilot_id=pilot.id,
                slot=slot,
                site=pilot.site,
                params=claim.point.params,
                at=time.time(),
            )
        )

    def attempt_ended(
        self, conn: Connection, attempt: AttemptRecord, settled: Settled | None, loss: float | None
    ) -> None:
        """Record an ended attempt; call after its point was settled (and its segment maybe ended)."""
        self._ended.append(attempt.state)
        if not self._services.events.listening:
            return
        place = rounds.point_place(conn, attempt.point_id)
        if place is None:
            return
        point_state = settled.state.value if settled is not None else PointState.CANCELLED.value
        self._job_ended(attempt, place, loss, point_state)
        if settled is not None and settled.state in _TERMINAL:
            self._round_ended(conn, attempt.task_id, rounds.OpenRound(place.segment_id, place.segment, place.iteration))

    def open_rounds(self, conn: Connection, task_id: int) -> list[rounds.OpenRound]:
        """The rounds a stop of the task will end, for ``task_stopped``; read them before cancelling."""
        return rounds.open_rounds(conn, task_id) if self._services.events.listening else []

    def task_stopped(
        self,
        conn: Connection,
        task_id: int,
        cancelled: Sequence[AttemptRecord],
        was_open: Sequence[rounds.OpenRound],
    ) -> None:
        """Record a killed or failed task's cancelled attempts (an ``end_job`` each, as Clara keeps one per
        ``start_job``) and the rounds that ended with it; call after its points were cancelled."""
        self._ended.extend(attempt.state for attempt in cancelled)
        if not self._services.events.listening:
            return
        for attempt in cancelled:
            place = rounds.point_place(conn, attempt.point_id)
            if place is not None:
                self._job_ended(attempt, place, None, PointState.CANCELLED.value)
        for open_round in was_open:
            self._round_ended(conn, task_id, open_round)

    def _job_ended(self, attempt: AttemptRecord, place: rounds.PointPlace, loss: float | None, state: str) -> None:
        self._events.append(
            JobEnded(
                task_id=attempt.task_id,
                segment=place.segment,
                point=place.number,
                attempt_id=attempt.id,
                attempt=attempt.number,
                pilot_id=attempt.pilot_id,
                slot=attempt.slot,
                site=attempt.site,
                outcome=attempt.state,
                loss=loss,
                failure_class=attempt.failure_class,
                point_state=state,
                at=time.time(),
            )
        )

    def _round_ended(self, conn: Connection, task_id: int, open_round: rounds.OpenRound) -> None:
        tally = rounds.round_tally(conn, open_round.segment_id, open_round.iteration)
        if tally is not None:
            self._events.append(
                RoundEnded(
                    task_id=task_id,
                    segment=open_round.segment,
                    iteration=open_round.iteration,
                    points=tally.points,
                    done=tally.done,
                    failed=tally.failed,
                    cancelled=tally.cancelled,
                    min_loss=tally.min_loss,
                    max_loss=tally.max_loss,
                    at=time.time(),
                )
            )

    def publish(self) -> None:
        """Hand everything over; call only after the transaction committed."""
        meters = self._services.meters
        for _ in range(self._started):
            meters.attempt_started()
        for outcome in self._ended:
            meters.attempt_ended(outcome)
        for event in self._events:
            self._services.events.emit(event)
        self._events.clear()
        self._started = 0
        self._ended.clear()
