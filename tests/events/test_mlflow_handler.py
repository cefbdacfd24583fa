"""The ``mlflow`` handler against a real MLflow tracking server (``mlflow server`` on loopback, SQLite store).

Points go through a live service over HTTP (one with metadata and a metrics tarball, one that fails
every attempt, one plain); the runs are then read back through ``mlflow.MlflowClient``.
"""

from __future__ import annotations

import contextlib
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

from hposteer.service.config import Settings
from hposteer.service.core.events import JobEnded
from hposteer.service.events.mlflow_catchup import CatchUpResult
from hposteer.service.events.mlflow_handler import MlflowHandler
from tests.conftest import LiveService, free_port, live_service_on
from tests.events.plugins import Plugins, acquire_job, bus_of, complete, wait_for
from tests.support.rest_api import http, new_site, register, submission, wait_state

SERVER_START_S = 120  # a fresh SQLite store migrates first; the machine may be busy


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_mlflow(tmp_path_factory.mktemp("mlflow"), free_port()) as url:
        yield url


@contextlib.contextmanager
def running_mlflow(root: Path, port: int) -> Iterator[str]:
    """A real ``mlflow server`` on a loopback port, stopped (its whole process group) afterwards; a
    server started again on the same root and port finds its runs."""
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
    with log_path.open("ab") as log:
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


def test_a_points_intermediate_reports_become_metric_histories(tmp_path: Path, mlflow_server: str) -> None:
    """Each attempt's reports are logged with their steps: the last reporting attempt as ``report.<name>``,
    an earlier one as ``attempt<N>.report.<name>``."""
    settings = {"event_handlers": ["mlflow"], "mlflow_tracking_uri": mlflow_server}
    with live_service_on(tmp_path / "data", **settings) as live:
        site = new_site()
        with http(live, live.user_token) as user, http(live, live.pilot_token) as pilot:
            body = submission(name="user.alice.curves", site=site, max_points=1, n_points_per_iteration=1)
            task_id = int(user.post("/api/v1/tasks", json=body).json()["id"])
            pilot_id = register(pilot, site)
            for steps in (range(2), range(3)):
                job = acquire_job(pilot, pilot_id)
                reports = [{"step": s, "metrics": {"loss": 1.0 / (s + 1)}} for s in steps]
                beat = pilot.post(
                    f"/api/v1/pilot/attempts/{job['attempt_id']}/heartbeat",
                    json={"lease_token": job["lease_token"], "reports": reports},
                )
                assert beat.status_code == 200 and beat.json()["reports_stored"] == len(reports), beat.text
                complete(pilot, job, None if job["attempt_number"] == 1 else 0.25)
            wait_state(user, task_id, "finished")
        assert bus_of(live).drain(90)
    mlflow = MlflowClient(tracking_uri=mlflow_server)
    experiment = mlflow.get_experiment_by_name(f"hposteer/{task_id}-user.alice.curves")
    assert experiment is not None
    (run,) = mlflow.search_runs([experiment.experiment_id])
    history = sorted((m.step, m.value) for m in mlflow.get_metric_history(run.info.run_id, "report.loss"))
    assert history == [(0, 1.0), (1, 0.5), (2, 1.0 / 3)]
    earlier = sorted((m.step, m.value) for m in mlflow.get_metric_history(run.info.run_id, "attempt1.report.loss"))
    assert earlier == [(0, 1.0), (1, 0.5)]


def run_names(url: str, experiment: str) -> list[str]:
    """The ``hposteer.point`` tags of the experiment's runs, sorted (a point recorded twice shows twice)."""
    mlflow = MlflowClient(tracking_uri=url)
    found = mlflow.get_experiment_by_name(experiment)
    return (
        []
        if found is None
        else sorted(r.data.tags["hposteer.point"] for r in mlflow.search_runs([found.experiment_id]))
    )


