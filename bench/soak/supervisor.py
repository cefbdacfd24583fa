"""Real processes for fault tests (docs/reliability.md#the-chaos-soak-make-soak).

Every process (the service, each pilot) starts in its own process group and is killed with
``os.killpg(SIGKILL)`` and then ``wait()``ed for. Payloads run in sessions of their own (the
pilot starts them that way), so ``kill(payloads=True)`` first freezes the pilot's group, finds
its descendants and kills their groups too: a lost node, not just a lost pilot process.
Every start and kill is recorded on a :class:`Timeline` with its wall-clock time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A free loopback port (as tests.conftest.free_port, without importing the service)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hposteer.client.cli", *args]


@dataclass
class Event:
    t: float  # time.time(), comparable with the database clock on this host
    kind: str
    detail: dict[str, Any]


@dataclass
class Timeline:
    path: Path | None = None
    events: list[Event] = field(default_factory=list)

    def record(self, kind: str, **detail: Any) -> Event:
        event = Event(time.time(), kind, detail)
        self.events.append(event)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps({"t": round(event.t, 3), "kind": kind, **detail}) + "\n")
        return event

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int) -> list[int]:
    tree, out, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


class Managed:
    """One process in its own process group, with its output appended to ``log``."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log: Path, cwd: Path | None = None):
        self.name, self.argv, self.env, self.log_path, self.cwd = name, argv, dict(env), log, cwd
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd or REPO,
            start_new_session=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, *, payloads: bool = False) -> None:
        """SIGKILL the process group (and, with ``payloads``, the groups of every descendant)."""
        if self.process is None:
            return
        groups = {self.pid}
        if payloads and self.alive():
            _killpg(self.pid, signal.SIGSTOP)  # nothing new gets spawned while we look
            for child in descendants(self.pid):
                with contextlib.suppress(ProcessLookupError):
                    groups.add(os.getpgid(child))
        for group in groups:
            _killpg(group, signal.SIGKILL)
        self.process.wait()
        self._close()

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
        if self.process is None:
            return None
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _killpg(self.pid, signal.SIGKILL)
                self.process.wait()
        self._close()
        return self.process.returncode

    def _close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass(frozen=True)
class Timings:
    """Service timings; defaults are the test values of docs/reliability.md (R6)."""

    lease_ttl_s: float = 2.0
    heartbeat_interval_s: float = 0.5
    reaper_interval_s: float = 0.25
    idle_poll_s: float = 0.2

    def env(self) -> dict[str, str]:
        return {
            "HPOSTEER_LEASE_TTL_S": str(self.lease_ttl_s),
            "HPOSTEER_HEARTBEAT_INTERVAL_S": str(self.heartbeat_interval_s),
            "HPOSTEER_REAPER_INTERVAL_S": str(self.reaper_interval_s),
            "HPOSTEER_IDLE_POLL_S": str(self.idle_poll_s),
        }


class ServiceProcess(Managed):
    """`hposteer serve` on a data dir (SQLite there unless ``database_url``)."""

    def __init__(
        self, data_dir: Path, port: int, timings: Timings, *, database_url: str | None = None, log: Path | None = None
    ):
        self.data_dir, self.port, self.timings = data_dir, port, timings
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, **timings.env(), "HPOSTEER_LOG_LEVEL": "warning"}
        if database_url:
            env["HPOSTEER_DATABASE_URL"] = database_url
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = cli("serve", "--data-dir", str(data_dir), "--port", str(port))
        super().__init__("service", argv, env, log or data_dir.parent / "service.log")

    def start(self, timeout_s: float = 60.0) -> None:
        super().start()
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if not self.alive():
                raise RuntimeError(f"the service exited (code {self.process.returncode if self.process else None})")
            if time.monotonic() > deadline:
                raise RuntimeError("the service did not answer /healthz in time")
            time.sleep(0.05)

    def token(self, role: str, owner: str) -> str:
        out = subprocess.run(
            cli("token", "create", "--data-dir", str(self.data_dir), "--role", role, "--owner", owner, "--json"),
            capture_output=True, text=True, check=True, env=self.env, cwd=REPO,
        )  # fmt: skip
        return str(json.loads(out.stdout)["token"])


class PilotProcess(Managed):
    """`hposteer pilot` with its own working directory; ``extra_env`` reaches its payloads."""

    def __init__(
        self,
        name: str,
        url: str,
        token: str,
        workdir: Path,
        log: Path,
        *,
        slots: int = 2,
        exit_when_idle_s: float | None = None,
        extra_env: Mapping[str, str] | None = None,
    ):
        bin_dir = str(Path(sys.executable).parent)
        env = {**os.environ, "HPOSTEER_TOKEN": token, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
        env.update(extra_env or {})
        argv = cli("pilot", "--server", url, "--slots", str(slots), "--workdir", str(workdir), "--name", name)
        if exit_when_idle_s is not None:
            argv += ["--exit-when-idle", str(exit_when_idle_s)]
        super().__init__(name, argv, env, log)


def submit_phpo(project: Path, url: str, token: str, config: Mapping[str, Any], *, timeout_s: float = 120) -> int:
    """Submit ``config`` (phpo --loadJson keys) from ``project`` (its files become the sandbox)."""
    (project / "cfg.json").write_text(json.dumps(dict(config)))
    result = subprocess.run(
        [sys.executable, "-m", "hposteer.client.phpo", "--loadJson", "cfg.json", "--server", url, "--token", token,
         "--dumpJson", "dump.json"],
        cwd=project, capture_output=True, text=True, check=False, timeout=timeout_s,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"phpo failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return int(json.loads((project / "dump.json").read_text())["jediTaskID"])


def task_json(url: str, token: str, task_id: int, *, points: bool = False) -> dict[str, Any]:
    """`hposteer task show ID --json [--points]` as a real process."""
    args = ["task", "show", str(task_id), "--server", url, "--token", token, "--json"]
    result = subprocess.run(
        cli(*args, *(["--points"] if points else [])), capture_output=True, text=True, check=False, cwd=REPO
    )
    if result.returncode != 0:
        raise RuntimeError(f"task show failed: {result.stdout}{result.stderr}")
    return dict(json.loads(result.stdout))
