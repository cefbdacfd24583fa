"""The system as real processes driven through the command line: `hposteer serve`, `hposteer token`, `phpo`
and `hposteer task wait`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

EVAL = """
import json, time
p = json.load(open("input.json"))
time.sleep(0.2)
json.dump({"status": 0, "loss": (p["x"] - 0.3) ** 2 + 0.1 * p["n"]}, open("output.json", "w"))
"""


SPACE = {
    "x": {"method": "uniform", "dimension": {"low": -1, "high": 1}},
    "n": {"method": "uniformint", "dimension": {"low": 0, "high": 3}},
}


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hposteer.client.cli", *args]


class Service:
    def __init__(self, data_dir: Path, port: int, log: IO[bytes]):
        env = {**os.environ, "HPOSTEER_LEASE_TTL_S": "5", "HPOSTEER_HEARTBEAT_INTERVAL_S": "1",
               "HPOSTEER_REAPER_INTERVAL_S": "0.5", "HPOSTEER_IDLE_POLL_S": "0.5"}  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            command("serve", "--data-dir", str(data_dir), "--port", str(port)),
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, "the service exited"
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


def token(data_dir: Path, role: str, owner: str) -> str:
    out = subprocess.run(
        command("token", "create", "--data-dir", str(data_dir), "--role", role, "--owner", owner, "--json"),
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return str(json.loads(out.stdout)["token"])


def submit(project: Path, url: str, user: str, **options: object) -> int:
    project.mkdir(exist_ok=True)
    (project / "eval.py").write_text(EVAL)
    (project / "space.json").write_text(json.dumps(SPACE))
    config = {"outDS": "user.e2e.task", "evaluationExec": "python3 eval.py", "searchSpaceFile": "space.json",
              "optimizer": "tpe", "maxPoints": 12, "nPointsPerIteration": 4, "minUnevaluatedPoints": 2,
              "nParallelEvaluation": 2, **options}  # fmt: skip
    (project / "cfg.json").write_text(json.dumps(config))
    result = subprocess.run(
        [sys.executable, "-m", "hposteer.client.phpo", "--loadJson", "cfg.json", "--server", url, "--token", user,
         "--dumpJson", "dump.json"],
        cwd=project, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return int(json.loads((project / "dump.json").read_text())["jediTaskID"])


def wait_json(url: str, user: str, task_id: int, timeout_s: float = 120) -> dict[str, object]:
    result = subprocess.run(
        command("task", "wait", str(task_id), "--server", url, "--token", user, "--json", "--interval", "0.2",
                "--timeout", str(timeout_s)),
        capture_output=True, text=True, check=False, timeout=timeout_s + 30,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(result.stdout))
