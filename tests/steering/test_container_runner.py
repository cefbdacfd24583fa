"""The container runner on the real Docker engine: files, shapes, hardening, and every way a run fails."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from hposteer.core.searchspace import Params
from hposteer.core.space_json import parse_search_space
from hposteer.service.core.steering import Observation, SteeringError
from hposteer.service.core.steering_exec import parse_steering
from hposteer.service.steering.containers.runner import ContainerLimits, ContainerRunner
from tests.conftest import containers_under
from tests.support.steering_containers import IMAGE, engine, grid_command, script_command

__all__ = ["engine"]

RAW = {"a": {"method": "categorical", "dimension": {"categories": [1, 2, 3, 4]}}}
SPACE = parse_search_space(RAW)
LIMITS = ContainerLimits(timeout_s=3.0, memory_mb=256, pids=64, cpus=0.5, tmpfs_mb=16)
HISTORY = [
    Observation(1, {"a": 1}, 0.5),
    Observation(2, {"a": 2}, None),
    Observation(3, {"a": 3}, 1e5, failed=True),
]


def run(tmp_path: Path, steering_exec: str, container: str | None = IMAGE, **overrides: Any) -> list[Params]:
    values: dict[str, Any] = {
        "key": 7,
        "command": parse_steering(steering_exec, container),
        "space": SPACE,
        "raw_space": RAW,
        "segmented": False,
        "model_id": 0,
        "history": HISTORY,
        "n": 2,
        "max_points": 10,
    }
    values.update(overrides)
    return ContainerRunner(tmp_path / "steering", LIMITS).run(**values)


def failure(tmp_path: Path, steering_exec: str, container: str | None = IMAGE, **overrides: Any) -> str:
    with pytest.raises(SteeringError) as info:
        run(tmp_path, steering_exec, container, **overrides)
    return str(info.value)


def leftovers(client: docker.DockerClient, tmp_path: Path) -> tuple[list[Any], list[Path]]:
    return containers_under(client, "steering", tmp_path), list((tmp_path / "steering").iterdir())


def test_points_come_back_and_nothing_is_left_behind(engine: docker.DockerClient, tmp_path: Path) -> None:
    # n=2 wanted, one point pending: %NUM_POINTS is 3, so the script (like hpogrid) proposes 2.
    assert run(tmp_path, grid_command()) == [{"a": 4}]
    assert run(tmp_path, grid_command(), history=HISTORY[:2], n=1) == [{"a": 3}]
    assert run(tmp_path, grid_command(), history=[*HISTORY, Observation(4, {"a": 4}, 0.1)]) == [], "exhausted"
    assert leftovers(engine, tmp_path) == ([], [])


def test_the_idds_docker_form_runs_with_its_mount_path_and_env(engine: docker.DockerClient, tmp_path: Path) -> None:
    text = f'run --rm -v "$(pwd)":/HPOiDDS -e GREETING=hi-%NUM_POINTS {IMAGE} ' + grid_command(
        "/HPOiDDS/%IN", "/HPOiDDS/%OUT"
    )
    assert run(tmp_path, text, None) == [{"a": 4}]
    probe = 'import json, os, sys; print(json.dumps([os.getcwd(), os.environ.get("GREETING")])); sys.exit(3)'
    text = f"run -v \"$(pwd)\":/HPOiDDS -e GREETING=hi-%NUM_POINTS {IMAGE} python3 -c '{probe}'"
    message = failure(tmp_path, text, None)
    assert '["/HPOiDDS", "hi-3"]' in message


def test_what_the_container_sees(engine: docker.DockerClient, tmp_path: Path) -> None:
    """cwd = the mounted working directory holding only %IN, placeholders filled, %IN as iDDS writes it."""
    script = (
        "import json, os, sys; "
        "print(json.dumps([os.getcwd(), sorted(os.listdir()), sys.argv[1:], json.load(open(sys.argv[1]))])); "
        "sys.exit(3)"
    )
    message = failure(tmp_path, script_command(script) + " %IN %OUT %NUM_POINTS %MAX_POINTS %IN%OUT")
    seen = json.loads(message.split("last output:\n", 1)[1])
    assert seen[:3] == [
        "/srv/workDir",
        ["idds_input.json"],
        ["idds_input.json", "output.json", "3", "10", "idds_input.jsonoutput.json"],
    ]
    assert seen[3] == {"points": [[{"a": 1}, 0.5], [{"a": 2}, None], [{"a": 3}, 100000.0]], "opt_space": RAW}


def test_segmented_points_are_model_id_pairs(engine: docker.DockerClient, tmp_path: Path) -> None:
    script = (
        'import json; d = json.load(open("idds_input.json")); '
        'assert d["opt_space"][0]["model_id"] == 5 and d["points"][0][0] == [5, {"a": 1}], d; '
        'json.dump([[5, {"a": 4}]], open("output.json", "w"))'
    )
    assert run(tmp_path, script_command(script), segmented=True, model_id=5) == [{"a": 4}]


def test_the_container_is_hardened(engine: docker.DockerClient, tmp_path: Path) -> None:
    script = """
