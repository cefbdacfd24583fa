"""(c) Request latency while a slow optimiser steers.

One task steers with scikit-optimize's GP, one point per iteration, so that every completion
starts a GP ask that grows to hundreds of milliseconds; a pilot slot feeds it as fast as it
can. Meanwhile another slot holds an attempt of a second task and heartbeats it back to back:
the heartbeat round trips are the request latency the service shows while steering runs.
Run once with steering in its child process (the default) and once in a thread of the
service, to show what the process buys.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from bench.harness import Service
from hposteer.client.http import ApiClient

GP_SPACE = {f"x{i}": {"method": "uniform", "dimension": {"low": -1, "high": 1}} for i in range(4)}


def _acquire(api: ApiClient, pilot_id: int, slot: str) -> dict[str, Any]:
    while True:
        job = api.acquire(pilot_id, slot)["job"]
        if job is not None:
            return dict(job)
        time.sleep(0.002)


def measure(service: Service, points: int = 80) -> dict[str, Any]:
    with ApiClient(service.url, service.user_token) as user, ApiClient(service.url, service.pilot_token) as pilot:
        gp_task = user.submit_task(
            {"name": "bench.isolation.gp", "evaluation_exec": "true", "search_space": GP_SPACE,
             "optimizer": "skopt:GP", "max_points": points, "n_points_per_iteration": 1, "seed": 1,
             "site": "GP"}
        )  # fmt: skip
        probe_task = user.submit_task(
            {"name": "bench.isolation.probe", "evaluation_exec": "true", "search_space": GP_SPACE,
             "optimizer": "random", "max_points": 1, "n_points_per_iteration": 1, "seed": 1, "site": "PROBE"}
        )  # fmt: skip
        gp_pilot = pilot.register_pilot({"name": "gp", "site": "GP", "slots": [{"name": "0", "gpus": []}]})
        probe_pilot = pilot.register_pilot({"name": "probe", "site": "PROBE", "slots": [{"name": "0", "gpus": []}]})
        held = _acquire(pilot, probe_pilot["pilot_id"], "0")
        stop = threading.Event()
        latencies: list[float] = []

        def probe() -> None:
            with ApiClient(service.url, service.pilot_token) as api:
                while not stop.is_set():
                    started = time.perf_counter()
                    api.heartbeat(held["attempt_id"], held["lease_token"])
                    latencies.append((time.perf_counter() - started) * 1000)
                    time.sleep(0.01)

        thread = threading.Thread(target=probe)
        started = time.perf_counter()
        thread.start()
        for _ in range(points):
            job = _acquire(pilot, gp_pilot["pilot_id"], "0")
            loss = sum(v**2 for v in job["params"].values())
            pilot.complete(job["attempt_id"], {"lease_token": job["lease_token"], "outcome": "success", "loss": loss})
        stop.set()
        thread.join()
        elapsed = time.perf_counter() - started
        assert user.get_task(gp_task["id"])["state"] == "finished"
        user.kill_task(probe_task["id"])  # the GP task finished on its own
    latencies.sort()
    return {
        "gp_points": points,
        "gp_seconds": round(elapsed, 1),
        "heartbeats": len(latencies),
        "heartbeat_p50_ms": round(statistics.median(latencies), 1),
        "heartbeat_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "heartbeat_max_ms": round(latencies[-1], 1),
    }
