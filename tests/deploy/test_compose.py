"""The compose deployment (deploy/compose/docker-compose.yml), brought up for real with Debian's
`docker-compose` (v1): PostgreSQL, the one-shot schema upgrade and pilot token, two service replicas
and a pilot. A task submitted with `phpo` through replica 2 is evaluated by the pilot, which talks to
replica 1 only: it finishing proves that the replicas share the database and that uploads live in it
(HPOSTEER_BLOB_STORE=database: the sandbox uploaded to one is downloaded from the other, which has no
volume in common with it). Runs as a compose project of its own with
random host ports, and is always taken down with its volumes.

Without docker-compose, a Docker engine or the images (`make deploy-images`) it skips; under CI=true
(.ci/run installs and builds them) it fails instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI, docker_with_image, free_port
from tests.support.cli_processes import submit, wait_json

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "deploy" / "compose" / "docker-compose.yml"
IMAGES = ("hposteer/postgres:latest", "hposteer/service:latest", "hposteer/pilot:latest")


@dataclass
class Project:
    """One compose project: its command line and where its two replicas answer on this host."""

    name: str
    env: dict[str, str]
    replica_urls: tuple[str, str]

    def compose(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker-compose", "--project-name", self.name, "--file", str(COMPOSE_FILE), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", service).stdout


def _require_compose() -> None:
    """docker-compose and the three images, or skip (fail under CI=true)."""
    if shutil.which("docker-compose") is None:
        if IN_CI:
            pytest.fail("CI=true but docker-compose is missing (.ci/run installs Debian's docker-compose)")
        pytest.skip("no docker-compose here (apt-get install docker-compose)")
    for image in IMAGES:
        docker_with_image(image).close()


def _wait_healthy(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not become healthy within {timeout_s} s"
        time.sleep(0.5)


@pytest.fixture
def project() -> Iterator[Project]:
    _require_compose()
    ports = (free_port(), free_port())
    env = {
        **os.environ,
        "HPOSTEER_PORT_1": str(ports[0]),
        "HPOSTEER_PORT_2": str(ports[1]),
        "HPOSTEER_DB_PASSWORD": secrets.token_urlsafe(12),
    }
    env.pop("COMPOSE_FILE", None)
    env.pop("COMPOSE_PROJECT_NAME", None)
    created = Project(
        name=f"hpsdeploy{uuid.uuid4().hex[:10]}",
        env=env,
        replica_urls=(f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"),
    )
    try:
        up = created.compose("up", "--detach", timeout=180)
        assert up.returncode == 0, f"docker-compose up failed:\n{up.stderr}\n{created.compose('logs').stdout[-4000:]}"
        yield created
    finally:
        down = created.compose("down", "--volumes", "--remove-orphans", "--timeout", "20")
        assert down.returncode == 0, down.stderr


def test_compose_runs_a_task_with_two_replicas_and_a_pilot(project: Project, tmp_path: Path) -> None:
    replica_2 = project.replica_urls[1]
    _wait_healthy(replica_2)  # `up` waited for replica 1 only (the pilot depends on it)
    created = project.compose(
        "exec", "-T", "service-1", "hposteer", "token", "create", "--role", "user", "--owner", "compose-test"
    )
    assert created.returncode == 0, created.stderr
    user_token = created.stdout.strip()
    assert user_token.startswith("hps_"), created.stdout

    started = time.monotonic()
    task_id = submit(tmp_path / "project", replica_2, user_token, maxPoints=8)
    task = wait_json(replica_2, user_token, task_id, timeout_s=60)
    took = time.monotonic() - started

    assert task["state"] == "finished" and task["end_reason"] == "max_points", task
    progress = task["progress"]
    assert isinstance(progress, dict), task
    assert progress["done"] == 8 and progress["pending"] == 0 and progress["running"] == 0, progress
    assert took < 60

    # Both replicas served: the user's requests went to replica 2, the pilot's to replica 1,
    # including the download of the sandbox that replica 2 stored.
    log_1, log_2 = project.logs("service-1"), project.logs("service-2")
    assert '"POST /api/v1/sandboxes HTTP/1.1" 201' in log_2
    assert '"POST /api/v1/tasks HTTP/1.1" 201' in log_2
    assert "GET /api/v1/pilot/sandboxes/" in log_1 and '"POST /api/v1/pilot/acquire HTTP/1.1" 200' in log_1
    assert "/api/v1/pilot/" not in log_2
    assert "schema version" in project.logs("migrate")
    assert "created /run/hposteer/pilot-token" in project.logs("pilot-token")
    assert "finished, loss" in project.logs("pilot")

    # Nothing in the project runs as root.
    for service in ("postgres", "service-1", "service-2", "pilot"):
        uid = project.compose("exec", "-T", service, "id", "-u")
        assert uid.returncode == 0 and uid.stdout.strip() not in ("", "0"), (service, uid.stdout, uid.stderr)
