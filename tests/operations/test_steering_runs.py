"""Steering runs through the use case, on every backend: exhaustion, failures, races."""

from __future__ import annotations

from collections.abc import Sequence

from hposteer.core.searchspace import Params, SearchSpace
from hposteer.service.core.events import Event, JobEnded, RoundEnded
from hposteer.service.core.optimizer_spec import OptimizerSpec
from hposteer.service.core.steering import Observation
from hposteer.service.operations import completion, pilot_jobs
from hposteer.service.operations.context import Services
from hposteer.service.operations.principal import Principal
from hposteer.service.operations.steer import SteerResult, _steer_held, segments_needing_steering, steer_segment
from hposteer.service.operations.submit import TaskRequest, submit_task
from hposteer.service.operations.tasks import show_task
from hposteer.service.steering.optimizers.warm import WarmRunner
from hposteer.service.store import tasks as task_store
from tests.support.steered_tasks import one_slot_pilot

ALICE = Principal("alice", "user", 1)
PILOT = Principal("site", "pilot", 2)
GRID = {"a": {"method": "categorical", "dimension": {"categories": [1, 2, 3]}}}


class BrokenRunner:
    """A runner whose optimiser raises, as a library bug would."""

    name = "broken"

    def run(self, *, key: int, spec: OptimizerSpec, space: SearchSpace, history: Sequence[Observation], n: int,
            seed: int, budget: int, parallelism: int,
            failures_as_losses: bool | None = None) -> list[Params]:  # fmt: skip
        raise RuntimeError("the optimiser exploded")

    def retain(self, keys: set[int]) -> None:
        return None


def submit(services: Services, **overrides: object) -> int:
    request = TaskRequest(name="t", evaluation_exec="true", search_space=GRID, optimizer="grid", max_points=10)
    for key, value in overrides.items():
        setattr(request, key, value)
    return submit_task(services, ALICE, request, dry_run=False).id


def segment_of(services: Services, task_id: int) -> int:
    with services.db.read() as conn:
        return task_store.segments_of(conn, task_id)[0].id


def test_an_exhausted_optimizer_ends_the_task_once_its_points_are_done(backend_services: Services) -> None:
    task_id = submit(backend_services, n_points_per_iteration=10)
    segment_id = segment_of(backend_services, task_id)
    runner = WarmRunner()
    try:
        first = steer_segment(backend_services, runner, segment_id)
        assert (first.outcome, first.produced) == ("ok", 3), "the grid has three points, not ten"
        assert segments_needing_steering(backend_services).wanted == [], "3 unevaluated: wait for them"
        pilot = one_slot_pilot(backend_services, "S")
        for _ in range(3):
            job = pilot_jobs.acquire(backend_services, PILOT, pilot_id=pilot, slot="0")
            assert job is not None
            report = completion.Report(lease_token=job.lease_token, outcome="success", loss=1.0)
            completion.complete(backend_services, PILOT, attempt_id=job.attempt_id, report=report)
        assert show_task(backend_services, ALICE, task_id).state == "running", "the optimiser may have more"
        second = steer_segment(backend_services, runner, segment_id)
        assert second.outcome == "exhausted"
    finally:
        runner.close()
    task = show_task(backend_services, ALICE, task_id)
    assert task.state == "finished" and task.end_reason == "exhausted"


def test_repeated_optimizer_failures_fail_the_task_with_the_error(backend_services: Services) -> None:
    task_id = submit(backend_services, optimizer="random")
    segment_id = segment_of(backend_services, task_id)
    for _ in range(backend_services.settings.steering_max_failures):
        result = steer_segment(backend_services, BrokenRunner(), segment_id)
        assert result.outcome == "failed" and "the optimiser exploded" in (result.message or "")
    task = show_task(backend_services, ALICE, task_id)
    assert task.state == "failed" and task.end_reason == "steering_failed"
    assert task.message is not None and "RuntimeError: the optimiser exploded" in task.message
    assert steer_segment(backend_services, WarmRunner(), segment_id).outcome == "skipped"


