"""What a payload container is made of: pure functions, no engine calls (the golden test reads them).

Every container gets the same hardened settings (docs/reliability.md#hostile-input):
read-only root filesystem, a writable tmpfs ``/tmp``, ``no-new-privileges``, every capability
dropped, no network unless allowed, pids/memory(/CPU) limits, explicit ``nofile``/``nproc``
ulimits, a non-root user, and one bind mount: the attempt's working directory at
``/srv/workDir``. The evaluation command is one argument of ``/bin/sh -c`` *inside* the
container: no user text ever becomes an engine setting.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKDIR = "/srv/workDir"  # as in PanDA (docs/panda-compatibility.md#the-evaluation-contract)
NOBODY = "65534:65534"  # the user of a root pilot's payloads
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ULIMIT = 4096  # nofile and nproc, explicit (Podman fails with its defaults here: docs/architecture.md#known-traps)
MIB = 1024 * 1024
GIB = 1024 * MIB
# Host settings that mean nothing (or the wrong thing) inside a container.
HOST_ONLY = frozenset(
    {
        "PATH", "HOME", "PWD", "OLDPWD", "USER", "LOGNAME", "SHELL", "TMPDIR", "TMP", "TEMP", "HOSTNAME",
        "MAIL", "DISPLAY", "XAUTHORITY", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE",
        "VIRTUAL_ENV", "KRB5CCNAME", "_",
    }
)  # fmt: skip
HOST_ONLY_PREFIXES = ("LD_", "XDG_", "SSH_", "DOCKER_", "SUDO_", "CONDA_", "PYENV_", "DBUS_")

# The container's main process (PID 1 of the container's own PID namespace: never run it
# elsewhere, its ``kill -1`` means "every other process in this container"). A stop (``docker
# stop``: SIGTERM to PID 1, which ignores signals it has no handler for) is passed on to
# everything the payload started, which then has the grace period the engine gives before
# SIGKILL. The pilot keeps the container's stdin attached; when the pilot dies, the engine closes
# it and the watchdog kills the payload (the docker counterpart of the local runtime's
# parent-death signal). The payload's status is the container's. {command} sits on lines of its
# own, so that a trailing comment or a heredoc stays its own.
GUARD = """exec 3<&0
(
{command}
) </dev/null 3<&- &
payload=$!
trap 'kill -TERM -1 2>/dev/null' TERM INT
{ while read -r _; do :; done; kill -KILL -1 2>/dev/null; } <&3 &
exec 3<&-
while :; do
  wait "$payload"; status=$?
  kill -0 "$payload" 2>/dev/null || break
done
exit "$status"
"""


class ContainerSettingError(ValueError):
    """A container option of the pilot cannot be used; the message says which and why."""


@dataclass(frozen=True)
class ContainerLimits:
    memory_bytes: int = 4 * GIB  # also the memory+swap limit: no swap
    pids: int = 4096  # processes and threads together
    cpus: float | None = None  # None: no CPU quota
    tmp_bytes: int = 512 * MIB  # the /tmp tmpfs (it counts against the memory limit)


def parse_size(text: str, option: str) -> int:
    """``512m``, ``4g``, ``4GB``, ``1024`` (MB) -> bytes."""
    match = re.fullmatch(r"\s*(\d{1,9})\s*(m|mb|mib|g|gb|gib)?\s*", text.lower())
    if match is None or int(match.group(1)) == 0:
        raise ContainerSettingError(f"{option} {text!r}: give a size in MB, or with a suffix (512m, 4g)")
    return int(match.group(1)) * (GIB if (match.group(2) or "").startswith("g") else MIB)


def container_user(uid: int, gid: int) -> str:
    """The pilot's own user, unless it is root: then nobody (the working directory is given to it)."""
    return NOBODY if uid == 0 else f"{uid}:{gid}"


def container_env(env: Mapping[str, str], gpus: Sequence[str], image_path: str | None = None) -> dict[str, str]:
    """The payload's environment as the container sees it: host-only variables dropped, container
    paths set (the image's own PATH, e.g. its venv, plus the working directory), and the slot's GPUs
    renumbered (the engine shows a container only its GPUs, from 0)."""
    out = {k: v for k, v in env.items() if k not in HOST_ONLY and not k.startswith(HOST_ONLY_PREFIXES)}
    out.update(
        {
            "PATH": f"{image_path or CONTAINER_PATH}:{WORKDIR}",  # as PanDA's __run_main_exec.sh does
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "PWD": WORKDIR,
            "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(len(gpus))),
            "HPOSTEER_HOST_GPUS": ",".join(gpus),
        }
    )
    return out


def guarded(command: str) -> str:
    return GUARD.replace("{command}", command, 1)


def create_args(
    *,
    image_id: str,
    command: str,
    workdir: Path,
    env: Mapping[str, str],
    user: str,
    gpus: Sequence[str] = (),
    network: bool = False,
    labels: Mapping[str, str] | None = None,
    limits: ContainerLimits | None = None,
    image_path: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for docker's ``containers.create``: the hardened container of one attempt."""
    limits = limits or ContainerLimits()
    args: dict[str, Any] = {
        "image": image_id,  # the local image id, pinned when the attempt starts
        "entrypoint": ["/bin/sh", "-c"],  # the image's own entrypoint is not run
        "command": [guarded(command)],
        "working_dir": WORKDIR,
        "user": user,
        "environment": container_env(env, gpus, image_path),
        "labels": dict(labels or {}),
        "mounts": [{"Type": "bind", "Source": str(workdir), "Target": WORKDIR, "ReadOnly": False}],
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={limits.tmp_bytes // MIB}m"},
        "security_opt": ["no-new-privileges"],
        "cap_drop": ["ALL"],
        "privileged": False,
        "network_mode": "bridge" if network else "none",
        "pids_limit": limits.pids,
        "mem_limit": limits.memory_bytes,
        "memswap_limit": limits.memory_bytes,
        "ulimits": [
            {"name": "nofile", "soft": ULIMIT, "hard": ULIMIT},
            {"name": "nproc", "soft": ULIMIT, "hard": ULIMIT},
        ],
        "stdin_open": True,  # attached by the pilot: closed when the pilot dies (the watchdog above)
        "tty": False,
        "use_config_proxy": False,  # no proxy settings from the host's docker config in the environment
    }
    if limits.cpus is not None:
        args["nano_cpus"] = round(limits.cpus * 1e9)
    if gpus:
        args["device_requests"] = [{"device_ids": list(gpus), "capabilities": [["gpu"]]}]
    return args


def exit_code(status: int) -> int:
    """The engine's exit status as the local runtime reports it: 128+N (the shell's way of saying
    "killed by signal N", and the engine's for a SIGKILLed container) becomes -N."""
    return -(status - 128) if 128 < status < 160 else status


def give_to(workdir: Path, uid: int, gid: int) -> None:
    """Make the working directory writable for the container's user (a root pilot's payloads run as
    nobody). Symbolic links and hard-linked files (the read-only dataset cache) stay as they are."""
    os.chown(workdir, uid, gid)
    for root, dirs, files in os.walk(workdir):
        for name in dirs:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
        for name in files:
            path = os.path.join(root, name)
            info = os.lstat(path)
            if not os.path.islink(path) and info.st_nlink == 1:
                os.chown(path, uid, gid, follow_symlinks=False)
