"""Three service replicas on one PostgreSQL database, one SIGKILLed mid-task (docs/operator.md, "Replicas").

Real processes: three `hposteer serve` started at once on an empty database (their start-up
migrations serialise on an advisory lock), `phpo`, and three `hposteer pilot`, each talking to a
different replica. Once a third of the points are done, the replica of pilot 1 is SIGKILLed and
stays down: pilot 1's running attempts lose their leases and the reapers of the other replicas
give their points back; the other pilots finish the task. Then the invariants (docs/reliability.md) are
checked on the database (tests/support/invariants.py), and the steering runs of each segment, made by
any replica, never overlapped in time (the steering gate).
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import httpx

from bench.soak.supervisor import PilotProcess, ServiceProcess, submit_phpo, task_json
from tests.conftest import _postgres_database, free_port, require_postgres
from tests.support import invariants
from tests.support.faults import SLACK_S, SLOW, SPACE, TIMINGS, loss_of
from tests.support.invariants import read

POINTS = 30


def _done(url: str, user: str, task_id: int) -> tuple[str, int]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {user}"}, timeout=5) as api:
        task = api.get(f"/api/v1/tasks/{task_id}").json()
    return str(task["state"]), int(task["progress"]["done"])


def _start_replicas(root: Path, url: str) -> list[ServiceProcess]:
    """Three replicas started at once on an empty database; nothing shared but the database (the
    ``database`` blob store carries the sandbox from the replica that received it to the others)."""
    replicas = [
        ServiceProcess(root / f"replica{i}", free_port(), TIMINGS, database_url=url, log=root / f"replica{i}.log")
        for i in range(3)
    ]
    for replica in replicas:
        replica.env["HPOSTEER_BLOB_STORE"] = "database"
        super(ServiceProcess, replica).start()  # Managed.start: do not wait for this one yet
    for replica in replicas:
        replica.wait_ready()
    return replicas


def _submit(root: Path, url: str, user: str) -> int:
    project = root / "project"
    project.mkdir()
    (project / "eval.py").write_text(SLOW)
    (project / "space.json").write_text(json.dumps(SPACE))
    config = {"outDS": "user.alice.replicas", "evaluationExec": "python3 eval.py", "searchSpaceFile": "space.json",
              "optimizer": "random", "maxPoints": POINTS, "nPointsPerIteration": 2, "minUnevaluatedPoints": 0,
              "nParallelEvaluation": 6, "maxEvaluationJobs": 3 * POINTS}  # fmt: skip
    return submit_phpo(project, url, user, config)


def _check_steering_never_overlapped(snapshot: invariants.Snapshot) -> None:
    runs: dict[int, list[tuple[float, float]]] = {}
    for run in snapshot.steering_runs:
        start = run["started_at"]
        runs.setdefault(run["segment_id"], []).append((start, start + run["duration_ms"] / 1000))
    for intervals in runs.values():
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert start >= end - 0.005, "two steering runs of one segment overlapped"


def test_three_replicas_one_sigkilled_mid_task_keep_every_invariant(tmp_path: Path) -> None:
    require_postgres()
    databases = _postgres_database()
    url = next(databases)
    replicas: list[ServiceProcess] = []
    pilots: list[PilotProcess] = []
    try:
        replicas = _start_replicas(tmp_path, url)
        user, pilot_token = replicas[0].token("user", "alice"), replicas[0].token("pilot", "site")
        (tmp_path / "marks").mkdir()
        task_id = _submit(tmp_path, replicas[2].url, user)
        for i, replica in enumerate(replicas):  # pilot i talks to replica i only
            pilot = PilotProcess(
                f"pilot{i}", replica.url, pilot_token, tmp_path / f"pilot{i}", tmp_path / f"pilot{i}.log", slots=2,
                exit_when_idle_s=None, extra_env={"FAULT_DIR": str(tmp_path / "marks"), "EVAL_SLEEP_S": "0.5"},
            )  # fmt: skip
            pilot.start()
            pilots.append(pilot)
        deadline = time.monotonic() + 90
        while _done(replicas[0].url, user, task_id)[1] < POINTS // 3:
            assert time.monotonic() < deadline, "a third of the points were not done in 90 s"
            time.sleep(0.1)
        replicas[1].kill()  # SIGKILL mid-task; it stays down
        while (state := _done(replicas[0].url, user, task_id))[0] == "running":
            assert time.monotonic() < deadline + 60, f"the task did not finish: {state}"
            time.sleep(0.2)
        assert state == ("finished", POINTS), task_json(replicas[0].url, user, task_id)
    finally:
        for managed in [*pilots, *replicas]:
            if managed.alive():
                managed.stop(timeout_s=10)
    try:
        report = invariants.check(
            url, task_ids=[task_id], expected_loss=loss_of, lease_ttl_s=TIMINGS.lease_ttl_s,
            reaper_interval_s=TIMINGS.reaper_interval_s, slack_s=SLACK_S,
        )  # fmt: skip
        print(report.describe())
        assert report.ok, report.describe()
        snapshot = read(url)
    finally:
        for _ in databases:
            pass
    _check_steering_never_overlapped(snapshot)
    assert len({a["pilot_id"] for a in snapshot.attempts if a["state"] == "succeeded"}) >= 2