def test_a_run_that_lost_the_race_stores_nothing(backend_services: Services) -> None:
    task_id = submit(backend_services, optimizer="random", n_points_per_iteration=2)
    segment_id = segment_of(backend_services, task_id)

    inner: list[SteerResult] = []

    class RacingRunner(WarmRunner):
        """Another steering run completes while this one is asking its optimiser. The steering gate
        refuses it; one that got past the gate (none should) would still store nothing twice."""

        def run(self, **kw: object) -> list[Params]:  # type: ignore[override]
            points = super().run(**kw)  # type: ignore[arg-type]
            inner.append(steer_segment(backend_services, WarmRunner(), segment_id))
            inner.append(_steer_held(backend_services, WarmRunner(), segment_id, None, None))
            return points

    result = steer_segment(backend_services, RacingRunner(), segment_id)
    assert inner[0].outcome == "skipped" and inner[0].message == "another steering run holds this segment"
    assert inner[1].outcome == "ok", "past the gate, the twin run won the race"
    assert result.outcome == "skipped" and result.message == "the segment changed during the run"
    task = show_task(backend_services, ALICE, task_id)
    assert task.progress.generated == 2, "only the winner's points, never both"


def test_failed_points_reach_the_optimiser_as_failures_unless_the_task_asks_for_pandas_losses(
    backend_services: Services,
) -> None:
    """An always-failing point ends `failed` with loss 1e5 after maxAttempts, and the next steering
    run tells it to the optimiser as a failure, or as the 1e5 loss with --failuresAsLosses."""
    told: dict[bool, list[Observation]] = {}
    for as_losses in (False, True):
        task_id = submit(backend_services, optimizer="random", n_points_per_iteration=1, max_points=2,
                         max_attempts=2, failures_as_losses=as_losses, site=f"F{int(as_losses)}")  # fmt: skip
        segment_id = segment_of(backend_services, task_id)

        class Recorder(WarmRunner):
            def run(self, **kw: object) -> list[Params]:  # type: ignore[override]
                told[bool(kw["failures_as_losses"])] = list(kw["history"])  # type: ignore[call-overload]
                return super().run(**kw)  # type: ignore[arg-type]

        runner = Recorder()
        try:
            assert steer_segment(backend_services, runner, segment_id).produced == 1
            pilot = one_slot_pilot(backend_services, f"F{int(as_losses)}")
            for _ in range(2):
                job = pilot_jobs.acquire(backend_services, PILOT, pilot_id=pilot, slot="0")
                assert job is not None
                report = completion.Report(lease_token=job.lease_token, outcome="failure", failure_class="timeout")
                completion.complete(backend_services, PILOT, attempt_id=job.attempt_id, report=report)
            assert steer_segment(backend_services, runner, segment_id).produced == 1
        finally:
            runner.close()
    for as_losses in (False, True):
        (failed,) = told[as_losses]
        assert failed.failed and failed.loss == 1e5, "the point itself records PanDA's failure loss"
    assert set(told) == {False, True}


class KeptEvents:
    """An event sink that keeps what it is handed (the bus's side of the port)."""

    listening = True

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)


def test_a_task_failed_by_its_steering_ends_its_running_attempts_with_events(backend_services: Services) -> None:
    kept = KeptEvents()
    backend_services.events = kept
    # Two points per run, and a run wanted while fewer than 2 are unevaluated: steering runs while a job is out.
    task_id = submit(backend_services, optimizer="random", n_points_per_iteration=2, min_unevaluated_points=2)
    segment_id = segment_of(backend_services, task_id)
    runner = WarmRunner()
    try:
        assert steer_segment(backend_services, runner, segment_id).outcome == "ok"
    finally:
        runner.close()
    pilot = one_slot_pilot(backend_services, "S")
    done = pilot_jobs.acquire(backend_services, PILOT, pilot_id=pilot, slot="0")
    assert done is not None
    report = completion.Report(lease_token=done.lease_token, outcome="success", loss=0.5)
    completion.complete(backend_services, PILOT, attempt_id=done.attempt_id, report=report)
    job = pilot_jobs.acquire(backend_services, PILOT, pilot_id=pilot, slot="0")
    assert job is not None
    kept.events.clear()
    for _ in range(backend_services.settings.steering_max_failures):
        assert steer_segment(backend_services, BrokenRunner(), segment_id).outcome == "failed"
    assert show_task(backend_services, ALICE, task_id).state == "failed"

    ended = [e for e in kept.events if isinstance(e, JobEnded)]
    assert [(e.attempt_id, e.outcome, e.failure_class, e.point_state) for e in ended] == [
        (job.attempt_id, "cancelled", "killed", "cancelled")
    ], "Clara's promise: an end_job for every start_job, also when the task fails"
    (round_ended,) = [e for e in kept.events if isinstance(e, RoundEnded)]
    tally = (round_ended.task_id, round_ended.iteration, round_ended.points, round_ended.done, round_ended.cancelled)
    assert tally == (task_id, 1, 2, 1, 1) and round_ended.min_loss == 0.5
    assert kept.events.index(round_ended) > kept.events.index(ended[0])
