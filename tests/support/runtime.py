"""The pilot's runtime on its own: a job as the service hands it out, a payload started by the local runtime."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hposteer.client.pilot.runtimes.base import Payload
from hposteer.client.pilot.runtimes.registry import make_runtime
from hposteer.client.wire import Job


def make_job(**overrides: Any) -> Job:
    job: dict[str, Any] = {
        "attempt_id": 17,
        "lease_token": "lease",
        "lease_ttl_s": 120.0,
        "heartbeat_interval_s": 30.0,
        "task_id": 7,
        "task_name": "user.test/",
        "point_id": 3,
        "attempt_number": 1,
        "segment": {"index": 0, "name": ""},
        "params": {"lr": 0.001, "units": 128},
        "evaluation_exec": "true",
        "evaluation_container": None,
        "evaluation_input": "input.json",
        "evaluation_output": "output.json",
        "sandbox": None,
    }
    job.update(overrides)
    return job  # type: ignore[return-value]


def start(command: str, workdir: Path, env: dict[str, str] | None = None) -> Payload:
    return make_runtime("local").start(command, workdir, env or dict(os.environ), workdir / "payload.log")
