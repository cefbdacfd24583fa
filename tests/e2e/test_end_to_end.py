"""The whole system as real processes: `hposteer serve`, `hposteer token`, `phpo`, `hposteer pilot`,
`hposteer task wait` — and a service SIGKILL in the middle of a search."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from tests.support.cli_processes import Service, command, submit, token, wait_json


def start_pilot(url: str, pilot_token: str, workdir: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HPOSTEER_TOKEN": pilot_token, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.Popen(
        command("pilot", "--server", url, "--slots", "2", "--workdir", str(workdir), "--exit-when-idle", "3"),
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip


def test_a_search_runs_end_to_end_with_real_processes(system: tuple[Path, int, IO[bytes]], tmp_path: Path) -> None:
    data_dir, port, log = system
    service = Service(data_dir, port, log)
    try:
        user, pilot_token = token(data_dir, "user", "eve"), token(data_dir, "pilot", "site")
        task_id = submit(tmp_path / "project", service.url, user)
        pilot = start_pilot(service.url, pilot_token, tmp_path / "work", log)
        task = wait_json(service.url, user, task_id)
        assert pilot.wait(timeout=60) == 0, "the pilot exits on its own once idle"
    finally:
        service.stop()
    assert task["state"] == "finished" and task["end_reason"] == "max_points"
    progress = task["progress"]
    assert isinstance(progress, dict) and progress["done"] == 12 and progress["jobs"] == 12
    best = task["best"]
    assert isinstance(best, dict) and best["loss"] < 0.5


def test_the_search_survives_a_service_sigkill(system: tuple[Path, int, IO[bytes]], tmp_path: Path) -> None:
    data_dir, port, log = system
    service = Service(data_dir, port, log)
    user, pilot_token = token(data_dir, "user", "eve"), token(data_dir, "pilot", "site")
    task_id = submit(tmp_path / "project", service.url, user, maxPoints=16)
    pilot = start_pilot(service.url, pilot_token, tmp_path / "work", log)
    try:
        with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {user}"}) as api:
            deadline = time.monotonic() + 60
            while api.get(f"/api/v1/tasks/{task_id}").json()["progress"]["done"] < 4:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        service.kill()  # steering state, leases in flight, everything in memory is gone
        time.sleep(1.0)
        service = Service(data_dir, port, log)  # same database: the optimiser is rebuilt from it
        task = wait_json(service.url, user, task_id)
        assert pilot.wait(timeout=60) == 0
    finally:
        service.stop()
        if pilot.poll() is None:
            pilot.kill()
    assert task["state"] == "finished"
    progress = task["progress"]
    assert isinstance(progress, dict) and progress["done"] == 16
    assert progress["pending"] == 0 and progress["running"] == 0, "no point lost"