import json, os, socket, sys, threading, time
r = {"uid": os.getuid(), "gid": os.getgid()}
for path in ("/probe", "/tmp/probe", "probe"):
    try:
        open(path, "w").write("x")
        r[path] = "written"
    except OSError as e:
        r[path] = e.strerror
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    r["network"] = "connected"
except OSError as e:
    r["network"] = e.strerror or str(e)
r["interfaces"] = sorted(os.listdir("/sys/class/net"))
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
r["NoNewPrivs"], r["CapEff"] = status["NoNewPrivs"].strip(), status["CapEff"].strip()
threads = 0
try:
    for _ in range(200):
        threading.Thread(target=time.sleep, args=(3,), daemon=True).start()
        threads += 1
except RuntimeError:
    pass
r["threads"] = threads
print(json.dumps(r))
sys.exit(3)
"""
    message = failure(tmp_path, script_command(script))
    assert "exited with code 3" in message
    seen = json.loads(message.split("last output:\n", 1)[1])
    assert seen["uid"] == seen["gid"] != 0
    assert seen["/probe"] == "Read-only file system"
    assert seen["/tmp/probe"] == "written" and seen["probe"] == "written"
    assert seen["network"] == "Network is unreachable" and seen["interfaces"] == ["lo"]
    assert seen["NoNewPrivs"] == "1" and int(seen["CapEff"], 16) == 0
    assert seen["threads"] < LIMITS.pids, "the pids limit stops a fork bomb"


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ('print("no output file")', "wrote no output file (%OUT, output.json); last output:\nno output file"),
        ('open("output.json", "w").write("garbage")', "not valid JSON"),
        ('open("output.json", "w").write("{}")', "JSON list of points, not an object"),
        ('open("output.json", "w").write("[[0, 1]]")', "point 0 of the output must be a dict"),
        ('open("output.json", "w").write("[{\\"a\\": 9}]")', "outside the search space: a=9"),
        (
            'import sys; open("output.json", "w").write("[]"); print("boom", file=sys.stderr); sys.exit(2)',
            "exited with code 2; last output:\nboom",
        ),
        ('import os; os.symlink("/etc/passwd", "output.json")', "cannot be read"),
    ],
)
def test_bad_output_or_exit_fails_the_run_saying_why(
    engine: docker.DockerClient, tmp_path: Path, script: str, reason: str
) -> None:
    assert reason in failure(tmp_path, script_command(script))
    assert leftovers(engine, tmp_path) == ([], [])


def test_a_hanging_container_is_killed_at_the_wall_clock_limit(engine: docker.DockerClient, tmp_path: Path) -> None:
    began = time.monotonic()
    message = failure(tmp_path, script_command('import time; print("thinking", flush=True); time.sleep(60)'))
    assert time.monotonic() - began < 10
    assert message.startswith("the steering container ran longer than 3 s and was killed; last output:\nthinking")
    assert leftovers(engine, tmp_path) == ([], [])


def test_a_missing_image_is_never_pulled(engine: docker.DockerClient, tmp_path: Path) -> None:
    message = failure(tmp_path, "steer", "hposteer/not-here:1")
    assert "'hposteer/not-here:1' is not on this server" in message and "never pulls" in message


def test_no_engine_is_a_failed_run_too(tmp_path: Path) -> None:
    runner = ContainerRunner(tmp_path, LIMITS, docker_url=f"unix://{tmp_path}/no.sock")
    with pytest.raises(SteeringError, match="Docker engine"):
        runner.run(key=1, command=parse_steering("steer", IMAGE), space=SPACE, raw_space=RAW, segmented=False,
                   model_id=0, history=[], n=1, max_points=1)  # fmt: skip


def test_what_a_crashed_service_left_behind_is_swept(engine: docker.DockerClient, tmp_path: Path) -> None:
    old = engine.containers.create(
        IMAGE, ["sleep", "60"], labels={"hposteer.role": "steering", "hposteer.deadline": str(int(time.time()) - 120)}
    )
    running = engine.containers.create(
        IMAGE, ["sleep", "60"], labels={"hposteer.role": "steering", "hposteer.deadline": str(int(time.time()) + 600)}
    )
    stale = tmp_path / "steering" / "segment-1-old"
    stale.mkdir(parents=True)
    (stale / "idds_input.json").write_text("{}")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = tmp_path / "steering" / "segment-2-running"
    fresh.mkdir()
    try:
        assert run(tmp_path, grid_command()) == [{"a": 4}]
        ids = {c.id for c in engine.containers.list(all=True, filters={"label": "hposteer.role=steering"})}
        assert old.id not in ids and running.id in ids
        assert list((tmp_path / "steering").iterdir()) == [fresh]
    finally:
        running.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            old.remove(force=True)
