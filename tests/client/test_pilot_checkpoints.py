"""Checkpoints, metadata and metrics through real pilots and a live service, and `hposteer task download`."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hposteer.client.artifacts import list_artifacts, upload
from hposteer.client.cli import main as hposteer
from hposteer.client.http import ApiClient
from hposteer.client.pilot.checkpoints import CheckpointSpec, CheckpointUploader
from hposteer.client.pilot.logs import Logger
from hposteer.client.pilot.slots import cpu_slots
from tests.conftest import LiveService
from tests.support.pilots import new_site, points, run_pilot, submit, wait_until
from tests.support.pilots import upload as upload_sandbox

RESUMING = """
import json, os, sys
if os.environ["HPOSTEER_ATTEMPT"] == "1":
    os.unlink("ckpt")  # the sandbox's link (see the test); a retry finds it replaced by the checkpoint
    os.makedirs("ckpt/deep", exist_ok=True)
    open("ckpt/deep/epoch", "w").write("5")
    open("state.json", "w").write('{"step": 5}')
    sys.exit(1)
if os.path.exists("restart.tgz"):
    import tarfile
    epoch = tarfile.open("restart.tgz").extractfile("ckpt/deep/epoch").read().decode()
    assert not os.path.exists("ckpt/deep"), "handed over, not unpacked"
else:
    assert not os.path.islink("ckpt"), "the sandbox's link gave way to the checkpoint's directory"
    epoch = open("ckpt/deep/epoch").read()
    assert json.load(open("state.json")) == {"step": 5}
json.dump({"loss": float(epoch)}, open("output.json", "w"))
"""


def test_a_retry_resumes_from_the_checkpoint_unpacked_or_handed_over(live_service: LiveService, tmp_path: Path) -> None:
    site = new_site()
    common: dict[str, Any] = {"max_points": 1, "max_attempts": 2, "checkpoint_to_save": ["ckpt/", "state.json"]}
    with ApiClient(live_service.url, live_service.user_token) as api:
        link = tarfile.TarInfo("ckpt")  # a link inside the directory: a restore must not write through it
        link.type, link.linkname = tarfile.SYMTYPE, "."
        sha = upload_sandbox(api, {"eval.py": RESUMING}, [link])
        unpacked = submit(api, site, sha, **common)
        handed = submit(api, site, sha, checkpoint_to_load="restart.tgz", **common)
        run_pilot(live_service, site, tmp_path / "work", slots=cpu_slots(2), idle_s=1.0)
        results = {task: points(api, task)[0] for task in (unpacked, handed)}
    for task, point in results.items():
        assert point["state"] == "done" and point["loss"] == 5.0, point
        assert [a["failure_class"] for a in point["attempts"]] == ["payload_error", None]
        retry = tmp_path / "work" / f"task{task}" / "point1.attempt2"
        assert not list(retry.glob(".hposteer-*")), "no staging left behind"
    resumed = tmp_path / "work" / f"task{unpacked}" / "point1.attempt2"
    assert (resumed / "ckpt" / "deep" / "epoch").read_text() == "5" and not (resumed / "deep").exists()
    assert (tmp_path / "work" / f"task{handed}" / "point1.attempt2" / "restart.tgz").is_file()


WATCHED = """
import json, os, time
os.makedirs("ckpt", exist_ok=True)
open("ckpt/step", "w").write("1")
deadline = time.time() + 15
while not os.path.exists("go") and time.time() < deadline:
    time.sleep(0.05)
