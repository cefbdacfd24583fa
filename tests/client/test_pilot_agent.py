"""The pilot against a live service: evaluations, bad outputs, idle exit, signals (real processes)."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from itertools import count
from pathlib import Path
from typing import Any

from client.http import ApiClient
from client.pilot.agent import Pilot, PilotConfig
from client.pilot.runtime import make_runtime
from client.pilot.slots import cpu_slots
from tests.conftest import LiveService

GOOD = """
import json, os
p = json.load(open("input.json"))
json.dump({"status": 0, "loss": (p["x"] - 0.5) ** 2, "message": "slot " + os.environ["HPOSTEER_SLOT"]},
          open("output.json", "w"))
"""
SPACE = {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}}
_sites = count()


def upload(api: ApiClient, files: dict[str, str]) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
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


def run_pilot(service: LiveService, site: str, workdir: Path, slots: int = 2, idle_s: float = 1.5) -> Pilot:
    api = ApiClient(service.url, service.pilot_token)
    config = PilotConfig(
        name="test-pilot",
        site=site,
        slots=cpu_slots(slots),
        runtime=make_runtime("local"),
        workdir=workdir,
        exit_when_idle_s=idle_s,
        threads_per_slot=1,
    )
    pilot = Pilot(api, config)
    assert pilot.run() == 0
    api.close()
    return pilot


def points(api: ApiClient, task_id: int) -> list[dict[str, Any]]:
    return list(api.list_points(task_id)["points"])


def test_two_slots_finish_a_task_and_exit_when_idle(live_service: LiveService, tmp_path: Path) -> None:
    site = f"PILOT-{next(_sites)}"
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(api, site, upload(api, {"eval.py": GOOD}))
        started = time.monotonic()
        pilot = run_pilot(live_service, site, tmp_path / "work")
        elapsed = time.monotonic() - started
        task = api.get_task(task_id)
        done = points(api, task_id)
    assert task["state"] == "finished" and task["progress"]["done"] == 4
    assert pilot.evaluated == 4
    assert {p["attempts"][0]["slot"] for p in done} == {"0", "1"}, "both slots worked"
    assert all(p["loss"] == (p["params"]["x"] - 0.5) ** 2 for p in done)
    assert elapsed < 20
    workdir = tmp_path / "work" / f"task{task_id}" / "point1.attempt1"
    assert (workdir / "input.json").read_text().startswith('{"x": ')
    assert (workdir / "eval.py").exists() and (workdir / "payload.log").exists()


def test_missing_and_invalid_output_are_reported_with_class_and_message(
    live_service: LiveService, tmp_path: Path
) -> None:
    site = f"PILOT-{next(_sites)}"
    with ApiClient(live_service.url, live_service.user_token) as api:
        silent_sha = upload(api, {"eval.py": "print('forgot the output')"})
        garbled_sha = upload(api, {"eval.py": "open('output.json','w').write('{loss: 1')"})
        crash_sha = upload(api, {"eval.py": "import sys; sys.exit(3)"})
        silent = submit(api, site, silent_sha, max_points=1, max_attempts=2)
        garbled = submit(api, site, garbled_sha, max_points=1, max_attempts=1)
        crash = submit(api, site, crash_sha, max_points=1, max_attempts=1)
        run_pilot(live_service, site, tmp_path / "work", slots=1)
        silent_point = points(api, silent)[0]
        garbled_point = points(api, garbled)[0]
        crash_point = points(api, crash)[0]
    assert silent_point["state"] == "failed" and silent_point["is_failure"]
    assert [a["failure_class"] for a in silent_point["attempts"]] == ["missing_output", "missing_output"]
    assert "wrote no output.json" in silent_point["attempts"][0]["message"]
    assert garbled_point["attempts"][0]["failure_class"] == "invalid_output"
    assert "not valid JSON" in garbled_point["attempts"][0]["message"]
    assert crash_point["attempts"][0]["failure_class"] == "payload_error"
    assert crash_point["attempts"][0]["exit_code"] == 3


def test_sigterm_drains_running_evaluations_then_exits(live_service: LiveService, tmp_path: Path) -> None:
    site = f"PILOT-{next(_sites)}"
    slow = "import json, time\ntime.sleep(2)\njson.dump({'loss': 1.0}, open('output.json', 'w'))\n"
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(api, site, upload(api, {"eval.py": slow}), max_points=6)
        env = {**os.environ, "HPOSTEER_TOKEN": live_service.pilot_token}
        pilot = subprocess.Popen(
            [sys.executable, "-m", "client.cli", "pilot", "--server", live_service.url, "--site", site,
             "--slots", "2", "--workdir", str(tmp_path / "work")],
            env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while api.get_task(task_id)["progress"]["running"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pilot.send_signal(signal.SIGTERM)
        _, stderr = pilot.communicate(timeout=30)
        progress = api.get_task(task_id)["progress"]
    assert pilot.returncode == 0, stderr
    assert "draining" in stderr
    assert progress["done"] == 2 and progress["running"] == 0, "the two running evaluations finished and reported"
    assert progress["pending"] >= 1, "no new work was taken"


def test_second_signal_stops_payloads_and_reports_them_killed(live_service: LiveService, tmp_path: Path) -> None:
    site = f"PILOT-{next(_sites)}"
    endless = "import time\ntime.sleep(600)\n"
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(api, site, upload(api, {"eval.py": endless}), max_points=1)
        env = {**os.environ, "HPOSTEER_TOKEN": live_service.pilot_token}
        pilot = subprocess.Popen(
            [sys.executable, "-m", "client.cli", "pilot", "--server", live_service.url, "--site", site,
             "--workdir", str(tmp_path / "work")],
            env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while api.get_task(task_id)["progress"]["running"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        pilot.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        pilot.send_signal(signal.SIGTERM)
        _, stderr = pilot.communicate(timeout=30)
        attempt = points(api, task_id)[0]["attempts"][0]
    assert pilot.returncode == 0, stderr
    assert attempt["state"] == "failed" and attempt["failure_class"] == "killed"


def test_killing_the_task_stops_its_payload(live_service: LiveService, tmp_path: Path) -> None:
    site = f"PILOT-{next(_sites)}"
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(api, site, upload(api, {"eval.py": "import time\ntime.sleep(600)\n"}), max_points=1)
        env = {**os.environ, "HPOSTEER_TOKEN": live_service.pilot_token}
        pilot = subprocess.Popen(
            [sys.executable, "-m", "client.cli", "pilot", "--server", live_service.url, "--site", site,
             "--workdir", str(tmp_path / "work"), "--exit-when-idle", "1"],
            env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while api.get_task(task_id)["progress"]["running"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        api.kill_task(task_id)
        _, stderr = pilot.communicate(timeout=30)
    assert "the task was killed; stopping the payload" in stderr
    assert pilot.returncode == 0
