"""Warm steering containers on the real Docker engine, with the real steering images (make images).

One container per segment, one ``docker exec`` per run through the image's steering server:
the same points as a fresh container per run, the same hardening, and no container or
directory outliving its segment, its failure, its idle time or a killed service.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from hposteer.core.searchspace import Params
from hposteer.core.space_json import parse_search_space
from hposteer.service.core.steering import Observation, SteeringError
from hposteer.service.core.steering_exec import parse_steering
from hposteer.service.steering.containers.runner import ContainerLimits, ContainerRunner
from hposteer.service.steering.containers.warm_pool import ROLE, owner_alive, owner_token, start_ticks
from tests.conftest import containers_under, docker_with_image

IMAGE = "hposteer/steering-nevergrad"
RAW = {
    "x": {"method": "uniform", "dimension": {"low": -1, "high": 1}},
    "n": {"method": "uniformint", "dimension": {"low": 1, "high": 8}},
}
SPACE = parse_search_space(RAW)
LIMITS = ContainerLimits(timeout_s=30.0, memory_mb=1024, pids=64, cpus=1.0, tmpfs_mb=16, warm=4, idle_s=300)


def generate_line(lib: str = "nevergrad", method: str = "--method NGOpt") -> str:
    return (
        f'run --rm -v "$(pwd)":/HPOiDDS hposteer/steering-{lib} /bin/bash -c "hpogrid generate '
        f"--n_point=%NUM_POINTS --max_point=%MAX_POINTS --infile=/HPOiDDS/%IN --outfile=/HPOiDDS/%OUT -l {lib} "
        f'{method} --seed 3"'
    )


GENERATE = generate_line()


@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    return docker_with_image(IMAGE)


def run(runner: ContainerRunner, history: list[Observation], *, key: int = 11, text: str = GENERATE) -> list[Params]:
    return runner.run(
        key=key,
        command=parse_steering(text, None),
        space=SPACE,
        raw_space=RAW,
        segmented=False,
        model_id=0,
        history=history,
        n=2,
        max_points=20,
    )


def warm_containers(client: docker.DockerClient, root: Path) -> list[Any]:
    return containers_under(client, ROLE, root)


def told(points: list[Params], start: int) -> list[Observation]:
    return [Observation(start + i, p, float(i)) for i, p in enumerate(points)]


@pytest.mark.parametrize("lib", ["nevergrad", "skopt", "optuna"])
def test_runs_share_one_container_and_give_the_fresh_container_points(
    engine: docker.DockerClient, tmp_path: Path, lib: str
) -> None:
    docker_with_image(f"hposteer/steering-{lib}").close()
    text = generate_line(lib, "--method NGOpt" if lib == "nevergrad" else "")
    warm = ContainerRunner(tmp_path / "warm", LIMITS)
    cold = ContainerRunner(tmp_path / "cold", ContainerLimits(timeout_s=30.0, memory_mb=1024, warm=0))
    history: list[Observation] = []
    try:
        for _ in range(3):
            points = run(warm, history, text=text)
            assert points == run(cold, history, text=text) and len(points) == 2
            history += told(points, len(history) + 1)
        [container] = warm_containers(engine, tmp_path)
        assert container.labels["hposteer.segment"] == "11"
        log = container.logs().decode()
        assert f"ready on /tmp/hposteer-steering.sock ({lib} warmed)" in log
        assert all(f"run {i} (pid " in log for i in (1, 2, 3)), log  # every run was forked by the server
        assert [p.name for p in (tmp_path / "warm").iterdir()] == [Path(container.labels["hposteer.workdir"]).name]
        assert list(Path(container.labels["hposteer.workdir"]).iterdir()) == [], "emptied after each run"
    finally:
        warm.close()
    assert warm_containers(engine, tmp_path) == [] and list((tmp_path / "warm").iterdir()) == []
    assert not (tmp_path / "cold").exists() or list((tmp_path / "cold").iterdir()) == []


def test_the_warm_container_is_hardened_like_a_fresh_one(engine: docker.DockerClient, tmp_path: Path) -> None:
    runner = ContainerRunner(tmp_path / "steering", LIMITS)
    try:
        run(runner, [])
        [container] = warm_containers(engine, tmp_path)
        host = container.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"] and host["NetworkMode"] == "none"
        assert host["SecurityOpt"] == ["no-new-privileges"] and host["PidsLimit"] == LIMITS.pids
        assert host["Memory"] == LIMITS.memory_mb * 2**20 and host["NanoCpus"] == int(LIMITS.cpus * 1e9)
        assert container.attrs["Config"]["User"] in ("65534:65534", f"{os.getuid()}:{os.getgid()}")
        probe = container.exec_run(["sh", "-c", "touch /x; cat /proc/self/status | grep -E 'CapEff|NoNewPrivs'"])
        assert b"Read-only file system" in probe.output
        assert b"CapEff:\t0000000000000000" in probe.output and b"NoNewPrivs:\t1" in probe.output
    finally:
        runner.close()


def test_a_failed_run_removes_its_container_and_the_retry_gets_a_fresh_one(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    runner = ContainerRunner(tmp_path / "steering", LIMITS)
    try:
        run(runner, [])
        [first] = warm_containers(engine, tmp_path)
        with pytest.raises(SteeringError) as info:
            run(runner, [], text=GENERATE.replace("-l nevergrad", "-l hyperopt"))
        message = str(info.value)
        assert "exited with code 2" in message and "hpogrid library 'hyperopt' has no builtin equivalent" in message
        assert warm_containers(engine, tmp_path) == []
        assert len(run(runner, [])) == 2
        [second] = warm_containers(engine, tmp_path)
        assert second.id != first.id
    finally:
        runner.close()


def test_a_hanging_run_is_killed_at_the_wall_clock_limit(engine: docker.DockerClient, tmp_path: Path) -> None:
    limits = ContainerLimits(timeout_s=4.0, memory_mb=1024, pids=64, warm=2)
    runner = ContainerRunner(tmp_path / "steering", limits)
    hang = f'run -v "$(pwd)":/w {IMAGE} python3 -c \'import time; print("thinking", flush=True); time.sleep(60)\''
    try:
        began = time.monotonic()
        with pytest.raises(SteeringError) as info:
            run(runner, [], text=hang)
        assert time.monotonic() - began < 15
        assert "ran longer than 4 s and was killed" in str(info.value) and "thinking" in str(info.value)
        assert warm_containers(engine, tmp_path) == []
    finally:
        runner.close()


def test_ended_idle_and_excess_containers_are_removed(engine: docker.DockerClient, tmp_path: Path) -> None:
    limits = ContainerLimits(timeout_s=30.0, memory_mb=1024, pids=64, warm=2, idle_s=2.0)
    runner = ContainerRunner(tmp_path / "steering", limits)
    try:
        for key in (1, 2, 3):  # at most 2 warm: the least recently used one goes
            run(runner, [], key=key)
        assert sorted(c.labels["hposteer.segment"] for c in warm_containers(engine, tmp_path)) == ["2", "3"]
        runner.retain({3})  # segment 2 ended
        assert [c.labels["hposteer.segment"] for c in warm_containers(engine, tmp_path)] == ["3"]
        time.sleep(2.5)
        runner.retain({3})  # idle past idle_s
        assert warm_containers(engine, tmp_path) == [] and list((tmp_path / "steering").iterdir()) == []
    finally:
        runner.close()


def test_a_killed_services_containers_are_swept_by_the_next(engine: docker.DockerClient, tmp_path: Path) -> None:
    # The container is started for a stand-in "service" process, killed once the run is done. (A faked owner
    # that was dead from the start would be swept by any other service sweeping meanwhile, mid-run.)
    stand_in = subprocess.Popen(["sleep", "600"])
    try:
        dead_owner = owner_token().rsplit(":", 2)[0] + f":{stand_in.pid}:{start_ticks(stand_in.pid)}"
        killed = ContainerRunner(tmp_path / "steering", LIMITS)
        killed._pool.owner = dead_owner  # as if that process had started it
        run(killed, [], key=5)
        [left] = warm_containers(engine, tmp_path)
    finally:
        stand_in.kill()
        stand_in.wait()
    assert not owner_alive(dead_owner) and owner_alive(owner_token())
    left_dir = Path(left.labels["hposteer.workdir"])
    assert left_dir.is_dir()
    successor = ContainerRunner(tmp_path / "steering", LIMITS)
    try:
        successor.sweep()  # what the steering loop does when it starts
        assert warm_containers(engine, tmp_path) == [] and not left_dir.exists()
        run(successor, [], key=6)
        assert [c.labels["hposteer.segment"] for c in warm_containers(engine, tmp_path)] == ["6"]
    finally:
        successor.close()
    assert warm_containers(engine, tmp_path) == []


def test_the_server_refuses_a_malformed_request(tmp_path: Path) -> None:
    from hposteer.service.steering.image_programs.prefork_server import decode_request

    assert decode_request(json.dumps({"argv": ["hpogrid"], "cwd": "/w", "env": {}}).encode()) == (["hpogrid"], "/w", {})
    bad_requests = {
        "a request is a JSON object": [],
        "argv must be a non-empty list": {"argv": [], "cwd": "/w", "env": {}},
        "cwd must be an absolute path": {"argv": ["a"], "cwd": "w", "env": {}},
        "env must map strings to strings": {"argv": ["a"], "cwd": "/w", "env": {"A": 1}},
    }
    for why, bad in bad_requests.items():
        with pytest.raises(ValueError, match=why):
            decode_request(json.dumps(bad).encode())
