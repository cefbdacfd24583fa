"""Shared fixtures: real databases (SQLite, and PostgreSQL when configured) and a live service.

``live_service`` runs the real FastAPI app under uvicorn on a loopback port, on its own
SQLite database, and hands out real tokens: tests talk to it over real HTTP.
Under ``CI=true`` a test that needs PostgreSQL fails instead of skipping.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import uvicorn

from hposteer.service.config import Settings
from hposteer.service.operations.auth import create_token
from hposteer.service.operations.context import NoTrigger, Services, build_services
from hposteer.service.store.migrate import upgrade

IN_CI = os.environ.get("CI", "").lower() == "true"
# Property tests explore new examples on developer machines and replay a fixed set in CI.
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
if IN_CI:
    hypothesis.settings.load_profile("ci")
LOCAL_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_url() -> str | None:
    """$HPOSTEER_TEST_POSTGRES_URL, else a PostgreSQL answering on the usual local port."""
    if "HPOSTEER_TEST_POSTGRES_URL" in os.environ:
        return os.environ["HPOSTEER_TEST_POSTGRES_URL"] or None
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=0.2).close()
    except OSError:
        return None
    return LOCAL_POSTGRES


POSTGRES_URL = _postgres_url()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fast_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings with test-sized timings (docs/reliability.md: heartbeat 0.5 s, TTL 2 s, reaper 0.25 s)."""
    values: dict[str, object] = {
        "data_dir": data_dir,
        "lease_ttl_s": 2.0,
        "heartbeat_interval_s": 0.5,
        "reaper_interval_s": 0.25,
        "idle_poll_s": 0.1,
        "steering_mode": "thread",
        "steering_poll_s": 0.2,
        "token_cache_s": 0.0,
        "log_level": "warning",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class LiveService:
    url: str
    settings: Settings
    services: Services
    user_token: str
    other_user_token: str
    pilot_token: str
    admin_token: str

    def token(self, role: str, owner: str) -> str:
        return create_token(self.services.db, role=role, owner=owner)[1]


class ServerThread:
    """uvicorn in a thread of the test process, stopped cleanly at the end."""

    def __init__(self, settings: Settings):
        from hposteer.service.app import create_app

        self.port = free_port()
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def live_service_on(data_dir: Path, backend: str = "sqlite", **overrides: object) -> Iterator[LiveService]:
    """A real service on loopback over a fresh database of ``backend`` (``sqlite`` or ``postgresql``:
    its own database, dropped afterwards), with a token of each role."""
    databases = None
    if backend == "postgresql":
        require_postgres()
        databases = _postgres_database()
        overrides = {"database_url": next(databases), **overrides}
    settings = fast_settings(data_dir, **overrides)
    try:
        with ServerThread(settings) as server:
            services: Services = server.app.state.services
            yield LiveService(
                url=server.url,
                settings=settings,
                services=services,
                user_token=create_token(services.db, role="user", owner="alice")[1],
                other_user_token=create_token(services.db, role="user", owner="bob")[1],
                pilot_token=create_token(services.db, role="pilot", owner="site-admin")[1],
                admin_token=create_token(services.db, role="admin", owner="root")[1],
            )
    finally:
        if databases is not None:
            for _ in databases:
                pass


def require_postgres() -> None:
    """Skip without a PostgreSQL server, except under CI=true, where that fails."""
    if POSTGRES_URL is None:
        if IN_CI:
            pytest.fail("CI=true but HPOSTEER_TEST_POSTGRES_URL is not set: PostgreSQL tests must run in CI")
        pytest.skip("PostgreSQL not configured (set HPOSTEER_TEST_POSTGRES_URL)")


@pytest.fixture(scope="module")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """The service on SQLite (tests/api/conftest.py makes the API suite's run on both backends)."""
    with live_service_on(tmp_path_factory.mktemp("service")) as service:
        yield service


def _postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test module, dropped afterwards."""
    from sqlalchemy import create_engine, text

    assert POSTGRES_URL is not None
    name = f"hposteer_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_services(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    """Use-case services on a fresh database of each backend (the store test suite runs on both)."""
    if request.param == "postgresql":
        require_postgres()
        databases = _postgres_database()
        url = next(databases)
        settings = fast_settings(tmp_path, database_url=url)
    else:
        databases = None
        settings = fast_settings(tmp_path)
    services = build_services(settings, NoTrigger())
    upgrade(services.db.engine)
    try:
        yield services
    finally:
        services.db.dispose()
        if databases is not None:
            for _ in databases:
                pass


def docker_with_image(image: str) -> Any:
    """A Docker client that has ``image`` (built by `make images`); skips without one, except
    under CI=true, where .ci/run starts dockerd and builds the images, so a missing one fails."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
        client.images.get(image)
    except docker.errors.DockerException as exc:
        if IN_CI:
            pytest.fail(f"CI=true but the Docker engine or the image {image} is not available: {exc}")
        pytest.skip(f"no Docker engine with {image} here (make images): {exc}")
    return client


def containers_under(client: Any, role: str, root: Path) -> list[Any]:
    """The service's containers of ``role`` (hposteer.role) whose working directory (hposteer.workdir) is
    under ``root``: one test's own, whatever other tests, in this process or in parallel ones, run."""
    listed = client.containers.list(all=True, filters={"label": f"hposteer.role={role}"})
    return [c for c in listed if Path(c.labels.get("hposteer.workdir", "/")).is_relative_to(root)]


def podman_with_image(image: str) -> str:
    """``localhost/<image>`` in podman's storage, moved over from Docker (`docker save | podman load`) when
    podman lacks it; skips without podman or the image, except under CI=true (.ci/run installs podman and
    builds the images), where that fails."""
    import shutil
    import subprocess

    local = f"localhost/{image}"
    problem = None
    if shutil.which("podman") is None:
        problem = "no podman command"
    elif subprocess.run(["podman", "image", "exists", local], check=False).returncode != 0:
        moved = subprocess.run(
            f"docker save {image} | podman load", shell=True, check=False, capture_output=True, text=True, timeout=300
        )  # fixed text: the image name is the test's own constant
        if subprocess.run(["podman", "image", "exists", local], check=False).returncode != 0:
            problem = f"podman has no {local} and `docker save {image} | podman load` failed: {moved.stderr.strip()}"
    if problem is not None:
        if IN_CI:
            pytest.fail(f"CI=true but podman or the image is not available: {problem}")
        pytest.skip(problem)
    return local
