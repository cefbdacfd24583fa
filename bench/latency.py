"""(a) Iteration latency: from a loss report to the next point being claimable.

One task with nPointsPerIteration=1 and nParallelEvaluation=1, so every completed point
triggers exactly one steering run. After ``history`` points have been evaluated (the
optimiser is warm and has seen all of them), each of the next ``samples`` iterations is
timed from the moment `complete` returns to the moment `acquire` hands out the new point.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.harness import Service
from hposteer.client.http import ApiClient

SPACE = {
    "x1": {"method": "uniform", "dimension": {"low": -5, "high": 5}},
    "x2": {"method": "uniform", "dimension": {"low": -5, "high": 5}},
    "lr": {"method": "loguniform", "dimension": {"low": 1e-5, "high": 1e-1}},
    "depth": {"method": "uniformint", "dimension": {"low": 1, "high": 12}},
    "act": {"method": "categorical", "dimension": {"categories": ["relu", "tanh", "gelu"]}},
}


def _loss(params: dict[str, Any]) -> float:
    return float((params["x1"] - 1) ** 2 + (params["x2"] + 2) ** 2 + params["depth"] * 0.01)


def _acquire(api: ApiClient, pilot_id: int) -> tuple[dict[str, Any], float]:
    while True:
        job = api.acquire(pilot_id, "0")["job"]
        if job is not None:
            return dict(job), time.perf_counter()
        time.sleep(0.0005)


def measure(service: Service, optimizer: str, history: int, samples: int) -> dict[str, Any]:
    with (
        ApiClient(service.url, service.user_token) as user,
        ApiClient(service.url, service.pilot_token) as pilot,
    ):
        task = user.submit_task(
            {
                "name": f"bench.latency.{optimizer}.{history}",
                "evaluation_exec": "true",
                "search_space": SPACE,
                "optimizer": optimizer,
                "max_points": history + samples + 1,
                "n_points_per_iteration": 1,
                "n_parallel_evaluation": 1,
                "seed": 1,
                "site": f"LAT{history}{optimizer.replace(':', '')}",
            }
        )
        site = f"LAT{history}{optimizer.replace(':', '')}"
        pilot_id = pilot.register_pilot({"name": "bench", "site": site, "slots": [{"name": "0", "gpus": []}]})[
            "pilot_id"
        ]
        job, _ = _acquire(pilot, pilot_id)
        latencies = []
        warm_started = time.perf_counter()
        for i in range(history + samples):
            pilot.complete(
                job["attempt_id"],
                {"lease_token": job["lease_token"], "outcome": "success", "loss": _loss(job["params"])},
            )
            reported = time.perf_counter()
            job, claimable = _acquire(pilot, pilot_id)
            if i >= history:
                latencies.append((claimable - reported) * 1000)
            if i == history - 1:
                warm_s = time.perf_counter() - warm_started
        user.kill_task(task["id"])
    latencies.sort()
    return {
        "optimizer": optimizer,
        "history": history,
        "samples": samples,
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "max_ms": round(latencies[-1], 1),
        "history_build_s": round(warm_s, 1) if history else 0.0,
    }