open("ckpt/step", "w").write("2")
json.dump({"loss": 1.0}, open("output.json", "w"))
"""


def _checkpoint_step(api: ApiClient, task_id: int) -> str | None:
    found = list_artifacts(api, task_id, "checkpoint")
    if not found:
        return None
    data = api.request("GET", found[0]["url"]).content
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile("ckpt/step")
        return None if member is None else member.read().decode()


def test_checkpoints_are_uploaded_while_the_payload_runs_and_at_its_end(
    live_service: LiveService, tmp_path: Path
) -> None:
    site = new_site()
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(
            api,
            site,
            upload_sandbox(api, {"eval.py": WATCHED}),
            max_points=1,
            checkpoint_to_save=["ckpt"],
            checkpoint_interval_s=0.5,
        )
        pilot = threading.Thread(target=run_pilot, args=(live_service, site, tmp_path / "work", cpu_slots(1), 1.0))
        pilot.start()
        try:
            wait_until(lambda: _checkpoint_step(api, task_id) == "1", timeout_s=10)
        finally:
            for workdir in (tmp_path / "work").glob(f"task{task_id}/point1.attempt1"):
                (workdir / "go").write_text("")
            pilot.join(timeout=30)
        assert points(api, task_id)[0]["state"] == "done"
        assert _checkpoint_step(api, task_id) == "2", "the final check uploaded the last state"


REPORTING = """
import json, os
point = int(os.environ["HPOSTEER_POINT_ID"])
os.makedirs("metrics", exist_ok=True)
open("metrics/curve.csv", "w").write(f"epoch,loss\\n1,{point}\\n")
meta = {"point": point, "notes": "x" * (1100000 if point == 2 else 10)}
json.dump(meta, open("meta.json", "w"))
open("ckpt", "w").write(str(point))
json.dump({"loss": float(point)}, open("output.json", "w"))
"""


def test_metadata_metrics_and_task_download(
    live_service: LiveService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = new_site()
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(
            api,
            site,
            upload_sandbox(api, {"eval.py": REPORTING}),
            max_points=2,
            evaluation_meta="meta.json",
            evaluation_metrics="metrics",
            checkpoint_to_save=["ckpt"],
        )
        run_pilot(live_service, site, tmp_path / "work", slots=cpu_slots(2), idle_s=1.0)
        small, large = (p["attempts"][0] for p in points(api, task_id))
    assert small["state"] == large["state"] == "succeeded", "metadata problems never change the outcome"
    assert not small["message"]
    assert (
        "metadata not sent: meta.json has 1100" in large["message"] and "over the limit of 1048576" in large["message"]
    )
    workdir = tmp_path / "work" / f"task{task_id}" / "point1.attempt1"
    assert (workdir / "metrics_1" / "curve.csv").is_file() and not (workdir / "metrics").exists()

    out = tmp_path / "download"
    base = ["--server", live_service.url, "--token", live_service.user_token]
    assert hposteer(["task", "download", str(task_id), "-o", str(out), *base]) == 0
    printed = capsys.readouterr().out
    assert printed.count("wrote ") == 5 and "5 file(s) in" in printed
    for point in (1, 2):
        archive = out / "metrics" / f"{task_id}.metrics.{point:06d}.tgz"
        with tarfile.open(archive) as tar:
            assert tar.getnames() == [f"metrics_{point}", f"metrics_{point}/curve.csv"]
        with tarfile.open(out / "checkpoints" / f"{task_id}_{point}.checkpoint.tar.gz") as tar:
            assert tar.getnames() == ["ckpt"]
    meta = json.loads((out / "meta" / "1.json").read_text())
    assert meta == {
        "point_id": 1,
        "attempts": [{"number": 1, "state": "succeeded", "meta": {"point": 1, "notes": "x" * 10}}],
    }
    assert not (out / "meta" / "2.json").exists()

    with ApiClient(live_service.url, live_service.user_token) as api:
        empty = submit(api, site, upload_sandbox(api, {"eval.py": "pass"}), max_points=1)
    assert hposteer(["task", "download", str(empty), "-o", str(tmp_path / "none"), *base]) == 0
    assert "has no metrics, metadata or checkpoints to download" in capsys.readouterr().out
    bob = ["--server", live_service.url, "--token", live_service.other_user_token]
    assert hposteer(["task", "download", str(task_id), "-o", str(tmp_path / "bob"), *bob]) == 1
    assert "does not exist (or belongs to another user)" in capsys.readouterr().err
    assert not (tmp_path / "bob").exists()


# -- hostile checkpoints ------------------------------------------------------------------------


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def _gzip_bomb(expanded: int = 1100 * 2**20) -> bytes:
    """A tar.gz of ~1 MB holding one member of 1.1 GiB of zeros (gzip members concatenated)."""
    header = tarfile.TarInfo("ckpt/zeros")
    header.size = expanded
    block = gzip.compress(b"\0" * 2**20, compresslevel=9)
    return gzip.compress(header.tobuf(format=tarfile.GNU_FORMAT)) + block * (expanded // 2**20)


def hostile_archives(outside: Path) -> dict[str, bytes]:
    return {
        "absolute_path": _tar([(_member(str(outside / "escaped-absolute")), b"x")]),
        "path_traversal": _tar([(_member("../../../escaped-dotdot"), b"x")]),
        "link_outside": _tar([(_member("ckpt", tarfile.SYMTYPE, str(outside)), b"")]),
        "special_file": _tar([(_member("ckpt", tarfile.CHRTYPE), b"")]),
        "link_not_allowed": _tar([(_member("ckpt/a"), b"x"), (_member("ckpt/b", tarfile.SYMTYPE, "a"), b"")]),
        "too_many_members": _tar([(_member(f"ckpt/{i}"), b"") for i in range(10_001)]),
        "too_large": _gzip_bomb(),
    }


def test_hostile_checkpoints_fail_the_next_attempt_and_write_nothing_outside(
    live_service: LiveService, tmp_path: Path
) -> None:
    site = new_site()
    outside = tmp_path / "outside"
    outside.mkdir()
    archives = hostile_archives(outside)
    assert len(archives["too_large"]) < 2 * 2**20, "a real bomb: about 1000:1"
    with ApiClient(live_service.url, live_service.user_token) as api:
        sha = upload_sandbox(api, {"eval.py": "import json; json.dump({'loss': 1}, open('output.json', 'w'))"})
        tasks = {
            submit(api, site, sha, max_points=1, max_attempts=2, checkpoint_to_save=["ckpt"]): code for code in archives
        }
        with ApiClient(live_service.url, live_service.pilot_token) as pilot:
            _plant(pilot, site, tasks, archives, tmp_path)
        run_pilot(live_service, site, tmp_path / "work", slots=cpu_slots(2), idle_s=1.0)
        for task_id, code in tasks.items():
            point = points(api, task_id)[0]
            second = point["attempts"][1]
            assert point["state"] == "failed" and second["failure_class"] == "pilot_error", (code, point)
            assert second["message"].startswith("checkpoint refused: ") and f"[{code}]" in second["message"], second
            workdir = tmp_path / "work" / f"task{task_id}" / "point1.attempt2"
            assert sorted(p.name for p in workdir.iterdir()) == ["eval.py", "input.json"], (
                "nothing unpacked, no staging"
            )
    assert not list(outside.iterdir())
    assert not list(tmp_path.rglob("escaped-*")), "nothing written outside the working directory"


def _plant(pilot: ApiClient, site: str, tasks: dict[int, str], archives: dict[str, bytes], tmp_path: Path) -> None:
    """Play a first attempt of each task: upload its hostile checkpoint, then fail (all held at once,
    so that no task's retry comes back to this planter)."""
    pilot_id = pilot.register_pilot({"name": "planter", "site": site, "slots": [{"name": "0", "gpus": []}]})["pilot_id"]
    held: dict[int, Any] = {}
    deadline = time.monotonic() + 20
    while len(held) < len(tasks):
        assert time.monotonic() < deadline, "the points were not generated in time"
        job = pilot.acquire(pilot_id, "0")["job"]
        if job is None:
            time.sleep(0.05)
            continue
        path = tmp_path / f"planted-{job['task_id']}.tgz"
        path.write_bytes(archives[tasks[job["task_id"]]])
        upload(pilot, job["checkpoint"]["upload_url"], path, job["lease_token"])
        held[job["task_id"]] = job
    for job in held.values():
        report = {"lease_token": job["lease_token"], "outcome": "failure", "failure_class": "payload_error"}
        pilot.complete(job["attempt_id"], report)


# -- the pilot's own refusals --------------------------------------------------------------------


def test_the_pilot_refuses_to_upload_a_checkpoint_over_the_limit(tmp_path: Path) -> None:
    workdir = tmp_path / "task1" / "point1.attempt1"
    (workdir / "ckpt").mkdir(parents=True)
    (workdir / "ckpt" / "weights").write_bytes(os.urandom(4096))  # incompressible
    (workdir / "ckpt" / "link").symlink_to("weights")
    spec = CheckpointSpec(("ckpt",), None, 60.0, 1024, "/api/v1/pilot/attempts/1/checkpoint", None)
    job: Any = {"attempt_id": 1, "lease_token": "t"}
    with ApiClient("http://127.0.0.1:9", "unused") as api:  # never called: the pilot refuses first
        uploader = CheckpointUploader(api, job, spec, workdir, Logger(stream=io.StringIO()), "test")
        uploader.check()
        uploader.check()  # unchanged since: not packed again
    assert uploader.uploads == 0
    assert len(uploader.notes) == 2
    assert "checkpoint not saved:" in uploader.notes[1] and "over the limit of 1024 bytes" in uploader.notes[1]
    assert "leaves out links" in uploader.notes[0] and "ckpt/link" in uploader.notes[0]
