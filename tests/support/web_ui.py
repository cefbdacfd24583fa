"""What the web UI's tests (and the API's failure-visibility test) share: logging in through the form,
submitting a task, and a pilot in a thread that completes points over the real API (succeeding or
failing, as told)."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import httpx

from hposteer.client.http import ApiClient, Conflict
from tests.conftest import LiveService

SPACE = {
    "x": {"method": "uniform", "dimension": {"low": -2.0, "high": 2.0}},
    "lr": {"method": "loguniform", "dimension": {"low": 1e-5, "high": 1e-1}},
    "act": {"method": "categorical", "dimension": {"categories": ["relu", "tanh"]}},
}
_sites = itertools.count()


def new_site() -> str:
    """A site of the test's own, so that no other test's pilot takes its task."""
    return f"UI-{next(_sites)}-{time.monotonic_ns() % 1_000_000}"


@contextmanager
def login(service: LiveService, token: str) -> Iterator[httpx.Client]:
    """A browser-like client logged in through the login form (nonce cookie, form post, session cookie)."""
    with httpx.Client(base_url=service.url, timeout=10) as client:
        page = client.get("/ui/login")
        nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
        assert nonce is not None, page.text
        answer = client.post("/ui/login", data={"token": token, "nonce": nonce.group(1), "next": "/ui/tasks"})
        assert answer.status_code == 303, answer.text
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def submit(service: LiveService, site: str, **overrides: Any) -> int:
    body: dict[str, Any] = {
        "name": f"user.alice.ui.{site}",
        "evaluation_exec": "python train.py",
        "search_space": SPACE,
        "optimizer": "random",
        "max_points": 12,
        "n_points_per_iteration": 4,
        "n_parallel_evaluation": 4,
        "max_attempts": 1,
        "site": site,
        "seed": 3,
        **overrides,
    }
    with ApiClient(service.url, service.user_token) as api:
        return int(api.submit_task(body)["id"])


Outcome = Callable[[dict[str, Any]], float | None]  # the job -> its loss, or None to fail it


def good(job: dict[str, Any]) -> float | None:
    return float((job["params"]["x"] - 0.3) ** 2)


class PilotThread(threading.Thread):
    """Completes points of ``site`` over the API, one every ``pace_s``, until stopped or ``limit``."""

    def __init__(
        self, service: LiveService, site: str, outcome: Outcome = good, pace_s: float = 0.0, limit: int | None = None
    ):
        super().__init__(daemon=True, name=f"pilot-{site}")
        self.api = ApiClient(service.url, service.pilot_token)
        self.pilot_id = int(
            self.api.register_pilot(
                {"name": f"wn-{site.lower()}", "site": site, "hostname": "wn01", "slots": [{"name": "0", "gpus": []}]}
            )["pilot_id"]
        )
        self.outcome, self.pace_s, self.limit = outcome, pace_s, limit
        self.stopping = threading.Event()
        self.completed = 0

    def run_one(self, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.stopping.is_set():
            job = self.api.acquire(self.pilot_id, "0")["job"]
            if job is None:
                time.sleep(0.05)
                continue
            loss = self.outcome(dict(job))
            report: dict[str, Any] = {
                "lease_token": job["lease_token"],
                "duration_s": 0.2,
                "log_tail": "epoch 1\ndone\n",
            }
            if loss is None:
                report.update(outcome="failure", failure_class="payload_error", exit_code=2, message="it broke")
            else:
                report.update(outcome="success", loss=loss, exit_code=0)
            self.api.complete(job["attempt_id"], report)
            self.completed += 1
            return True
        return False

    def run(self) -> None:
        while not self.stopping.is_set() and (self.limit is None or self.completed < self.limit):
            with suppress(Conflict):  # the task was killed under the attempt: its result is refused
                self.run_one(timeout_s=1.0)
            self.stopping.wait(self.pace_s)

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout=15)
        self.api.close()


def wait_for(predicate: Callable[[], bool], timeout_s: float = 15.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
