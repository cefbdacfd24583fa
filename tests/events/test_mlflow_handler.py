"""The ``mlflow`` handler against a real MLflow tracking server (``mlflow server`` on loopback, SQLite store).

Points go through a live service over HTTP (one with metadata and a metrics tarball, one that fails
every attempt, one plain); the runs are then read back through ``mlflow.MlflowClient``.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from service.core.events import JobEnded
from tests.api.test_api import http, new_site, register, submission, wait_state
from tests.conftest import free_port, live_service_on
from tests.events.plugins import Plugins, acquire_job, bus_of, complete

SERVER_START_S = 120  # a fresh SQLite store migrates first; the machine may be busy


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on a loopback port, stopped (its whole process group) afterwards."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job workers
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                raise AssertionError(f"mlflow server exited: {log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"mlflow server not up in {SERVER_START_S} s: {log_path.read_text()[-3000:]}")
            time.sleep(0.25)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its own session: uvicorn's workers go too
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)


def tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_each_evaluated_point_becomes_one_mlflow_run(tmp_path: Path, plugins: Plugins, mlflow_server: str) -> None:
    settings = {"event_handlers": ["mlflow", "recording"], "mlflow_tracking_uri": mlflow_server}
    tarball = tgz({"metrics/curve.csv": b"epoch,loss\n1,0.5\n2,0.2\n"})
    with live_service_on(tmp_path / "data", **settings) as live:
        site = new_site()
        with http(live, live.user_token) as user, http(live, live.pilot_token) as pilot:
            body = submission(
                name="user.alice.mlflow",
                site=site,
                max_points=3,
                n_points_per_iteration=3,
                max_attempts=2,
                evaluation_meta="meta.json",
                evaluation_metrics="metrics",
            )
            task_id = int(user.post("/api/v1/tasks", json=body).json()["id"])
            pilot_id = register(pilot, site)
            jobs = {job["point_id"]: job for job in (acquire_job(pilot, pilot_id) for _ in range(3))}
            first = jobs[1]
            headers = {"X-Lease-Token": first["lease_token"], "X-Content-SHA256": hashlib.sha256(tarball).hexdigest()}
            stored = pilot.put(first["metrics"]["upload_url"], content=tarball, headers=headers)
            assert stored.status_code == 201, stored.text
            complete(pilot, first, 0.2, meta={"epochs": 5, "val_acc": 0.9, "note": "first"})
            complete(pilot, jobs[2], None)
            complete(pilot, acquire_job(pilot, pilot_id), None)  # point 2's last attempt fails too
            complete(pilot, jobs[3], 0.3)
            wait_state(user, task_id, "finished")
            params = {n: user.get(f"/api/v1/tasks/{task_id}/points/{n}").json()["params"] for n in (1, 2, 3)}
        bus = bus_of(live)
        assert bus.drain(90), bus.stats()
        mlflow = MlflowClient(tracking_uri=mlflow_server)
        experiment = mlflow.get_experiment_by_name(f"hposteer/{task_id}-user.alice.mlflow")
        assert experiment is not None and experiment.tags["hposteer.task_id"] == str(task_id)
        runs = {r.data.tags["hposteer.point"]: r for r in mlflow.search_runs([experiment.experiment_id])}
        assert sorted(runs) == ["1", "2", "3"], "one run per evaluated point"

        # A replayed end_job (a duplicate delivery, or the point ending again after `task retry`) updates the run.
        ended = next(e for e in plugins.recorder.named("end_job") if isinstance(e, JobEnded) and e.point == 1)
        bus.emit(ended)
        assert bus.drain(60) and bus.stats()["mlflow"].failed == 0
        again = mlflow.search_runs([experiment.experiment_id])
        assert sorted(r.info.run_id for r in again) == sorted(r.info.run_id for r in runs.values())

    done, failed, plain = runs["1"], runs["2"], runs["3"]
    assert done.info.run_name == "point-1" and done.info.status == "FINISHED"
    assert done.data.params == {k: str(v) for k, v in params[1].items()}
    assert done.data.metrics == {"loss": 0.2, "failed": 0.0, "attempts": 1.0, "meta.epochs": 5.0, "meta.val_acc": 0.9}
    assert done.data.tags["hposteer.site"] == site and done.data.tags["hposteer.state"] == "done"
    assert done.data.tags["mlflow.user"] == "alice" and done.data.tags["hposteer.pilot"] == "t"
    assert {a.path for a in mlflow.list_artifacts(done.info.run_id)} == {"meta.json", "metrics"}
    (archive,) = mlflow.list_artifacts(done.info.run_id, "metrics")
    assert archive.path == f"metrics/{task_id}.metrics.000001.tgz"
    downloaded = Path(mlflow.download_artifacts(done.info.run_id, archive.path, str(tmp_path)))
    assert downloaded.read_bytes() == tarball
    meta = Path(mlflow.download_artifacts(done.info.run_id, "meta.json", str(tmp_path))).read_text()
    assert '"note": "first"' in meta

    assert failed.info.status == "FAILED" and failed.data.tags["hposteer.failure_class"] == "payload_error"
    assert failed.data.metrics == {"loss": 1e5, "failed": 1.0, "attempts": 2.0}, "PanDA's failure loss, flagged"
    assert failed.data.params == {k: str(v) for k, v in params[2].items()}
    assert plain.data.metrics == {"loss": 0.3, "failed": 0.0, "attempts": 1.0}
    assert mlflow.list_artifacts(plain.info.run_id) == []
