"""Rows written straight through the store functions (a task, its points, a pilot, a claim), for the store tests
on every backend."""

from __future__ import annotations

from typing import Any

from hposteer.service.operations.context import Services
from hposteer.service.store import claims
from hposteer.service.store import pilots as pilot_store
from hposteer.service.store import points as point_store
from hposteer.service.store import tasks as task_store
from hposteer.service.store.claim_write import ClaimWrite


def add_task(services: Services, **overrides: Any) -> tuple[int, int]:
    values: dict[str, Any] = {
        "owner": "alice",
        "name": "user.alice.t/",
        "optimizer": "random",
        "optimizer_mode": "min",
        "seed": 1,
        "max_points": 10,
        "n_points_per_iteration": 4,
        "min_unevaluated_points": 0,
        "n_parallel_evaluation": 10,
        "max_evaluation_jobs": 20,
        "max_attempts": 3,
        "failure_loss": 1e5,
        "evaluation_exec": "true",
        "evaluation_container": None,
        "evaluation_input": "input.json",
        "evaluation_output": "output.json",
        "sites": None,
        "architecture": "",
        "priority": 0,
        "sandbox_sha256": None,
        "options": {},
        "next_point_number": 1,
    }
    values.update(overrides)
    with services.db.write() as conn:
        task_id = task_store.insert_task(conn, values)
        segment_id = task_store.insert_segment(
            conn,
            task_id=task_id,
            idx=0,
            name="",
            search_space={"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
            segmented=False,
            files=None,
            datasets=None,
        )
    return task_id, segment_id


def add_points(services: Services, task_id: int, segment_id: int, n: int, iteration: int = 1) -> list[int]:
    with services.db.write() as conn:
        return point_store.insert_points(
            conn,
            task_id=task_id,
            segment_id=segment_id,
            iteration=iteration,
            params=[{"x": i / 10} for i in range(n)],
        )


def add_pilot(services: Services, site: str = "SITE-A", owner: str = "ops") -> int:
    with services.db.write() as conn:
        return pilot_store.register_pilot(
            conn, name="p", site=site, owner=owner, hostname="h", slots=[{"name": "0", "gpus": []}],
            runtimes=["local"], version="t",
        )  # fmt: skip


def claim_next(services: Services, pilot_id: int, site: str = "SITE-A", ttl: float = 30.0) -> claims.Claim | None:
    with services.db.write() as conn:
        request = claims.ClaimRequest(site=site, pilot_id=pilot_id, slot="0", lease_ttl_s=ttl)
        return claims.claim_next(ClaimWrite(conn), request)
