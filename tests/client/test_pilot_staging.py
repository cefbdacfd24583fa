"""Training data end to end: a real pilot stages dataset files (uploaded, registered paths and
URLs served over loopback) into working directories, writes input_ds.json, fills %IN_DATA,
reuses its cache, and fails an attempt with pilot_error when a file cannot be staged."""

from __future__ import annotations

import hashlib
import http.server
import json
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hposteer.client.datasets import register_dataset, upload_file
from hposteer.client.files import sha256_of
from hposteer.client.http import ApiClient
from hposteer.client.pilot.placeholders import fill_leftovers
from hposteer.client.pilot.slots import cpu_slots
from hposteer.client.wire import Job
from tests.conftest import LiveService
from tests.support.pilots import new_site, points, run_pilot, submit, upload

# Checks what the pilot staged (exit 1 if anything is off), then reports a loss.
EVAL = """
import json, os, sys
names = json.load(open("input_ds.json"))
assert sys.argv[1] == sys.argv[2] == ",".join(names), (sys.argv, names)
expected = json.load(open("expected.json"))[os.environ["HPOSTEER_SEGMENT_NAME"] or "-"]
assert names == expected, (names, expected)
contents = {n: open(n).read() for n in names}
assert all(contents[n] == n.upper() * 3 for n in names), contents
p = json.load(open("input.json"))
x = (p[1] if isinstance(p, list) else p)["x"]
json.dump({"loss": x, "message": ",".join(names)}, open("output.json", "w"))
"""
EVAL_EXEC = 'python3 eval.py "%IN_DATA" %IN_DATA'


def content(name: str) -> bytes:
    return (name.upper() * 3).encode()


def sandbox(api: ApiClient, expected: dict[str, list[str]]) -> str:
    return upload(api, {"eval.py": EVAL, "expected.json": json.dumps(expected)})


def upload_dataset(api: ApiClient, dataset: str, names: list[str], tmp_path: Path) -> None:
    for name in names:
        path = tmp_path / name
        path.write_bytes(content(name))
        sha, size = sha256_of(path)
        upload_file(api, dataset, path, file_name=name, sha256=sha, size=size)


class _Files(http.server.SimpleHTTPRequestHandler):
    hits: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        self.hits.append(self.path)
        super().do_GET()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """An HTTP server on loopback serving a directory: (base URL, directory, paths requested)."""
    root = tmp_path / "web"
    root.mkdir()
    hits: list[str] = []
    handler = type("Files", (_Files,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0),
        lambda *a: handler(*a, directory=str(root)),  # type: ignore[misc]
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def workdirs(work: Path, task_id: int) -> list[Path]:
    return sorted(p for p in (work / f"task{task_id}").iterdir() if p.is_dir())


def test_uploaded_dataset_is_staged_once_and_fills_in_data(live_service: LiveService, tmp_path: Path) -> None:
    site, work = new_site(), tmp_path / "work"
    names = ["train_a.txt", "train_b.txt"]
    with ApiClient(live_service.url, live_service.user_token) as api:
        upload_dataset(api, "user.alice.staged", names, tmp_path)
        task_id = submit(
            api, site, sandbox(api, {"-": names}), evaluation_exec=EVAL_EXEC, training_ds="user.alice.staged"
        )
        pilot = run_pilot(live_service, site, work, idle_s=0.5)
        task, done = api.get_task(task_id), points(api, task_id)
    assert task["state"] == "finished" and task["progress"]["done"] == 4, done
    assert all(p["attempts"][0]["message"] == "train_a.txt,train_b.txt" for p in done)
    assert pilot.workspace.staging.downloads == 2, "each file was downloaded once for the 4 jobs"
    cached = sorted((work / "datasets").iterdir())
    assert [p.name for p in cached] == sorted(hashlib.sha256(content(n)).hexdigest() for n in names)
    assert all(not p.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) for p in cached), "read-only"
    for workdir in workdirs(work, task_id):
        assert json.loads((workdir / "input_ds.json").read_text()) == names
        assert (workdir / "train_a.txt").stat().st_nlink >= 2, "hard-linked from the cache, not copied"


def test_registered_paths_and_urls_with_cache_reuse_and_repair(
    live_service: LiveService, tmp_path: Path, web: tuple[str, Path, list[str]]
) -> None:
    base, root, hits = web
    site, work = new_site(), tmp_path / "work"
    site_dir = tmp_path / "site-storage"
    site_dir.mkdir()
    for name in ("local.txt", "url.txt"):
        (site_dir / name).write_bytes(content(name))
    for name in ("web.txt", "web2.txt"):
        (root / name).write_bytes(content(name))
    files = [
        {
            "name": "local.txt",
            "location": str(site_dir / "local.txt"),
            "sha256": hashlib.sha256(content("local.txt")).hexdigest(),
        },
        {"name": "url.txt", "location": f"file://{site_dir / 'url.txt'}"},
        {"name": "web.txt", "location": f"{base}/web.txt", "sha256": hashlib.sha256(content("web.txt")).hexdigest()},
        {"name": "web2.txt", "location": f"{base}/web2.txt", "size": len(content("web2.txt"))},
    ]
    names = [f["name"] for f in files]
    with ApiClient(live_service.url, live_service.user_token) as api:
        register_dataset(api, "user.alice.sites", files)
        expected = {"-": sorted(names)}
        first = submit(
            api, site, sandbox(api, expected), evaluation_exec=EVAL_EXEC, training_ds="user.alice.sites", max_points=3
        )
        run_pilot(live_service, site, work, slots=cpu_slots(1), idle_s=0.5)
        assert api.get_task(first)["progress"]["done"] == 3, points(api, first)
        assert sorted(hits) == ["/web.txt", "/web2.txt"], "each URL was fetched once for the 3 jobs"
        workdir = workdirs(work, first)[0]
        assert (workdir / "local.txt").readlink() == site_dir / "local.txt", "site files are symlinked"

        # A damaged cache entry is noticed (its checksum is verified before reuse) and fetched again.
        damaged = work / "datasets" / files[2]["sha256"]
        damaged.chmod(0o644)
        damaged.write_bytes(b"bit rot")
        second = submit(
            api, site, sandbox(api, expected), evaluation_exec=EVAL_EXEC, training_ds="user.alice.sites", max_points=1
        )
        run_pilot(live_service, site, work, slots=cpu_slots(1), idle_s=0.5)
        assert api.get_task(second)["progress"]["done"] == 1, points(api, second)
    assert sorted(hits) == ["/web.txt", "/web.txt", "/web2.txt"]


