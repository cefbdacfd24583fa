"""A pilot against a live service: sites, sandboxes, tasks and pilots (in this process or as `hposteer pilot`)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

from hposteer.client.http import ApiClient
from hposteer.client.pilot.agent import Pilot, PilotConfig
from hposteer.client.pilot.runtimes.registry import make_runtime
from hposteer.client.pilot.slots import Slot, cpu_slots
from tests.conftest import LiveService

GOOD = """
import json, os
p = json.load(open("input.json"))
json.dump({"status": 0, "loss": (p["x"] - 0.5) ** 2,
           "message": "gpu=" + os.environ["CUDA_VISIBLE_DEVICES"] + " slot=" + os.environ["HPOSTEER_SLOT"]},
          open("output.json", "w"))
"""


SPACE = {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}}


_sites = count()


def new_site() -> str:
    return f"PILOT-{next(_sites)}-{os.getpid()}"


def tarball(files: dict[str, str], extra: list[tarfile.TarInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"") if info.isreg() else None)
    return buf.getvalue()


def upload(api: ApiClient, files: dict[str, str], extra: list[tarfile.TarInfo] | None = None) -> str:
    data = tarball(files, extra)
    sha = hashlib.sha256(data).hexdigest()
    api.upload_sandbox(data, sha)
    return sha


def submit(api: ApiClient, site: str, sha: str, **overrides: Any) -> int:
    body: dict[str, Any] = {
        "name": f"pilot.test.{site}",
        "evaluation_exec": "python3 eval.py",
        "search_space": SPACE,
        "optimizer": "random",
        "max_points": 4,
        "n_points_per_iteration": 2,
        "n_parallel_evaluation": 2,
        "site": site,
        "sandbox_sha256": sha,
    }
    body.update(overrides)
    return int(api.submit_task(body)["id"])


def run_pilot(
    service: LiveService, site: str, workdir: Path, slots: list[Slot] | None = None, idle_s: float = 1.5
) -> Pilot:
    """A pilot in this process, until it has been idle for ``idle_s``."""
    with ApiClient(service.url, service.pilot_token) as api:
        config = PilotConfig(
            name="test-pilot",
            site=site,
            slots=slots or cpu_slots(2),
            runtime=make_runtime("local"),
            workdir=workdir,
            exit_when_idle_s=idle_s,
            threads_per_slot=1,
        )
        pilot = Pilot(api, config)
        assert pilot.run() == 0
    return pilot


def points(api: ApiClient, task_id: int) -> list[dict[str, Any]]:
    return list(api.list_points(task_id)["points"])


def hposteer_pilot(service: LiveService, site: str, workdir: Path, *extra: str) -> subprocess.Popen[str]:
    """The real `hposteer pilot` command in a process of its own."""
    script = Path(sys.executable).parent / "hposteer"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "hposteer.client.cli"]
    env = {**os.environ, "HPOSTEER_TOKEN": service.pilot_token, "HPOSTEER_SERVER": service.url}
    return subprocess.Popen(
        [*command, "pilot", "--site", site, "--workdir", str(workdir), *extra],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
