"""The REST API over real HTTP: clients, request bodies, pilot calls and waits, shared by the API, event and
brokerage tests."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import LiveService

SPACE = {
    "x": {"method": "uniform", "dimension": {"low": -2.0, "high": 2.0}},
    "n": {"method": "uniformint", "dimension": {"low": 1, "high": 8}},
    "act": {"method": "categorical", "dimension": {"categories": ["relu", "tanh"]}},
}


def http(service: LiveService, token: str | None) -> httpx.Client:
    headers = {"X-Hposteer-Api": "1"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=service.url, headers=headers, timeout=10)


def submission(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "user.alice.api",
        "evaluation_exec": "python train.py --seed %RNDM:100",
        "search_space": SPACE,
        "optimizer": "random",
        "max_points": 4,
        "n_points_per_iteration": 2,
        "n_parallel_evaluation": 4,
        "seed": 7,
        "site": "NOWHERE",  # only pilots of the test that submitted a task may take it
    }
    body.update(overrides)
    return body


_sites = iter(range(1_000_000))


def new_site() -> str:
    """A site of its own per test, so that tasks of other tests in the module never reach its pilot."""
    return f"SITE-{next(_sites)}"


def error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


def register(client: httpx.Client, site: str) -> int:
    r = client.post("/api/v1/pilot/register", json={"name": "t", "site": site, "slots": [{"name": "0", "gpus": ["0"]}]})
    assert r.status_code == 200, r.text
    return int(r.json()["pilot_id"])


def acquire(client: httpx.Client, pilot_id: int, timeout_s: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = client.post("/api/v1/pilot/acquire", json={"pilot_id": pilot_id, "slot": "0"})
        assert r.status_code == 200, r.text
        if r.json()["job"] is not None:
            return dict(r.json()["job"])
        time.sleep(0.05)
    raise AssertionError("no job within the timeout")


def wait_state(client: httpx.Client, task_id: int, state: str, timeout_s: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        task = client.get(f"/api/v1/tasks/{task_id}").json()
        if task["state"] == state:
            return dict(task)
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not reach {state}: {task}")


# Pilot calls with request keys (R4, idempotent retries).


def acquire_with_key(pilot: httpx.Client, pilot_id: int, key: str, timeout_s: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = pilot.post("/api/v1/pilot/acquire", json={"pilot_id": pilot_id, "slot": "0", "request_key": key})
        assert r.status_code == 200, r.text
        if r.json()["job"] is not None:
            return dict(r.json()["job"])
        time.sleep(0.05)
    raise AssertionError("no job within the timeout")


def complete_attempt(pilot: httpx.Client, job: dict[str, Any], **report: Any) -> httpx.Response:
    body = {"lease_token": job["lease_token"], "outcome": "success", "loss": 0.5, **report}
    return pilot.post(f"/api/v1/pilot/attempts/{job['attempt_id']}/complete", json=body)


def fail_attempt(pilot: httpx.Client, job: dict[str, Any], **report: Any) -> httpx.Response:
    return complete_attempt(
        pilot, job, outcome="failure", loss=None, failure_class="payload_error", exit_code=1, **report
    )
