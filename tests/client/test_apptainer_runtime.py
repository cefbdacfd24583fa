"""The apptainer runtime: its command line and engine environment (golden), and its process handling
through a stand-in ``apptainer`` that runs the container's command on the host (no live engine here).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from hposteer.client.pilot.runtimes import apptainer as apptainer_runtime
from hposteer.client.pilot.runtimes.apptainer import GUARD, apptainer_argv, engine_environment, image_source
from hposteer.client.pilot.runtimes.base import RuntimeOptions, RuntimeStartError, local_image
from hposteer.client.pilot.runtimes.container_args import ContainerLimits
from hposteer.client.pilot.runtimes.registry import make_runtime
from tests.support.container_payloads import USER_TEXT

WORKDIR = Path("/data/pilot/task1/point1.attempt1")


def golden(**overrides: object) -> list[str]:
    values: dict[str, object] = {
        "source": "/images/eval.sif",
        "command": USER_TEXT,
        "workdir": WORKDIR,
        "limits": ContainerLimits(memory_bytes=2 << 30, pids=256, cpus=1.5),
    }
    values.update(overrides)
    return apptainer_argv(**values)  # type: ignore[arg-type]


def test_the_argv_carries_every_isolation_setting() -> None:
    argv = golden()
    assert argv[:2] == ["apptainer", "exec"]
    options = argv[2 : argv.index("/images/eval.sif")]
    assert options == [
        "--containall",
        "--pid",
        "--ipc",
        "--cleanenv",
        "--no-eval",
        "--no-privs",
        "--no-umask",
        "--net",
        "--network=none",
        f"--bind={WORKDIR}:/srv/workDir:rw",
        "--pwd=/srv/workDir",
        f"--memory={2 << 30}",
        f"--memory-swap={2 << 30}",
        "--pids-limit=256",
        "--cpus=1.5",
    ]
    assert not [a for a in argv if a.startswith(("--writable", "--fakeroot", "--add-caps", "--keep-privs", "--env"))]


def test_user_text_is_only_the_shells_command_argument() -> None:
    argv = golden()
    assert argv[-4:] == ["/images/eval.sif", "/bin/sh", "-c", GUARD.replace("{command}", USER_TEXT, 1)]
    assert all(USER_TEXT not in a for a in argv[:-1])
    assert "kill -TERM -1" not in GUARD and "kill -KILL -1" not in GUARD, "never every process of the user"


def test_gpus_and_network() -> None:
    argv = golden(gpus=("2", "3"), network=True)
    assert "--nv" in argv and "--net" not in argv and not [a for a in argv if a.startswith("--network")]


def test_the_engine_environment_carries_the_payloads_and_none_of_the_engines_settings() -> None:
    host = {
        "PATH": "/usr/bin",
        "HPOSTEER_TOKEN": "hps_secret",
        "APPTAINER_BIND": "/:/host",
        "APPTAINER_ADD_CAPS": "ALL",
        "APPTAINERENV_LD_PRELOAD": "x.so",
        "SINGULARITY_WRITABLE": "1",
        "APPTAINER_CACHEDIR": "/scratch/cache",
    }
    payload = {"HPOSTEER_TASK_ID": "7", "LD_PRELOAD": "y.so", "ODD": "a,b=$(reboot)", "HOME": "/root"}
    env = engine_environment(host, payload, ("2", "3"), "APPTAINERENV_")
    assert env["PATH"] == "/usr/bin" and env["APPTAINER_CACHEDIR"] == "/scratch/cache"
    assert not {"HPOSTEER_TOKEN", "APPTAINER_BIND", "APPTAINER_ADD_CAPS", "SINGULARITY_WRITABLE"} & set(env)
    assert env["APPTAINERENV_HPOSTEER_TASK_ID"] == "7" and env["APPTAINERENV_ODD"] == "a,b=$(reboot)"
    assert env["APPTAINERENV_CUDA_VISIBLE_DEVICES"] == "2,3", "--nv shows every GPU: the host's ids"
    assert env["APPTAINERENV_APPEND_PATH"] == "/srv/workDir" and env["APPTAINERENV_TMPDIR"] == "/tmp"
    assert not {"APPTAINERENV_LD_PRELOAD", "APPTAINERENV_HOME", "APPTAINERENV_PATH"} & set(env)


def test_images_are_local_files_or_the_local_docker_engines() -> None:
    assert image_source("hposteer/base:bookworm") == "docker-daemon:hposteer/base:bookworm"
    assert image_source("docker-daemon:hposteer/base:bookworm") == "docker-daemon:hposteer/base:bookworm"
    assert image_source(local_image("apptainer", "docker://hposteer/base:bookworm")) == (
        "docker-daemon:hposteer/base:bookworm"
    ), "PanDA's docker://NAME is the local Docker engine's NAME"
    assert image_source("/bin") == "/bin"
    for bad, message in (
        ("/nowhere/eval.sif", "does not exist"),
        ("--writable", "not an image reference"),
    ):
        with pytest.raises(RuntimeStartError, match=message):
            image_source(bad)
    for remote in ("library://alpine", "oras://ghcr.io/x:1", "https://example.org/x.sif", "docker://"):
        with pytest.raises(RuntimeStartError, match=r"never pulls|names no image"):
            local_image("apptainer", remote)


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the local Docker engine's command")
def test_a_docker_name_the_local_engine_lacks_names_the_fix() -> None:
    with pytest.raises(RuntimeStartError) as caught:
        image_source(local_image("apptainer", "docker://hposteer-test/missing:none"))
    message = str(caught.value)
    assert "'hposteer-test/missing:none' is not in this machine's Docker engine" in message
    assert "docker load" in message and "apptainer build eval.sif docker-daemon:hposteer-test/missing:none" in message
    with pytest.raises(RuntimeStartError, match="cannot be mounted"):
        golden(workdir=Path("/a:b"))


def test_a_missing_engine_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    for name in ("apptainer", "singularity"):
        with pytest.raises(RuntimeStartError, match=f"no '{name}' command here"):
            make_runtime(name)


# -- process handling, through a stand-in engine --------------------------------------------------

# Drops apptainer's options and the image, then runs the command on the host (so the guard runs
# without a PID namespace: it must only ever signal its own process group).
FAKE = """#!/bin/sh
shift
while [ "$#" -gt 0 ]; do case "$1" in --*) shift ;; *) shift; break ;; esac; done
env > "$FAKE_ENV_DUMP"
exec "$@"
"""


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apptainer").write_text(FAKE)
    (bin_dir / "apptainer").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ENV_DUMP", str(tmp_path / "env.txt"))
    monkeypatch.setattr(os, "getuid", lambda: 1000)  # the runtime refuses root pilots
    return tmp_path


def test_a_root_pilot_is_refused(fake_engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getuid", lambda: 0)
    with pytest.raises(RuntimeStartError, match="runs as root"):
        make_runtime("apptainer")


def test_exit_codes_output_and_environment(fake_engine: Path) -> None:
    runtime = make_runtime("apptainer", RuntimeOptions(default_image="/bin"))
    log = fake_engine / "a.log"
    payload = runtime.start("echo out; echo err >&2; exit 3", fake_engine, {"HPOSTEER_TASK_ID": "7"}, log)
    assert payload.wait(10) == 3
    assert log.read_text().split() == ["out", "err"]
    dumped = (fake_engine / "env.txt").read_text()
    assert "APPTAINERENV_HPOSTEER_TASK_ID=7" in dumped and "APPTAINERENV_CUDA_VISIBLE_DEVICES=" in dumped


def test_a_stop_reaches_the_payload_and_a_dead_pilots_stdin_ends_it(fake_engine: Path) -> None:
    runtime = make_runtime("apptainer", RuntimeOptions(default_image="/bin"))
    sleeper = "exec python3 -c 'import time; time.sleep(600)'"
    payload = runtime.start(sleeper, fake_engine, {}, fake_engine / "b.log")
    time.sleep(0.5)
    started = time.monotonic()
    assert payload.terminate(grace_s=5) == -signal.SIGTERM
    assert time.monotonic() - started < 5
    payload = runtime.start(sleeper, fake_engine, {}, fake_engine / "c.log")
    time.sleep(0.5)
    assert isinstance(payload, apptainer_runtime.ApptainerPayload)
    payload._process.stdin.close()  # type: ignore[union-attr]  # what the kernel does when the pilot dies
    assert payload.wait(5) == -signal.SIGKILL, "the watchdog killed the payload's process group"


def test_a_panda_docker_image_runs_from_the_local_docker_engine(
    fake_engine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``docker://NAME`` (PanDA's form) reaches apptainer as ``docker-daemon:NAME``, the local engine's image."""
    recorder = fake_engine / "bin" / "apptainer"
    recorder.write_text("""#!/bin/sh\nprintf '%s\\n' "$@" > "$FAKE_ENV_DUMP.argv"\n""" + FAKE.split("\n", 1)[1])
    real_docker = shutil.which("docker")
    if real_docker is None:
        pytest.skip("needs the local Docker engine's command")
    runtime = make_runtime("apptainer", RuntimeOptions())
    payload = runtime.start("exit 0", fake_engine, {}, fake_engine / "d.log", image="docker://hposteer/base:bookworm")
    assert payload.wait(10) == 0
    argv = (fake_engine / "env.txt.argv").read_text().splitlines()
    assert "docker-daemon:hposteer/base:bookworm" in argv and not [a for a in argv if "docker://" in a]
