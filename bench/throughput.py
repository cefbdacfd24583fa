"""(b) Control plane: zero-work evaluations completed per second with 16 concurrent slots.

Slots are spread over 4 load-generator processes (4 threads each, one HTTP client per
slot, the pilot's own API client) so that the load generator is not the bottleneck of a
single interpreter. Each evaluation is one `complete` that also acquires the slot's next job (as the pilot
does; a separate `acquire` only when a slot is idle); the steering (random optimiser,
512 points per iteration) keeps points ahead of the slots.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

from bench.harness import Service
from hposteer.client.http import ApiClient

SPACE = {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}}


def _slot_loop(url: str, token: str, pilot_id: int, slot: str, stop_at: float, counts: list[int]) -> None:
    done = 0
    with ApiClient(url, token) as api:
        job = None
        while time.perf_counter() < stop_at:
            if job is None:
                job = api.acquire(pilot_id, slot)["job"]
                if job is None:
                    time.sleep(0.001)
                    continue
            report = {"lease_token": job["lease_token"], "outcome": "success", "loss": 0.5}
            job = api.complete(job["attempt_id"], report, acquire_next=True)["next_job"]
            done += 1
    counts.append(done)


def _process(url: str, token: str, pilot_id: int, slots: list[str], start_at: float, duration: float, out: Any) -> None:
    while time.perf_counter() < start_at:
        time.sleep(0.001)
    counts: list[int] = []
    threads = [
        threading.Thread(target=_slot_loop, args=(url, token, pilot_id, s, start_at + duration, counts)) for s in slots
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(sum(counts))


def measure(service: Service, slots: int = 16, processes: int = 4, duration_s: float = 20.0) -> dict[str, Any]:
    with (
        ApiClient(service.url, service.user_token) as user,
        ApiClient(service.url, service.pilot_token) as pilot,
    ):
        task = user.submit_task(
            {
                "name": "bench.throughput",
                "evaluation_exec": "true",
                "search_space": SPACE,
                "optimizer": "random",
                "max_points": 1_000_000,
                "n_points_per_iteration": 512,
                "min_unevaluated_points": 256,
                "n_parallel_evaluation": slots,
                "seed": 1,
            }
        )
        slot_names = [str(i) for i in range(slots)]
        pilot_id = pilot.register_pilot(
            {"name": "bench", "site": "BENCH", "slots": [{"name": s, "gpus": []} for s in slot_names]}
        )["pilot_id"]
        deadline = time.monotonic() + 30
        while user.get_task(task["id"])["progress"]["pending"] < 256 and time.monotonic() < deadline:
            time.sleep(0.1)
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        start_at = time.perf_counter() + 3.0  # spawn + imports finish before the clock starts
        procs = [
            ctx.Process(
                target=_process,
                args=(
                    service.url,
                    service.pilot_token,
                    pilot_id,
                    slot_names[i::processes],
                    start_at,
                    duration_s,
                    out,
                ),
            )
            for i in range(processes)
        ]
        for p in procs:
            p.start()
        completed = sum(out.get(timeout=duration_s + 60) for _ in procs)
        for p in procs:
            p.join()
        final = user.get_task(task["id"])
        user.kill_task(task["id"])
    return {
        "slots": slots,
        "duration_s": duration_s,
        "evaluations": completed,
        "evaluations_per_s": round(completed / duration_s, 1),
        "server_done_points": final["progress"]["done"],
    }
