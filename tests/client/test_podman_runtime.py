"""The podman runtime: its command line (golden, everywhere) and live runs through the real podman CLI.

The live tests need podman and ``localhost/hposteer/base:bookworm`` (moved over from Docker with
`docker save | podman load` when missing). Without them they skip, except under ``CI=true``, where
they fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from hposteer.client.http import ApiClient
from hposteer.client.pilot.runtimes.base import RuntimeOptions, RuntimeStartError
from hposteer.client.pilot.runtimes.container_args import GUARD, NOBODY, ContainerLimits, create_args
from hposteer.client.pilot.runtimes.podman import podman_argv
from hposteer.client.pilot.runtimes.registry import make_runtime
from tests.conftest import LiveService, podman_with_image
from tests.support.container_payloads import EVAL, PROBE, USER_TEXT, assert_contained, run_hostile
from tests.support.pilots import hposteer_pilot, new_site, points, submit, upload, wait_until

IMAGE = "hposteer/base:bookworm"
IMAGE_ID = "a" * 64
_names = count()


def golden(**overrides: Any) -> list[str]:
    values: dict[str, Any] = {
        "image_id": IMAGE_ID,
        "command": USER_TEXT,
        "workdir": Path("/data/pilot/task1/point1.attempt1"),
        "env": {"HPOSTEER_TASK_ID": "1", "PATH": "/host/bin", "LD_PRELOAD": "x.so", "LANG": "C", "ODD": "a,b=c d"},
        "user": NOBODY,
        "labels": {"hposteer.pilot": "p", "hposteer.attempt": "7"},
        "limits": ContainerLimits(memory_bytes=2 << 30, pids=256, cpus=1.5, tmp_bytes=64 << 20),
    }
    rootless = overrides.pop("rootless", False)
    values.update(overrides)
    return podman_argv(
        create_args(**values), name="hposteer-x", rootless=rootless, seccomp_profile=Path("/tmp/profile.json")
    )


def test_the_argv_carries_every_hardening_setting() -> None:
    argv = golden()
    assert argv[:3] == ["podman", "create", "--rm"]
    for flag in (
        "--pull=never",
        "--name=hposteer-x",
        "--read-only",
        "--read-only-tmpfs=false",
        "--tmpfs=/tmp:rw,nosuid,nodev,size=64m",
        "--security-opt=no-new-privileges",
        "--security-opt=seccomp=/tmp/profile.json",
        "--cap-drop=ALL",
        "--network=none",
        "--pids-limit=256",
        f"--memory={2 << 30}",
        f"--memory-swap={2 << 30}",
        "--cpus=1.5",
        "--ulimit=nofile=4096:4096",
        "--ulimit=nproc=4096:4096",
        f"--user={NOBODY}",
        "--workdir=/srv/workDir",
        "--mount=type=bind,source=/data/pilot/task1/point1.attempt1,destination=/srv/workDir",
        '--entrypoint=["/bin/sh", "-c"]',
        "--interactive=true",
        "--tty=false",
        "--http-proxy=false",
        "--label=hposteer.pilot=p",
        "--label=hposteer.attempt=7",
        "--env=ODD=a,b=c d",
        "--env=LANG=C",
    ):
        assert flag in argv, flag
    assert sum(a.startswith(("--mount", "--volume", "-v")) for a in argv) == 1, "the only mount is the working dir"
    assert not [a for a in argv if a.startswith(("--device", "--privileged", "--cap-add", "--userns", "--pid="))]
    assert not [a for a in argv if "LD_PRELOAD" in a or "/host/bin" in a], "host-only variables stay out"
    assert "--env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/srv/workDir" in argv


def test_user_text_is_only_the_shells_command_argument() -> None:
    argv = golden()
    assert argv[-2:] == [IMAGE_ID, GUARD.replace("{command}", USER_TEXT, 1)], "the image id, then sh -c's argument"
    assert all(USER_TEXT not in a for a in argv[:-1])


def test_gpus_network_and_rootless() -> None:
    argv = golden(gpus=("2", "3"), network=True, rootless=True)
    assert [a for a in argv if a.startswith("--device")] == ["--device=nvidia.com/gpu=2", "--device=nvidia.com/gpu=3"]
    assert "--env=CUDA_VISIBLE_DEVICES=0,1" in argv and "--env=HPOSTEER_HOST_GPUS=2,3" in argv
    assert "--network=bridge" in argv and "--userns=keep-id" in argv


def test_unknown_settings_and_unmountable_paths_are_refused() -> None:
    args = create_args(image_id=IMAGE_ID, command="true", workdir=Path("/w"), env={}, user=NOBODY)
    with pytest.raises(ValueError, match="does not know"):
        podman_argv({**args, "volumes": ["/:/host"]}, name="x")
    with pytest.raises(ValueError, match="never"):
        podman_argv({**args, "privileged": True}, name="x")
    with pytest.raises(RuntimeStartError, match="cannot be mounted"):
        podman_argv(
            {**args, "mounts": [{"Type": "bind", "Source": "/a,b", "Target": "/srv/workDir", "ReadOnly": False}]},
            name="x",
        )


# -- live, through the real podman CLI ----------------------------------------------------------


@pytest.fixture(scope="module")
def podman_image() -> str:
    return podman_with_image(IMAGE)


def pilot_name() -> str:
    return f"podman-test-{os.getpid()}-{next(_names)}"


def containers(name: str) -> list[dict[str, Any]]:
    listed = subprocess.run(
        ["podman", "ps", "--all", "--format=json", f"--filter=label=hposteer.pilot={name}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return list(json.loads(listed.stdout or "[]"))


def test_a_pilot_evaluates_a_point_in_a_podman_container(
    podman_image: str, live_service: LiveService, tmp_path: Path
) -> None:
    site, name = new_site(), pilot_name()
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(
            api, site, upload(api, {"eval.py": EVAL}), max_points=1, evaluation_container=IMAGE
        )  # the plain name: found as localhost/NAME
        pilot = hposteer_pilot(
            live_service, site, tmp_path / "work", "--runtime", "podman", "--name", name, "--exit-when-idle", "1"
        )
        _, stderr = pilot.communicate(timeout=60)
        done = points(api, task_id)
    assert pilot.returncode == 0, stderr
    assert "WITHOUT ISOLATION" not in stderr
    assert [p["state"] for p in done] == ["done"], stderr
    assert "Debian GNU/Linux 12" in done[0]["attempts"][0]["message"], "ran in the image"
    assert containers(name) == [], "the container was removed"


def test_the_hardening_is_in_effect_inside(podman_image: str, live_service: LiveService, tmp_path: Path) -> None:
    workdir = tmp_path / "attempt"
    workdir.mkdir()
    (workdir / "probe.py").write_text(PROBE)
    runtime = make_runtime("podman", RuntimeOptions(pilot_name=pilot_name()))
    port = live_service.url.rsplit(":", 1)[1]
    payload = runtime.start(
        "python3 probe.py", workdir, {"SERVICE_PORT": port}, workdir / "payload.log", image=podman_image
    )
    assert payload.wait(15) == 0, (workdir / "payload.log").read_text()
    probe = json.loads((workdir / "probe.json").read_text())
    assert probe["uid"] != 0 and probe["uid"] == (65534 if os.getuid() == 0 else os.getuid())
    assert probe["cap_eff"] == "0000000000000000" and probe["no_new_privs"] == "1"
    assert probe["root"] == "OSError", "EROFS: the root filesystem is read-only"
    assert probe["tmp"] == "written" and probe["workdir"] == "written"
    assert probe["service"] == "ConnectionRefusedError", "127.0.0.1 is the container's own loopback"
    assert probe["outside"] == "OSError", "ENETUNREACH: no network at all"


def test_a_hostile_payload_is_contained(podman_image: str, tmp_path: Path) -> None:
    assert_contained(*run_hostile("podman", podman_image, tmp_path / "attempt"))


def test_exit_codes_and_a_stop_are_reported_as_the_local_runtime_does(podman_image: str, tmp_path: Path) -> None:
    runtime = make_runtime("podman", RuntimeOptions(pilot_name=pilot_name()))
    assert (
        runtime.start("echo out; echo err >&2; exit 3", tmp_path, {}, tmp_path / "a.log", image=podman_image).wait(15)
        == 3
    )
    assert (tmp_path / "a.log").read_text().split() == ["out", "err"]
    payload = runtime.start(
        "exec python3 -c 'import time; time.sleep(600)'", tmp_path, {}, tmp_path / "b.log", image=podman_image
    )
    time.sleep(1)
    started = time.monotonic()
    assert payload.terminate(grace_s=5) == -15, "SIGTERM reached python in the container"
    assert time.monotonic() - started < 5


def test_killing_the_task_stops_and_removes_its_container(
    podman_image: str, live_service: LiveService, tmp_path: Path
) -> None:
    site, name = new_site(), pilot_name()
    with ApiClient(live_service.url, live_service.user_token) as api:
        sleeper = upload(api, {"eval.py": "import time\ntime.sleep(600)\n"})
        task_id = submit(api, site, sleeper, max_points=1, evaluation_container=podman_image)
        pilot = hposteer_pilot(
            live_service, site, tmp_path / "work", "--runtime", "podman", "--name", name, "--exit-when-idle", "1"
        )
        wait_until(lambda: any(c.get("State") == "running" for c in containers(name)), timeout_s=15)
        killed = time.monotonic()
        api.kill_task(task_id)
        wait_until(lambda: containers(name) == [], timeout_s=10)
        gone_after = time.monotonic() - killed
        _, stderr = pilot.communicate(timeout=30)
    assert "the task was killed; stopping the payload" in stderr
    assert gone_after < 8, "stopped (SIGTERM reaches python in the container) and removed within seconds"
    assert pilot.returncode == 0


def test_a_killed_pilots_container_stops_and_goes(podman_image: str, live_service: LiveService, tmp_path: Path) -> None:
    site, name = new_site(), pilot_name()
    with ApiClient(live_service.url, live_service.user_token) as api:
        sleeper = upload(api, {"eval.py": "import time\ntime.sleep(600)\n"})
        submit(api, site, sleeper, max_points=1, evaluation_container=podman_image)
        pilot = hposteer_pilot(live_service, site, tmp_path / "work", "--runtime", "podman", "--name", name)
        wait_until(lambda: any(c.get("State") == "running" for c in containers(name)), timeout_s=15)
        pilot.send_signal(signal.SIGKILL)
        pilot.communicate(timeout=10)
        wait_until(lambda: containers(name) == [], timeout_s=10)  # stdin closed: the watchdog killed it; --rm


def test_a_missing_image_fails_the_attempt_as_pilot_error(
    podman_image: str, live_service: LiveService, tmp_path: Path
) -> None:
    site, name = new_site(), pilot_name()
    missing = "hposteer-test/missing:none"
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(
            api, site, upload(api, {"eval.py": EVAL}), max_points=1, max_attempts=1, evaluation_container=missing
        )
        pilot = hposteer_pilot(
            live_service, site, tmp_path / "work", "--runtime", "podman", "--name", name, "--exit-when-idle", "1"
        )
        _, stderr = pilot.communicate(timeout=30)
        attempt = points(api, task_id)[0]["attempts"][0]
    assert attempt["failure_class"] == "pilot_error", stderr
    assert f"image {missing!r} is not in podman's image storage" in attempt["message"]
    assert f"docker save {missing} | podman load" in attempt["message"]
    runtime = make_runtime("podman", RuntimeOptions(pilot_name=name))
    with pytest.raises(RuntimeStartError, match="not an image reference"):
        runtime.start("true", tmp_path, {}, tmp_path / "log", image="--privileged")
    with pytest.raises(RuntimeStartError, match="names no image"):
        runtime.start("true", tmp_path, {}, tmp_path / "log")


def test_a_panda_docker_scheme_image_runs_from_podmans_storage(
    podman_image: str, live_service: LiveService, tmp_path: Path
) -> None:
    """PanDA configurations name images ``docker://NAME``: podman runs its local ``NAME`` (``localhost/NAME``)."""
    site, name = new_site(), pilot_name()
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(
            api, site, upload(api, {"eval.py": EVAL}), max_points=1, evaluation_container=f"docker://{IMAGE}"
        )
        pilot = hposteer_pilot(
            live_service, site, tmp_path / "work", "--runtime", "podman", "--name", name, "--exit-when-idle", "1"
        )
        _, stderr = pilot.communicate(timeout=60)
        done = points(api, task_id)
    assert [p["state"] for p in done] == ["done"], (stderr, done)
    assert "Debian GNU/Linux 12" in done[0]["attempts"][0]["message"], "ran in the image"
    assert containers(name) == [], "the container was removed"