def test_points_ended_while_mlflow_is_down_are_recorded_once_it_is_back(
    tmp_path: Path, plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The MLflow client's own retries (minutes by default) are cut, so that the outage is seen at once.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    root, port = tmp_path / "mlflow", free_port()
    root.mkdir()
    server = contextlib.ExitStack()
    url = server.enter_context(running_mlflow(root, port))
    settings = {"event_handlers": ["mlflow"], "mlflow_tracking_uri": url, "mlflow_retry_s": 0.5}
    try:
        with live_service_on(tmp_path / "data", **settings) as live:
            bus = bus_of(live)
            handler = bus.handler("mlflow")
            assert isinstance(handler, MlflowHandler)
            site = new_site()
            with http(live, live.user_token) as user, http(live, live.pilot_token) as pilot:
                body = submission(
                    name="user.alice.outage", site=site, max_points=4, n_points_per_iteration=4, max_attempts=1
                )
                task_id = int(user.post("/api/v1/tasks", json=body).json()["id"])
                experiment = f"hposteer/{task_id}-user.alice.outage"
                pilot_id = register(pilot, site)
                # Each job is taken just before it ends (leases last 2 s here, and no heartbeat is sent).
                complete(pilot, acquire_job(pilot, pilot_id), 0.1)
                assert bus.drain(60) and run_names(url, experiment) == ["1"]

                server.close()  # MLflow goes down; the service does not notice but for the handler
                complete(pilot, acquire_job(pilot, pilot_id), 0.2)
                complete(pilot, acquire_job(pilot, pilot_id), None)  # a failed point
                wait_for(lambda: handler.owed() == 2, timeout_s=60, what="points 2 and 3 to be owed")
                assert bus.stats()["mlflow"].failed == 0, "an outage is not a handler failure"

                server.enter_context(running_mlflow(root, port))  # back, with the same store
                complete(pilot, acquire_job(pilot, pilot_id), 0.4)
                wait_for(lambda: handler.owed() == 0, timeout_s=120, what="the backlog to drain")
                wait_state(user, task_id, "finished")
            assert bus.drain(60)
            assert run_names(url, experiment) == ["1", "2", "3", "4"], "each point once, none lost"
            runs = MlflowClient(tracking_uri=url).search_runs(
                [MlflowClient(tracking_uri=url).get_experiment_by_name(experiment).experiment_id]  # type: ignore[union-attr]
            )
            by_point = {r.data.tags["hposteer.point"]: r for r in runs}
            assert by_point["3"].info.status == "FAILED" and by_point["3"].data.metrics["attempts"] == 1.0
            assert by_point["2"].data.metrics["loss"] == 0.2
    finally:
        server.close()


def sync(live_settings: Settings, *args: str, uri: str | None) -> subprocess.CompletedProcess[str]:
    """``hposteer mlflow sync`` as an operator runs it on the server host (a real process)."""
    command = [
        sys.executable,
        "-m",
        "hposteer.service",
        "mlflow",
        "sync",
        "--database-url",
        live_settings.resolved_database_url,
    ]
    command += ["--data-dir", str(live_settings.data_dir), *args] + (["--tracking-uri", uri] if uri else [])
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    env.pop("HPOSTEER_MLFLOW_TRACKING_URI", None)
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)


def end_three_points(live: LiveService, name: str) -> tuple[int, str]:
    """A task of 3 points evaluated (the first failed), on a service without the mlflow handler: as a service
    stopped with points owed, or killed before handing their events over, leaves them. The task's id and site."""
    site = new_site()
    with http(live, live.user_token) as user, http(live, live.pilot_token) as pilot:
        body = submission(name=name, site=site, max_points=3, n_points_per_iteration=3, max_attempts=1)
        task_id = int(user.post("/api/v1/tasks", json=body).json()["id"])
        pilot_id = register(pilot, site)
        jobs = [acquire_job(pilot, pilot_id) for _ in range(3)]
        for n, job in enumerate(jobs):
            complete(pilot, job, None if n == 0 else 0.5 * n)
        wait_state(user, task_id, "finished")
    return task_id, site


