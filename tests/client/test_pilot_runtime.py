"""The local runtime for real: exit codes, log tail, environment, working directory, process groups."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from hposteer.client.http import ApiClient
from hposteer.client.pilot.evaluation import payload_environment
from hposteer.client.pilot.logs import Logger
from hposteer.client.pilot.placeholders import fill_leftovers
from hposteer.client.pilot.runtimes.base import LOG_TAIL_BYTES, RuntimeStartError, log_tail
from hposteer.client.pilot.runtimes.registry import make_runtime
from hposteer.client.pilot.slots import cpu_slots, parse_workers
from hposteer.client.pilot.workdir import Workspace
from tests.support.runtime import make_job, start


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _wait_for(path: Path, timeout_s: float = 10) -> str:
    deadline = time.monotonic() + timeout_s
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return path.read_text()


def _gone(pids: list[int], timeout_s: float = 5) -> bool:
    deadline = time.monotonic() + timeout_s
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize(
    ("command", "code"), [("true", 0), ("exit 7", 7), ("kill -9 $$", -9), ("nonexistent-xyz", 127)]
)
def test_exit_codes(tmp_path: Path, command: str, code: int) -> None:
    assert start(command, tmp_path).wait(10) == code


def test_output_goes_to_the_log_in_the_working_directory(tmp_path: Path) -> None:
    payload = start("echo out; echo err >&2; echo more", tmp_path)
    assert payload.wait(10) == 0
    assert (tmp_path / "payload.log").read_text() == "out\nerr\nmore\n"
    assert log_tail(tmp_path / "payload.log") == "out\nerr\nmore\n"


def test_log_tail_keeps_the_last_64_kib(tmp_path: Path) -> None:
    payload = start("head -c 200000 /dev/zero | tr '\\0' a; echo END", tmp_path)
    assert payload.wait(10) == 0
    assert (tmp_path / "payload.log").stat().st_size == 200_004
    tail = log_tail(tmp_path / "payload.log")
    assert len(tail.encode()) == LOG_TAIL_BYTES == 65536
    assert tail.endswith("aEND\n") and set(tail[:-4]) == {"a"}


def test_log_tail_drops_a_character_cut_in_two(tmp_path: Path) -> None:
    log = tmp_path / "payload.log"
    log.write_bytes("é".encode() * 40_000 + b"\n")  # 2-byte characters; the 64 KiB cut falls inside one
    tail = log_tail(log)
    assert tail == "é" * 32_767 + "\n"
    assert log_tail(tmp_path / "missing.log") == ""


def test_cwd_is_the_fresh_working_directory_with_input_json(tmp_path: Path) -> None:
    with ApiClient("http://127.0.0.1:9", "unused") as api:
        workspace = Workspace(tmp_path / "pilot", api, Logger())
        job = make_job()
        workdir = workspace.fresh_directory(job)
        workspace.prepare(job, workdir)
        again = workspace.fresh_directory(job)
    assert workdir == (tmp_path / "pilot" / "task7" / "point3.attempt1").resolve()
    assert again.name == "point3.attempt1.2", "a directory left behind is never reused"
    assert sorted(p.name for p in workdir.iterdir()) == ["input.json"]
    assert (workdir / "input.json").read_text() == json.dumps({"lr": 0.001, "units": 128})
    payload = start("pwd > where; cat input.json > seen.json", workdir)
    assert payload.wait(10) == 0
    assert (workdir / "where").read_text().strip() == str(workdir)
    assert json.loads((workdir / "seen.json").read_text()) == {"lr": 0.001, "units": 128}


def test_segmented_input_is_model_id_and_params(tmp_path: Path) -> None:
    with ApiClient("http://127.0.0.1:9", "unused") as api:
        workspace = Workspace(tmp_path, api, Logger())
        job = make_job(params=[1, {"x": 0.5}], evaluation_input="in.json", segment={"index": 1, "name": "segB"})
        workdir = workspace.fresh_directory(job)
        workspace.prepare(job, workdir)
    assert json.loads((workdir / "in.json").read_text()) == [1, {"x": 0.5}]


def test_each_slot_sees_its_own_gpus_and_ids(tmp_path: Path) -> None:
    slots = [*parse_workers("0,1:2,3"), *cpu_slots(1)]
    base = {**os.environ, "HPOSTEER_TOKEN": "secret", "HPOSTEER_TOKEN_FILE": "/x", "OMP_NUM_THREADS": "5"}
    script = (
        'printf "%s|%s|%s|%s|%s|%s|%s|%s" "$CUDA_VISIBLE_DEVICES" "$HPOSTEER_SLOT" "$HPOSTEER_TASK_ID" '
        '"$HPOSTEER_POINT_ID" "$HPOSTEER_ATTEMPT" "${HPOSTEER_TOKEN-none}" "$OMP_NUM_THREADS" "$MKL_NUM_THREADS"'
    )
    seen = []
    for index, slot in enumerate(slots):
        workdir = tmp_path / str(index)
        workdir.mkdir()
        env = payload_environment(slot, make_job(attempt_number=2), base, threads_per_slot=1)
        assert start(script, workdir, env).wait(10) == 0
        seen.append((workdir / "payload.log").read_text())
    assert seen == ["0,1|0|7|3|2|none|5|1", "2,3|1|7|3|2|none|5|1", "|0|7|3|2|none|5|1"]


def test_path_includes_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "train.sh").write_text("#!/bin/sh\necho trained\n")
    (tmp_path / "train.sh").chmod(0o755)
    assert start("train.sh", tmp_path).wait(10) == 0
    assert (tmp_path / "payload.log").read_text() == "trained\n"


def test_terminate_stops_the_whole_process_group(tmp_path: Path) -> None:
    script = "sleep 300 & echo $! > child.pid; sh -c 'sleep 300 & echo $! > grandchild.pid; wait' & wait"
    payload = start(script, tmp_path)
    pids = [int(_wait_for(tmp_path / "child.pid")), int(_wait_for(tmp_path / "grandchild.pid"))]
    assert payload.poll() is None and all(_alive(p) for p in pids)
    assert payload.terminate(grace_s=5) == -signal.SIGTERM
    assert _gone(pids), "the payload's child and grandchild were stopped too"


def test_a_payload_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    payload = start("trap '' TERM; echo ready > ready; while true; do sleep 0.05; done", tmp_path)
    _wait_for(tmp_path / "ready")
    started = time.monotonic()
    assert payload.terminate(grace_s=0.5) == -signal.SIGKILL
    assert 0.4 < time.monotonic() - started < 5


def test_processes_left_behind_by_a_finished_payload_are_stopped(tmp_path: Path) -> None:
    payload = start("sleep 300 & echo $! > child.pid", tmp_path)
    assert payload.wait(10) == 0
    assert _gone([int(_wait_for(tmp_path / "child.pid"))])


def test_unknown_runtime_lists_the_known_ones() -> None:
    known = "apptainer, docker, local, podman, singularity"
    with pytest.raises(RuntimeStartError, match=f"unknown runtime 'lxc'; known runtimes: {known}"):
        make_runtime("lxc")
    assert make_runtime("local").isolated is False


def test_placeholders_the_server_left_are_filled_locally() -> None:
    job = make_job(point_id=5, segment={"index": 1, "name": "segB"})
    command = "python train.py --seed %RNDM:100 --other %RNDM=7 --seg %SEGMENT_NAME %RNDM"
    assert fill_leftovers(command, job) == "python train.py --seed 104 --other 11 --seg segB %RNDM"
    assert fill_leftovers(command, make_job(job_number=9)).startswith("python train.py --seed 109 --other 16")
    odd = make_job(segment={"index": 0, "name": "a b;rm"})
    assert fill_leftovers("run %SEGMENT_NAME", odd) == "run 'a b;rm'"
    assert fill_leftovers("python train.py --seed 100", job) == "python train.py --seed 100"
