"""The docker runtime: its container settings (golden, everywhere) and live runs on the real engine.

The live tests need a Docker engine and the image ``hposteer/base:bookworm`` (python3; built by
images/ and by .ci/run). Without them they are skipped, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
import pytest

from hposteer.client.http import ApiClient
from hposteer.client.pilot.evaluation import payload_environment
from hposteer.client.pilot.runtimes.base import RuntimeOptions, RuntimeStartError
from hposteer.client.pilot.runtimes.container_args import (
    GUARD,
    NOBODY,
    WORKDIR,
    ContainerLimits,
    container_env,
    container_user,
    create_args,
    exit_code,
)
from hposteer.client.pilot.runtimes.registry import make_runtime
from hposteer.client.pilot.slots import Slot
from tests.conftest import LiveService, docker_with_image
from tests.support.container_payloads import EVAL, PROBE, USER_TEXT, assert_contained, pilot_name, run_hostile
from tests.support.pilots import hposteer_pilot, new_site, points, submit, upload, wait_until
from tests.support.runtime import make_job

IMAGE = "hposteer/base:bookworm"


def golden_args(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "image_id": "sha256:" + "a" * 64,
        "command": USER_TEXT,
        "workdir": Path("/data/pilot/task1/point1.attempt1"),
        "env": {"HPOSTEER_TASK_ID": "1", "PATH": "/host/bin", "HOME": "/root", "LD_PRELOAD": "x.so", "LANG": "C"},
        "user": NOBODY,
        "labels": {"hposteer.pilot": "p", "hposteer.attempt": "7"},
        "limits": ContainerLimits(memory_bytes=2 << 30, pids=256, cpus=1.5, tmp_bytes=64 << 20),
    }
    values.update(overrides)
    return create_args(**values)


def test_every_hardening_setting_is_in_the_create_arguments() -> None:
    args = golden_args()
    assert args["image"] == "sha256:" + "a" * 64, "the image is pinned by its local id"
    assert args["read_only"] is True and args["privileged"] is False
    assert args["tmpfs"] == {"/tmp": "rw,nosuid,nodev,size=64m"}
    assert args["security_opt"] == ["no-new-privileges"] and args["cap_drop"] == ["ALL"]
    assert args["network_mode"] == "none"
    assert args["pids_limit"] == 256 and args["mem_limit"] == args["memswap_limit"] == 2 << 30
    assert args["nano_cpus"] == 1_500_000_000
    assert args["ulimits"] == [
        {"name": "nofile", "soft": 4096, "hard": 4096},
        {"name": "nproc", "soft": 4096, "hard": 4096},
    ]
    assert args["user"] == NOBODY and args["working_dir"] == WORKDIR
    assert args["mounts"] == [
        {"Type": "bind", "Source": "/data/pilot/task1/point1.attempt1", "Target": WORKDIR, "ReadOnly": False}
    ], "the only mount is the working directory"
    assert "device_requests" not in args, "a CPU slot asks for no GPU"
    assert args["use_config_proxy"] is False
    assert args["labels"] == {"hposteer.pilot": "p", "hposteer.attempt": "7"}
    forbidden = {"volumes", "devices", "cap_add", "pid_mode", "ipc_mode", "userns_mode", "volumes_from", "sysctls"}
    assert not forbidden & set(args), "nothing widens the sandbox"
    for name in ("mounts", "ulimits", "device_requests", "tmpfs"):  # the SDK accepts them as given
        docker.types.HostConfig(version="1.41", **{name: args[name]} if name in args else {})


def test_user_text_is_only_the_shells_command_argument() -> None:
    args = golden_args()
    assert args["entrypoint"] == ["/bin/sh", "-c"]
    assert args["command"] == [GUARD.replace("{command}", USER_TEXT, 1)], "one argument of sh -c, inside"
    text = json.dumps({k: v for k, v in args.items() if k != "command"})
    assert "privileged" not in text.replace('"privileged": false', "") and "/:/host" not in text


def test_the_environment_is_the_payloads_without_host_only_variables() -> None:
    job = make_job(attempt_id=7)
    base = {"PATH": "/usr/bin", "HOME": "/root", "HPOSTEER_TOKEN": "hps_secret", "XDG_RUNTIME_DIR": "/run", "LANG": "C"}
    env = container_env(payload_environment(Slot("0", ()), job, base, 2), ())
    assert "hps_secret" not in env.values() and "XDG_RUNTIME_DIR" not in env
    assert env["PATH"].endswith(":/srv/workDir") and env["HOME"] == env["TMPDIR"] == "/tmp"
    assert env["LANG"] == "C" and env["OMP_NUM_THREADS"] == "2" and env["HPOSTEER_TASK_ID"] == "7"
    assert env["CUDA_VISIBLE_DEVICES"] == ""


def test_gpus_become_device_requests_and_are_renumbered_inside() -> None:
    args = golden_args(gpus=("2", "3"))
    assert args["device_requests"] == [{"device_ids": ["2", "3"], "capabilities": [["gpu"]]}]
    request = docker.types.DeviceRequest(**args["device_requests"][0])
    assert request == docker.types.DeviceRequest(device_ids=["2", "3"], capabilities=[["gpu"]])
    assert request["DeviceIDs"] == ["2", "3"] and request["Capabilities"] == [["gpu"]]
    assert args["environment"]["CUDA_VISIBLE_DEVICES"] == "0,1", "the container sees its GPUs as 0 and 1"
    assert args["environment"]["HPOSTEER_HOST_GPUS"] == "2,3"


def test_network_only_when_allowed_and_users_and_exit_codes() -> None:
    assert golden_args(network=True)["network_mode"] == "bridge"
    assert container_user(0, 0) == NOBODY and container_user(1000, 100) == "1000:100"
    assert [exit_code(s) for s in (0, 3, 128, 137, 143, 255)] == [0, 3, 128, -9, -15, 255]


# -- live, on the real engine ----------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    client: docker.DockerClient = docker_with_image(IMAGE)
    yield client
    client.close()


def containers(client: docker.DockerClient, name: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"hposteer.pilot={name}"}))


def test_a_pilot_evaluates_points_in_containers(
    engine: docker.DockerClient, live_service: LiveService, tmp_path: Path
) -> None:
    site, name = new_site(), pilot_name()
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(api, site, upload(api, {"eval.py": EVAL}), max_points=2, evaluation_container=IMAGE)
        pilot = hposteer_pilot(
            live_service, site, tmp_path / "work", "--runtime", "docker", "--name", name, "--exit-when-idle", "1"
        )
        _, stderr = pilot.communicate(timeout=60)
        done = points(api, task_id)
    assert pilot.returncode == 0, stderr
    assert "WITHOUT ISOLATION" not in stderr
    assert [p["state"] for p in done] == ["done", "done"], stderr
    assert all("Debian GNU/Linux 12" in p["attempts"][0]["message"] for p in done), "ran in the image"
    assert containers(engine, name) == [], "every container was removed"


def test_the_hardening_is_in_effect_inside(
    engine: docker.DockerClient, live_service: LiveService, tmp_path: Path
) -> None:
    workdir = tmp_path / "attempt"
    workdir.mkdir()
    (workdir / "probe.py").write_text(PROBE)
    runtime = make_runtime("docker", RuntimeOptions(pilot_name=pilot_name()))
    port = live_service.url.rsplit(":", 1)[1]
    payload = runtime.start("python3 probe.py", workdir, {"SERVICE_PORT": port}, workdir / "payload.log", image=IMAGE)
    assert payload.wait(15) == 0, (workdir / "payload.log").read_text()
    probe = json.loads((workdir / "probe.json").read_text())
    assert probe["uid"] != 0 and probe["uid"] == (65534 if os.getuid() == 0 else os.getuid())
    assert probe["cap_eff"] == "0000000000000000" and probe["no_new_privs"] == "1"
    assert probe["root"] == "OSError", "EROFS: the root filesystem is read-only"
    assert probe["tmp"] == "written" and probe["workdir"] == "written"
    assert probe["service"] == "ConnectionRefusedError", "127.0.0.1 is the container's own loopback"
    assert probe["outside"] == "OSError", "ENETUNREACH: no network at all"


def test_a_hostile_payload_is_contained(engine: docker.DockerClient, tmp_path: Path) -> None:
    assert_contained(*run_hostile("docker", IMAGE, tmp_path / "attempt"))


def test_killing_the_task_stops_and_removes_its_container(
    engine: docker.DockerClient, live_service: LiveService, tmp_path: Path
) -> None:
    site, name = new_site(), pilot_name()
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(
            api,
            site,
            upload(api, {"eval.py": "import time\ntime.sleep(600)\n"}),
            max_points=1,
            evaluation_container=IMAGE,
        )
        pilot = hposteer_pilot(
            live_service, site, tmp_path / "work", "--runtime", "docker", "--name", name, "--exit-when-idle", "1"
        )
        wait_until(lambda: any(c.status == "running" for c in containers(engine, name)), timeout_s=10)
        killed = time.monotonic()
        api.kill_task(task_id)
        wait_until(lambda: containers(engine, name) == [], timeout_s=10)
        gone_after = time.monotonic() - killed
        _, stderr = pilot.communicate(timeout=30)
    assert "the task was killed; stopping the payload" in stderr
    assert gone_after < 8, "stopped (SIGTERM reaches python in the container) and removed within seconds"
    assert pilot.returncode == 0


def test_a_killed_pilots_container_stops_and_the_next_start_removes_it(
    engine: docker.DockerClient, live_service: LiveService, tmp_path: Path
) -> None:
    site, name = new_site(), pilot_name()
    with ApiClient(live_service.url, live_service.user_token) as api:
        sleeper = upload(api, {"eval.py": "import time\ntime.sleep(600)\n"})
        submit(api, site, sleeper, max_points=1, evaluation_container=IMAGE)
        pilot = hposteer_pilot(live_service, site, tmp_path / "work", "--runtime", "docker", "--name", name)
        wait_until(lambda: any(c.status == "running" for c in containers(engine, name)), timeout_s=10)
        pilot.send_signal(signal.SIGKILL)
        pilot.communicate(timeout=10)
        wait_until(lambda: all(c.status == "exited" for c in containers(engine, name)), timeout_s=5)
    assert len(containers(engine, name)) == 1, "the payload stopped when its pilot died; the container stays"
    make_runtime("docker", RuntimeOptions(pilot_name=name, log=lambda _: None))
    assert containers(engine, name) == [], "the next start of that pilot removed it"


def test_a_missing_image_fails_the_attempt_as_pilot_error(
    engine: docker.DockerClient, live_service: LiveService, tmp_path: Path
) -> None:
    site, name = new_site(), pilot_name()
    missing = "hposteer-test/missing:none"
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(
            api, site, upload(api, {"eval.py": EVAL}), max_points=1, max_attempts=1, evaluation_container=missing
        )
        pilot = hposteer_pilot(
            live_service, site, tmp_path / "work", "--runtime", "docker", "--name", name, "--exit-when-idle", "1"
        )
        _, stderr = pilot.communicate(timeout=30)
        attempt = points(api, task_id)[0]["attempts"][0]
    assert attempt["failure_class"] == "pilot_error", stderr
    assert f"image {missing!r} is not on this machine's Docker engine" in attempt["message"]
    assert "docker load" in attempt["message"]
    with pytest.raises(RuntimeStartError, match="names no image"):
        make_runtime("docker", RuntimeOptions(pilot_name=name)).start("true", tmp_path, {}, tmp_path / "log")


def test_an_unreachable_engine_is_a_clear_option_error(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no.sock", "HPOSTEER_TOKEN": "hps_x"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "hposteer"), "pilot", "--runtime", "docker", "--workdir", str(tmp_path)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "cannot reach the Docker engine" in result.stderr


def test_a_panda_docker_scheme_image_runs_from_the_local_engine(
    engine: docker.DockerClient, live_service: LiveService, tmp_path: Path
) -> None:
    """PanDA configurations name images ``docker://NAME``: the pilot runs the local ``NAME``."""
    site, name = new_site(), pilot_name()
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(
            api, site, upload(api, {"eval.py": EVAL}), max_points=1, evaluation_container=f"docker://{IMAGE}"
        )
        pilot = hposteer_pilot(
            live_service, site, tmp_path / "work", "--runtime", "docker", "--name", name, "--exit-when-idle", "1"
        )
        _, stderr = pilot.communicate(timeout=60)
        done = points(api, task_id)
    assert [p["state"] for p in done] == ["done"], (stderr, done)
    assert "Debian GNU/Linux 12" in done[0]["attempts"][0]["message"], "ran in the image"
    for remote in ("library://alpine", "oras://ghcr.io/x:1"):
        with pytest.raises(RuntimeStartError, match="never pulls"):
            make_runtime("docker", RuntimeOptions(pilot_name=name, log=lambda _: None)).start(
                "true", tmp_path, {}, tmp_path / "log", image=remote
            )