def test_mlflow_sync_records_the_points_no_handler_recorded(tmp_path: Path, mlflow_server: str) -> None:
    with live_service_on(tmp_path / "data") as live:
        task_id, site = end_three_points(live, "user.alice.sync")
        experiment = f"hposteer/{task_id}-user.alice.sync"
        assert run_names(mlflow_server, experiment) == []

        first = sync(live.settings, uri=mlflow_server)
        assert first.returncode == 0, first.stderr
        assert f"task {task_id}: 3 run(s) recorded, 0 already up to date" in first.stdout
        assert run_names(mlflow_server, experiment) == ["1", "2", "3"]
        again = sync(live.settings, str(task_id), uri=mlflow_server)
        assert again.returncode == 0 and f"task {task_id}: 0 run(s) recorded, 3 already up to date" in again.stdout
        assert run_names(mlflow_server, experiment) == ["1", "2", "3"], "a second sync makes no second run"

        # The failed point is retried and done: its run is out of date and the next sync brings it up to date.
        with http(live, live.user_token) as user, http(live, live.pilot_token) as pilot:
            assert user.post(f"/api/v1/tasks/{task_id}/retry").status_code == 200
            complete(pilot, acquire_job(pilot, register(pilot, site)), 0.05)
            wait_state(user, task_id, "finished")
        third = sync(live.settings, str(task_id), uri=mlflow_server)
        assert f"task {task_id}: 1 run(s) recorded, 2 already up to date" in third.stdout, third.stdout
        mlflow = MlflowClient(tracking_uri=mlflow_server)
        found = mlflow.get_experiment_by_name(experiment)
        assert found is not None
        (run,) = mlflow.search_runs([found.experiment_id], filter_string="tags.`hposteer.point` = '1'")
        assert run.info.status == "FINISHED" and run.data.metrics["loss"] == 0.05

        # Bad input: each a one-line error and a non-zero exit.
        unknown = sync(live.settings, "999", uri=mlflow_server)
        assert unknown.returncode == 1 and unknown.stderr.strip() == "error: task 999 does not exist"
        missing = sync(live.settings, uri=None)
        assert missing.returncode == 2 and "pass --tracking-uri or set HPOSTEER_MLFLOW_TRACKING_URI" in missing.stderr
        down = sync(live.settings, uri=f"http://127.0.0.1:{free_port()}")
        assert down.returncode == 1 and down.stderr.startswith("error: MLflow at http://127.0.0.1:"), down.stderr
        assert len(down.stderr.strip().splitlines()) == 1


def test_a_starting_service_records_the_recent_points_left_without_a_run(
    tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    data = tmp_path / "data"
    with live_service_on(data) as live:
        task_id, _ = end_three_points(live, "user.alice.catchup")
    experiment = f"hposteer/{task_id}-user.alice.catchup"

    def started(uri: str, **overrides: object) -> contextlib.AbstractContextManager[LiveService]:
        return live_service_on(data, event_handlers=["mlflow"], mlflow_tracking_uri=uri, **overrides)

    def caught_up(live: LiveService) -> CatchUpResult:
        handler = bus_of(live).handler("mlflow")
        assert isinstance(handler, MlflowHandler)
        result: CatchUpResult = wait_for(lambda: handler.catch_up.result, timeout_s=60, what="the catch-up")
        return result

    # Points that ended before the window (here: the last 0.1 s) are left to `hposteer mlflow sync`.
    with started(mlflow_server, mlflow_catchup_days=0.1 / 86400) as live:
        assert caught_up(live) == CatchUpResult(tasks=0, handed=0, refused=0)
    with started(mlflow_server, mlflow_catchup_days=0) as live:  # off
        assert bus_of(live).drain(30), "the startup event was handled"
        assert not bus_of(live).handler("mlflow").catch_up.started  # type: ignore[attr-defined]
    assert run_names(mlflow_server, experiment) == []

    # A host restarted: the service comes up before MLflow does. The catch-up waits for it.
    root, port = tmp_path / "mlflow", free_port()
    root.mkdir()
    url = f"http://127.0.0.1:{port}"
    with started(url, mlflow_retry_s=0.5) as live:
        handler = bus_of(live).handler("mlflow")
        assert isinstance(handler, MlflowHandler)
        time.sleep(1.5)  # three tries against nothing
        assert handler.catch_up.started and handler.catch_up.result is None, "started, waiting for MLflow"
        with running_mlflow(root, port):
            assert caught_up(live) == CatchUpResult(tasks=1, handed=3, refused=0)
            wait_for(lambda: run_names(url, experiment) == ["1", "2", "3"], timeout_s=60, what="3 runs")
            failed = MlflowClient(tracking_uri=url).search_runs(
                [MlflowClient(tracking_uri=url).get_experiment_by_name(experiment).experiment_id],  # type: ignore[union-attr]
                filter_string="tags.`hposteer.point` = '1'",
            )
            assert [r.info.status for r in failed] == ["FAILED"]
            with started(url) as again:  # the next start finds every run up to date
                assert caught_up(again) == CatchUpResult(tasks=1, handed=0, refused=0)
            assert run_names(url, experiment) == ["1", "2", "3"]
