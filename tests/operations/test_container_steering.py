"""Tasks steered by their own container, through submit, the steering use case and the real engine.

Points are evaluated through the pilot use cases (acquire/complete); the last test lets the
service's own steering loop run the container.
"""

from __future__ import annotations

import time
from typing import Any

import docker
import pytest

from hposteer.service.config import Settings
from hposteer.service.operations import completion, pilot_jobs
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Invalid
from hposteer.service.operations.principal import Principal
from hposteer.service.operations.steer import steer_segment
from hposteer.service.operations.submit import TaskRequest, submit_task
from hposteer.service.operations.tasks import show_task
from hposteer.service.steering.optimizers.warm import WarmRunner
from hposteer.service.store import steering_runs as run_store
from hposteer.service.store import tasks as task_store
from tests.conftest import LiveService
from tests.support.steered_tasks import one_slot_pilot
from tests.support.steering_containers import IMAGE, engine, grid_command, script_command

__all__ = ["engine"]

ALICE = Principal("alice", "user", 1)
PILOT = Principal("site", "pilot", 2)
RAW = {"a": {"method": "categorical", "dimension": {"categories": ["x", "y", "z"]}}}


def request(**overrides: Any) -> TaskRequest:
    values: dict[str, Any] = {
        "name": "steered",
        "evaluation_exec": "true",
        "search_space": RAW,
        "steering_container": IMAGE,
        "steering_exec": grid_command(),
        "max_points": 10,
        "n_points_per_iteration": 2,
    }
    values.update(overrides)
    return TaskRequest(**values)


def submit(services: Services, **overrides: Any) -> tuple[int, int]:
    task_id = submit_task(services, ALICE, request(**overrides), dry_run=False).id
    with services.db.read() as conn:
        return task_id, task_store.segments_of(conn, task_id)[0].id


def evaluate_all(services: Services, site: str) -> list[Any]:
    """Acquire and complete every pending point (loss: position of its category)."""
    pilot = one_slot_pilot(services, site, name=f"p-{site}")
    done = []
    while (job := pilot_jobs.acquire(services, PILOT, pilot_id=pilot, slot="0")) is not None:
        params = job.params
        loss = float(["x", "y", "z"].index(params["a"]))
        report = completion.Report(lease_token=job.lease_token, outcome="success", loss=loss)
        completion.complete(services, PILOT, attempt_id=job.attempt_id, report=report)
        done.append(params)
    return done


def test_submit_accepts_container_steering_and_refuses_unsafe_docker_arguments(backend_services: Services) -> None:
    view = submit_task(backend_services, ALICE, request(), dry_run=True)
    assert view.optimizer == "container"
    idds = f'run --rm -v "$(pwd)":/HPOiDDS {IMAGE} /bin/bash -c "hpogrid generate -n %NUM_POINTS -l nevergrad"'
    assert submit_task(backend_services, ALICE, request(steering_container=None, steering_exec=idds), dry_run=True)
    for steering_exec, container, field, named in [
        (f"run --privileged -v $(pwd):/w {IMAGE} steer", None, "steering_exec", "'--privileged'"),
        (f"run -v /:/host {IMAGE} steer", None, "steering_exec", "'/:/host'"),
        ("steer; reboot", IMAGE, "steering_exec", "';'"),
        (None, IMAGE, "steering_exec", "needs --steeringExec"),
        ("steer", "bad image!", "steering_container", "not an image reference"),
    ]:
        with pytest.raises(Invalid) as info:
            submit_task(
                backend_services, ALICE, request(steering_exec=steering_exec, steering_container=container),
                dry_run=True,
            )  # fmt: skip
        issues = info.value.issues
        assert issues[0]["field"] == field and named in issues[0]["message"], issues


def test_a_container_steered_task_runs_until_its_optimiser_is_exhausted(
    engine: docker.DockerClient, backend_services: Services
) -> None:
    task_id, segment_id = submit(backend_services, site="GRID")
    warm = WarmRunner()
    first = steer_segment(backend_services, warm, segment_id)
    assert (first.outcome, first.produced) == ("ok", 2)
    assert evaluate_all(backend_services, "GRID") == [{"a": "x"}, {"a": "y"}]
    second = steer_segment(backend_services, warm, segment_id)
    assert (second.outcome, second.produced) == ("ok", 1)
    assert evaluate_all(backend_services, "GRID") == [{"a": "z"}]
    assert steer_segment(backend_services, warm, segment_id).outcome == "exhausted"
    task = show_task(backend_services, ALICE, task_id)
    assert task.state == "finished" and task.end_reason == "exhausted" and task.optimizer == "container"
    assert warm.stats(segment_id) is None, "the warm runner was never used"


def test_the_idds_docker_form_steers_a_task(engine: docker.DockerClient, backend_services: Services) -> None:
    idds = f'run --rm -v "$(pwd)":/HPOiDDS {IMAGE} ' + grid_command("/HPOiDDS/%IN", "/HPOiDDS/%OUT")
    _, segment_id = submit(backend_services, steering_container=None, steering_exec=idds)
    result = steer_segment(backend_services, WarmRunner(), segment_id)
    assert (result.outcome, result.produced) == ("ok", 2)


def test_a_failing_container_fails_the_task_after_three_runs_saying_why(
    engine: docker.DockerClient, backend_services: Services
) -> None:
    assert Settings().steering_max_failures == 3
    script = 'import sys; print("cannot steer today"); sys.exit(1)'
    task_id, segment_id = submit(backend_services, steering_exec=script_command(script))
    for _ in range(3):
        result = steer_segment(backend_services, WarmRunner(), segment_id)
        assert result.outcome == "failed"
        assert "the steering container exited with code 1; last output:\ncannot steer today" in (result.message or "")
    with backend_services.db.read() as conn:
        assert run_store.recent_outcomes(conn, segment_id, 5) == ["failed"] * 3
    task = show_task(backend_services, ALICE, task_id)
    assert task.state == "failed" and task.end_reason == "steering_failed"
    assert task.message is not None
    assert task.message.startswith("steering failed 3 times in a row; last error: SteeringError: the steering")
    assert "cannot steer today" in task.message


def test_the_service_steering_loop_runs_the_container(engine: docker.DockerClient, live_service: LiveService) -> None:
    services = live_service.services
    task_id = submit_task(services, ALICE, request(name="looped", site="LOOP"), dry_run=False).id
    deadline = time.monotonic() + 30
    evaluated: list[Any] = []
    while show_task(services, ALICE, task_id).state == "running":
        assert time.monotonic() < deadline, show_task(services, ALICE, task_id)
        evaluated += evaluate_all(services, "LOOP")
        time.sleep(0.1)
    task = show_task(services, ALICE, task_id)
    assert (task.state, task.end_reason) == ("finished", "exhausted"), task
    assert sorted(p["a"] for p in evaluated) == ["x", "y", "z"]
