"""Payloads for the container runtimes' live tests (docker, podman, apptainer): the hostile-container canary and
the user text that must stay a single shell argument."""

from __future__ import annotations

import json
import os
from itertools import count
from pathlib import Path
from typing import Any

from hposteer.client.pilot.runtimes.base import RuntimeOptions
from hposteer.client.pilot.runtimes.container_args import (
    MIB,
    ContainerLimits,
)
from hposteer.client.pilot.runtimes.registry import make_runtime

USER_TEXT = "--privileged -v /:/host; rm -rf / # $(reboot)"


_names = count()


def pilot_name() -> str:
    return f"docker-test-{os.getpid()}-{next(_names)}"


EVAL = """
import json
p = json.load(open("input.json"))
json.dump({"loss": (p["x"] - 0.5) ** 2, "message": open("/etc/os-release").readline().strip()},
          open("output.json", "w"))
"""


PROBE = """
import json, os, socket
out = {"uid": os.getuid()}
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
out["cap_eff"] = status["CapEff"].strip()
out["no_new_privs"] = status["NoNewPrivs"].strip()
for name, path in (("root", "/probe"), ("tmp", "/tmp/probe"), ("workdir", "probe")):
    try:
        open(path, "w").write("x")
        out[name] = "written"
    except OSError as exc:
        out[name] = exc.__class__.__name__
for name, address in (("service", ("127.0.0.1", int(os.environ["SERVICE_PORT"]))), ("outside", ("10.255.255.1", 80))):
    try:
        socket.create_connection(address, timeout=2).close()
        out[name] = "connected"
    except OSError as exc:
        out[name] = exc.__class__.__name__
json.dump(out, open("probe.json", "w"))
"""


# A hostile payload (docs/reliability.md, "hostile-container canary"): each attempt to escape or
# exhaust the host must fail inside the container, and the container must still end normally.
HOSTILE = """
import errno, json, os, stat, subprocess
out = {}
os.makedirs("/tmp/m", exist_ok=True)
out["mount_is_setuid"] = bool(os.stat("/usr/bin/mount").st_mode & stat.S_ISUID)
out["mount"] = subprocess.run(["mount", "-t", "tmpfs", "none", "/tmp/m"], capture_output=True).returncode
out["unshare"] = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True).returncode
out["chroot"] = subprocess.run(["chroot", "/", "true"], capture_output=True).returncode
children = []
try:
    for _ in range(2000):
        children.append(subprocess.Popen(["sleep", "30"]))
except OSError as exc:
    out["fork_stopped_by"] = errno.errorcode.get(exc.errno, str(exc.errno))
out["forked"] = len(children)
for child in children:
    child.kill()
    child.wait()
json.dump(out, open("hostile.json", "w"))
"""


HOG = """
b = bytearray(0)
while True:
    b += bytes(64 * 1024 * 1024)
"""


def run_hostile(runtime_name: str, image: str, workdir: Path) -> tuple[dict[str, Any], int]:
    """The canary's findings, and the exit code of a payload that allocates past the memory limit."""
    limits = ContainerLimits(memory_bytes=256 * MIB, pids=48, tmp_bytes=16 * MIB)
    runtime = make_runtime(runtime_name, RuntimeOptions(pilot_name=pilot_name(), limits=limits))
    workdir.mkdir()
    (workdir / "hostile.py").write_text(HOSTILE)
    (workdir / "hog.py").write_text(HOG)
    payload = runtime.start("python3 hostile.py", workdir, {}, workdir / "hostile.log", image=image)
    assert payload.wait(60) == 0, (workdir / "hostile.log").read_text()
    hog = runtime.start("python3 hog.py", workdir, {}, workdir / "hog.log", image=image)
    return json.loads((workdir / "hostile.json").read_text()), hog.wait(60)


def assert_contained(found: dict[str, Any], hog_exit: int) -> None:
    assert found["mount_is_setuid"], "the canary needs a setuid binary to try"
    assert found["mount"] != 0, "setuid mount gained nothing: no new privileges, no capabilities"
    assert found["unshare"] != 0 and found["chroot"] != 0, "no namespaces, no chroot"
    assert found["fork_stopped_by"] == "EAGAIN" and found["forked"] < 48, "the pids limit held"
    assert hog_exit in (137, -9), f"the memory hog was killed at the limit (exit {hog_exit})"
