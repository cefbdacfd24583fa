"""What every use case receives: the database, settings, blob store and steering trigger."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Connection

from hposteer.service.config import Settings
from hposteer.service.core.events import EventSink, Meters, NoEvents, NoMeters
from hposteer.service.operations.auth import TokenCache
from hposteer.service.operations.brokerage import Brokerage
from hposteer.service.operations.job_views import JobTrainingView
from hposteer.service.store.blobs.base import BlobStore
from hposteer.service.store.blobs.registry import BLOB_STORES
from hposteer.service.store.blobs.rows import blob_size
from hposteer.service.store.claims import claimed_task
from hposteer.service.store.database import Database
from hposteer.service.store.pilots import PilotRecord
from hposteer.service.store.records import ClaimedTask, TaskLimits
from hposteer.service.store.steering_gate import SteeringGate, gate_for
from hposteer.service.store.tasks import get_task_limits


class SteeringTrigger(Protocol):
    """Wakes the steering loop for segments whose state just changed (after the commit)."""

    def notify(self, segment_ids: Iterable[int]) -> None: ...


class NoTrigger:
    """For tools that change the database without a running steering loop."""

    def notify(self, segment_ids: Iterable[int]) -> None:
        return None


@dataclass
class Services:
    db: Database
    settings: Settings
    blobs: BlobStore
    steering: SteeringTrigger
    tokens: TokenCache
    steering_gate: SteeringGate  # one steering run per segment across processes (store.steering_gate)
    # Events for handlers and in-process metrics, handed over after each commit (service.events;
    # docs/events.md).
    events: EventSink = field(default_factory=NoEvents)
    meters: Meters = field(default_factory=NoMeters)
    # Pilots never change after registration, so the hot path may remember them.
    pilots: dict[int, PilotRecord] = field(default_factory=dict)
    # Likewise a task's budgets and limits.
    task_limits: dict[int, TaskLimits] = field(default_factory=dict)
    # And what a job needs of its task (store.claims.claimed_task).
    claimed_tasks: dict[int, ClaimedTask] = field(default_factory=dict)

    # Which tasks with requirements each pilot slot satisfies (operations.brokerage).
    brokerage: Brokerage = field(default_factory=Brokerage)

    # And a stored sandbox's size (content-addressed: it never changes).
    sandbox_sizes: dict[str, int] = field(default_factory=dict)
    # A job's training files per (task id, segment id): a task's datasets are frozen (operations.datasets).
    training_files: dict[tuple[int, int], JobTrainingView | None] = field(default_factory=dict)

    def sandbox_size(self, conn: Connection, sha256: str) -> int:
        size = self.sandbox_sizes.get(sha256)
        if size is None:
            size = blob_size(conn, sha256) or 0
            if len(self.sandbox_sizes) < 100_000:
                self.sandbox_sizes[sha256] = size
        return size

    def limits(self, conn: Connection, task_id: int) -> TaskLimits | None:
        limits = self.task_limits.get(task_id)
        if limits is None:
            limits = get_task_limits(conn, task_id)
            if limits is not None and len(self.task_limits) < 100_000:
                self.task_limits[task_id] = limits
        return limits

    def claimed_task(self, conn: Connection, task_id: int) -> ClaimedTask:
        task = self.claimed_tasks.get(task_id)
        if task is None:
            task = claimed_task(conn, task_id)
            if len(self.claimed_tasks) < 100_000:
                self.claimed_tasks[task_id] = task
        return task

    def points_per_job(self, conn: Connection, task_id: int) -> int:
        """maxPointsPerEvaluationJob of the task (1 when unset or the task is gone)."""
        limits = self.limits(conn, task_id)
        return (limits.max_points_per_job or 1) if limits is not None else 1


def build_services(settings: Settings, steering: SteeringTrigger) -> Services:
    """Everything the use cases need, built from settings (no schema migration here)."""
    db = Database(
        settings.resolved_database_url,
        busy_timeout_s=settings.busy_timeout_s,
        pool_size=settings.db_pool_size,
        statement_timeout_s=settings.db_statement_timeout_s,
    )
    return Services(
        db=db,
        settings=settings,
        blobs=BLOB_STORES[settings.blob_store](settings.blob_dir, db),
        steering=steering,
        tokens=TokenCache(settings.token_cache_s),
        steering_gate=gate_for(db.engine, settings.data_dir),
    )
