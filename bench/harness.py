"""A real service process for benchmarks: `python -m service serve` on a fresh SQLite directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class Service:
    url: str
    data_dir: Path
    user_token: str
    pilot_token: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _token(data_dir: Path, role: str, owner: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "service", "token", "create", "--data-dir", str(data_dir), "--role", role,
         "--owner", owner, "--json"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return str(json.loads(out.stdout)["token"])


@contextmanager
def running_service(**env_settings: str) -> Iterator[Service]:
    """Start the service as its own process (steering in its child process, as in production)."""
    with tempfile.TemporaryDirectory(prefix="hposteer-bench-") as tmp:
        data_dir = Path(tmp)
        port = _free_port()
        env = dict(os.environ)
        env.update({f"HPOSTEER_{k.upper()}": v for k, v in env_settings.items()})
        log = (data_dir / "service.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--data-dir", str(data_dir), "--port", str(port),
             "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"service did not start: {(data_dir / 'service.log').read_text()}")
                time.sleep(0.1)
            yield Service(url, data_dir, _token(data_dir, "user", "bench"), _token(data_dir, "pilot", "bench"))
        finally:
            process.terminate()
            process.wait(timeout=60)
            log.close()


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"