def test_staging_failures_fail_the_attempt_as_pilot_error(
    live_service: LiveService, tmp_path: Path, web: tuple[str, Path, list[str]]
) -> None:
    base, _, _ = web
    site, work = new_site(), tmp_path / "work"
    real = tmp_path / "real.txt"
    real.write_bytes(b"the real content")
    cases = {
        "user.alice.bad.sum": {"name": "real.txt", "location": str(real), "sha256": "0" * 64},
        "user.alice.bad.path": {"name": "gone.txt", "location": str(tmp_path / "gone.txt")},
        "user.alice.bad.url": {"name": "missing.txt", "location": f"{base}/missing.txt"},
    }
    with ApiClient(live_service.url, live_service.user_token) as api:
        sha = sandbox(api, {"-": []})
        tasks = {}
        for dataset, entry in cases.items():
            register_dataset(api, dataset, [entry])
            tasks[dataset] = submit(
                api, site, sha, evaluation_exec=EVAL_EXEC, training_ds=dataset, max_points=1, max_attempts=1
            )
        run_pilot(live_service, site, work, slots=cpu_slots(1), idle_s=0.5)
        attempts = {dataset: points(api, task_id)[0]["attempts"][0] for dataset, task_id in tasks.items()}
    assert {a["failure_class"] for a in attempts.values()} == {"pilot_error"}
    assert attempts["user.alice.bad.sum"]["message"].startswith(
        f"training file 'real.txt': checksum mismatch: the sha256 of {real} is not the dataset's 000000000000..."
    )
    assert attempts["user.alice.bad.path"]["message"] == (
        f"training file 'gone.txt': {tmp_path / 'gone.txt'} does not exist on this site (or is not a readable file)"
    )
    assert attempts["user.alice.bad.url"]["message"] == (
        f"training file 'missing.txt': download failed: {base}/missing.txt answered 404 File not found"
    )


def test_segments_each_stage_only_their_files(live_service: LiveService, tmp_path: Path) -> None:
    site, work = new_site(), tmp_path / "work"
    with ApiClient(live_service.url, live_service.user_token) as api:
        upload_dataset(api, "user.alice.seg.train", ["a.txt", "b.txt", "c.txt"], tmp_path)
        upload_dataset(api, "user.alice.seg.extra", ["d.txt"], tmp_path)
        segments = [
            {"name": "first", "files": ["c.txt", "a.txt"]},
            {"name": "second", "datasets": ["user.alice.seg.extra"]},
        ]
        expected = {"first": ["c.txt", "a.txt"], "second": ["d.txt"]}
        task_id = submit(
            api,
            site,
            sandbox(api, expected),
            evaluation_exec=EVAL_EXEC,
            training_ds="user.alice.seg.train",
            segments=segments,
            max_points=2,
        )
        run_pilot(live_service, site, work, idle_s=0.5)
        task, done = api.get_task(task_id), points(api, task_id)
    assert task["state"] == "finished" and task["progress"]["done"] == 4, done
    assert sorted(p["attempts"][0]["message"] for p in done) == ["c.txt,a.txt"] * 2 + ["d.txt"] * 2
    for workdir in workdirs(work, task_id):
        staged = json.loads((workdir / "input_ds.json").read_text())
        segment = "first" if staged == expected["first"] else "second"
        assert staged == expected[segment]
        assert sorted(p.name for p in workdir.iterdir() if p.name.endswith(".txt")) == sorted(expected[segment])


def _job(training: dict[str, Any] | None) -> Job:
    job: dict[str, Any] = {"point_id": 1, "segment": {"index": 0, "name": ""}, "training": training}
    return job  # type: ignore[return-value]


def test_in_data_is_filled_where_runhpo_fills_it() -> None:
    training = {"file": "input_ds.json", "files": [{"name": "a.h5"}, {"name": "b.h5"}]}
    job = _job(training)
    assert fill_leftovers("run %IN_DATA", job) == "run a.h5,b.h5"
    assert fill_leftovers("run --in '%IN_DATA' \"%IN_DATA\" %IN_DATA --x", job) == (
        "run --in 'a.h5,b.h5' \"a.h5,b.h5\" a.h5,b.h5 --x"
    )
    assert fill_leftovers("run %IN_DATAX %IN_DATA/x", job) == "run %IN_DATAX %IN_DATA/x", (
        "only before a space, quote, end"
    )
    assert fill_leftovers("run %IN_DATA", _job(None)) == "run %IN_DATA", "left alone without --trainingDS"
