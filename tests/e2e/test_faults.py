"""R1-R6 with real processes under faults: failing payloads, pilots SIGKILLed mid-evaluation
(with and without checkpoints) and repeated service SIGKILLs with pilots running.

Every test runs `hposteer serve`, `phpo` and `hposteer pilot` as processes in their own
process groups (bench/soak/supervisor.py) with the test timings of docs/reliability.md (lease TTL
2 s, heartbeat 0.5 s, reaper 0.25 s), then reads the database read-only and checks the
invariants (tests/support/invariants.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.soak.supervisor import PilotProcess, ServiceProcess, Timeline, submit_phpo, task_json
from tests.conftest import free_port
from tests.support import invariants
from tests.support.faults import ALWAYS_FAILS, CHECKPOINTED, FLAKY, SLACK_S, SLOW, SPACE, TIMINGS, loss_of
from tests.support.invariants import Outage


class Cluster:
    """A service, its tokens and pilots, all real processes under tmp_path."""

    def __init__(self, root: Path):
        self.root = root
        self.marks = root / "marks"
        self.marks.mkdir()
        self.timeline = Timeline(root / "timeline.jsonl")
        self.service = ServiceProcess(root / "data", free_port(), TIMINGS, log=root / "service.log")
        self.service.start()
        self.user = self.service.token("user", "alice")
        self.pilot_token = self.service.token("pilot", "site")
        self.pilots: list[PilotProcess] = []
        self.outages: list[Outage] = []

    @property
    def url(self) -> str:
        return self.service.url

    def submit(self, evaluation: str, **options: object) -> int:
        project = self.root / f"project{len(list(self.root.glob('project*')))}"
        project.mkdir()
        (project / "eval.py").write_text(evaluation)
        (project / "space.json").write_text(json.dumps(SPACE))
        config = {"outDS": f"user.alice.faults.{project.name}", "evaluationExec": "python3 eval.py",
                  "searchSpaceFile": "space.json", "optimizer": "random", "maxPoints": 4,
                  "nPointsPerIteration": 4, "minUnevaluatedPoints": 0, "nParallelEvaluation": 4, **options}  # fmt: skip
        config.setdefault("maxEvaluationJobs", 3 * int(config["maxPoints"]))  # type: ignore[call-overload]
        return submit_phpo(project, self.url, self.user, config)

    def pilot(self, slots: int = 2, idle_s: float | None = 4.0, **env: str) -> PilotProcess:
        name = f"pilot{len(self.pilots)}"
        pilot = PilotProcess(
            name, self.url, self.pilot_token, self.root / name, self.root / f"{name}.log", slots=slots,
            exit_when_idle_s=idle_s, extra_env={"FAULT_DIR": str(self.marks), **env},
        )  # fmt: skip
        pilot.start()
        self.timeline.record("pilot_start", name=name, pid=pilot.pid)
        self.pilots.append(pilot)
        return pilot

    def kill_pilot(self, pilot: PilotProcess) -> float:
        pilot.kill(payloads=True)
        return self.timeline.record("pilot_kill", name=pilot.name).t

    def kill_service(self, down_s: float) -> None:
        killed = self.timeline.record("service_kill").t
        self.service.kill()
        time.sleep(down_s)
        self.service.start()
        self.outages.append(Outage(killed, self.timeline.record("service_ready").t))

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url + "/api/v1", headers={"Authorization": f"Bearer {self.user}"})

    def wait_for(self, what: str, condition: Callable[[], bool], timeout_s: float = 30.0) -> float:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)
        return time.time()

    def wait_finished(self, task_id: int, timeout_s: float = 30.0) -> dict[str, Any]:
        with self.api() as api:

            def ended() -> bool:
                try:
                    return bool(api.get(f"/tasks/{task_id}").json()["state"] != "running")
                except httpx.TransportError:
                    return False

            self.wait_for(f"task {task_id} to end", ended, timeout_s)
        return task_json(self.url, self.user, task_id, points=True)

    def marker(self, prefix: str) -> list[Path]:
        return sorted(self.marks.glob(prefix + "*"))

    def check(self, task_id: int, **kwargs: Any) -> invariants.Report:
        self.stop()
        report = invariants.check(
            self.service.data_dir, task_ids=[task_id], expected_loss=loss_of, lease_ttl_s=TIMINGS.lease_ttl_s,
            reaper_interval_s=TIMINGS.reaper_interval_s, outages=self.outages, slack_s=SLACK_S, **kwargs,
        )  # fmt: skip
        print(report.describe())
        return report

    def stop(self) -> None:
        for pilot in self.pilots:
            pilot.stop(timeout_s=10)
        self.service.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path)
    try:
        yield cluster
    finally:
        for pilot in cluster.pilots:
            if pilot.alive():
                pilot.kill(payloads=True)
        if cluster.service.alive():
            cluster.service.kill()


def _attempts(task: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    return {p["id"]: p["attempts"] for p in task["points"]}


def test_an_evaluation_that_fails_twice_succeeds_on_its_third_attempt(cluster: Cluster) -> None:
    task_id = cluster.submit(FLAKY, maxPoints=3, nPointsPerIteration=3, nParallelEvaluation=3)
    cluster.pilot(slots=3)
    task = cluster.wait_finished(task_id)
    assert task["state"] == "finished" and task["progress"]["done"] == 3
    for point in task["points"]:
        assert point["state"] == "done" and not point["is_failure"]
        assert point["loss"] == pytest.approx(loss_of(point["params"]), abs=1e-12)
        first, second, third = point["attempts"]
        assert [a["number"] for a in point["attempts"]] == [1, 2, 3]
        assert [a["state"] for a in point["attempts"]] == ["failed", "failed", "succeeded"]
        for n, attempt in ((1, first), (2, second)):
            assert attempt["failure_class"] == "payload_error" and attempt["exit_code"] == 10 + n
            assert f"exited with code {10 + n}" in attempt["message"]
            assert f"planned failure {n}" in attempt["message"]
        assert third["failure_class"] is None and third["exit_code"] == 0
        assert third["message"] == "succeeded on run 3"
    assert cluster.check(task_id).ok


def test_an_always_failing_evaluation_fails_every_point_after_three_attempts(cluster: Cluster) -> None:
    task_id = cluster.submit(ALWAYS_FAILS, maxPoints=4)
    cluster.pilot(slots=4)
    task = cluster.wait_finished(task_id)
    assert task["state"] == "failed" and task["end_reason"] == "all_points_failed", task.get("message")
    assert len(task["points"]) == 4
    for point in task["points"]:
        assert point["state"] == "failed" and point["is_failure"] and point["loss"] == 1e5
        assert [a["state"] for a in point["attempts"]] == ["failed"] * 3
        assert {a["failure_class"] for a in point["attempts"]} == {"payload_error"}
        assert {a["exit_code"] for a in point["attempts"]} == {3}
    report = cluster.check(task_id)
    assert report.ok
    assert report.figures["failures_by_class"] == {"payload_error": 12}


def test_a_pilot_sigkilled_mid_evaluation_loses_its_point_for_at_most_ttl_plus_reaper(cluster: Cluster) -> None:
    task_id = cluster.submit(SLOW, maxPoints=2, nPointsPerIteration=2)
    victim = cluster.pilot(slots=1, idle_s=None)
    cluster.wait_for("a running payload", lambda: bool(cluster.marker("running.")))
    (mark,) = cluster.marker("running.")
    assert mark.name.endswith(".1"), "its first attempt"
    time.sleep(0.6)  # let it heartbeat at least once
    killed = cluster.kill_pilot(victim)
    with cluster.api() as api:

        def state_of_killed() -> str:
            (held,) = [p for p in api.get(f"/tasks/{task_id}/points").json()["points"] if p["attempts"]]
            return str(held["state"])

        back = cluster.wait_for("the point to go back to pending", lambda: state_of_killed() == "pending", 10)
    bound = TIMINGS.lease_ttl_s + TIMINGS.reaper_interval_s
    print(f"time to pending after the SIGKILL: {back - killed:.2f} s (bound {bound} s)")
    assert back - killed <= bound + SLACK_S, "R6: the lost pilot's point was not back in pending in time"
    cluster.pilot(slots=2, EVAL_SLEEP_S="0.3")
    task = cluster.wait_finished(task_id)
    assert task["state"] == "finished" and task["progress"]["done"] == 2
    lost = next(p for p in task["points"] if len(p["attempts"]) == 2)
    assert [a["state"] for a in lost["attempts"]] == ["expired", "succeeded"]
    assert lost["attempts"][0]["failure_class"] == "lost_lease"
    assert lost["attempts"][0]["ended_at"] - killed <= bound + SLACK_S
    assert lost["attempts"][1]["pilot"] == "pilot1"
    report = cluster.check(task_id)
    assert report.ok
    assert report.figures["max_attempts_per_point"] == 2
    assert report.figures["max_expiry_after_last_contact_s"] <= bound + SLACK_S


def test_a_pilot_sigkilled_mid_evaluation_resumes_from_its_checkpoint_elsewhere(cluster: Cluster) -> None:
    task_id = cluster.submit(
        CHECKPOINTED, maxPoints=1, nPointsPerIteration=1, checkPointToSave="ckpt", checkPointInterval=0.01
    )
    victim = cluster.pilot(slots=1, idle_s=None)
    cluster.wait_for("a running payload", lambda: bool(cluster.marker("running.")))
    time.sleep(3.0)  # about 15 steps, several checkpoint intervals (0.6 s)
    killed = cluster.kill_pilot(victim)
    cluster.pilot(slots=1)
    task = cluster.wait_finished(task_id)
    (point,) = task["points"]
    assert point["state"] == "done"
    assert [a["state"] for a in point["attempts"]] == ["expired", "succeeded"]
    assert point["attempts"][0]["ended_at"] - killed <= TIMINGS.lease_ttl_s + TIMINGS.reaper_interval_s + SLACK_S
    message = point["attempts"][1]["message"]
    assert message.startswith("resumed from step ")
    resumed = int(message.rsplit(" ", 1)[1])
    assert 0 < resumed < 30, f"attempt 2 should resume from the checkpoint of attempt 1: {message}"
    assert cluster.check(task_id).ok


def test_the_task_survives_repeated_service_sigkills_with_pilots_running(cluster: Cluster) -> None:
    task_id = cluster.submit(SLOW, maxPoints=24, nPointsPerIteration=6, minUnevaluatedPoints=3, nParallelEvaluation=6)
    for _ in range(2):
        cluster.pilot(slots=3, idle_s=8.0, EVAL_SLEEP_S="0.4")
    with cluster.api() as api:

        def done() -> int:
            try:
                return int(api.get(f"/tasks/{task_id}").json()["progress"]["done"])
            except httpx.TransportError:
                return 0

        for threshold in (3, 9, 15):
            cluster.wait_for(f"{threshold} points done", lambda: done() >= threshold)  # noqa: B023
            cluster.kill_service(down_s=0.5)  # leases, steering, everything in memory is gone
    task = cluster.wait_finished(task_id, timeout_s=40)
    assert len(cluster.outages) == 3
    assert task["state"] == "finished", task.get("message")
    report = cluster.check(task_id)
    assert report.ok, report.describe()
    figures = report.figures
    assert figures["points"] == 24
    assert figures["points_by_state"].get("done", 0) + figures["points_by_state"].get("failed", 0) == 24
    assert figures["max_attempts_per_point"] <= 3
