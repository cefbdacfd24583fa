"""A point's intermediate reports as the schedulers see them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Report:
    """One intermediate value of the objective metric.

    ``seq`` is the report's arrival order within the task (the database assigns it): a decision
    taken on a report looks only at reports that arrived before it, which makes asynchronous
    decisions reproducible from what is stored.
    """

    seq: int
    step: int
    value: float


@dataclass(frozen=True)
class Curve:
    """The reports of one point, in ascending step order.

    ``completed_seq``: where in the task's report order the point finished its full budget (its
    final result counts as an event of the same sequence), or ``None`` while it has not.
    """

    point_id: int
    reports: tuple[Report, ...]
    completed_seq: int | None = None

    @classmethod
    def of(cls, point_id: int, reports: Iterable[Report], *, completed_seq: int | None = None) -> Curve:
        return cls(point_id, tuple(sorted(reports, key=lambda r: (r.step, r.seq))), completed_seq)

    @property
    def completed(self) -> bool:
        return self.completed_seq is not None

    def before(self, seq: int) -> Curve:
        """The curve as it stood when event ``seq`` arrived (reports and completion with a smaller ``seq``)."""
        done = self.completed_seq if self.completed_seq is not None and self.completed_seq < seq else None
        return Curve(self.point_id, tuple(r for r in self.reports if r.seq < seq), done)

    def up_to(self, step: int) -> tuple[Report, ...]:
        return tuple(r for r in self.reports if r.step <= step)

    def first_at_or_after(self, step: int) -> Report | None:
        """The report that first reached ``step`` (its value stands for the point at that resource)."""
        return next((r for r in self.reports if r.step >= step), None)

    @property
    def last_step(self) -> int | None:
        return self.reports[-1].step if self.reports else None
