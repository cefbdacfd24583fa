"""What both kinds of steering container share: the hardening, the engine client, output tails.

Every runtime setting is built here from the service's limits; none comes from the user's text
(hposteer.service.core.steering_exec keeps only the image, the command, ``-e`` pairs and the mount path).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hposteer.service.core.steering import SteeringError
from hposteer.service.core.steering_exec import SteeringCommand

NOBODY = 65534
TAIL_LINES = 20
TAIL_CHARS = 2000


@dataclass(frozen=True)
class ContainerLimits:
    timeout_s: float = 600.0
    memory_mb: int = 2048
    pids: int = 256
    cpus: float = 1.0
    tmpfs_mb: int = 256
    warm: int = 4  # warm containers kept (one per segment); 0: a fresh container per run
    idle_s: float = 300.0  # a warm container unused this long is removed


def connect(docker_url: str | None, timeout_s: float) -> Any:
    """A Docker SDK client; SteeringError if the engine does not answer.

    ``timeout_s`` bounds each read from the engine, so it must exceed the longest run."""
    import docker
    from docker.errors import DockerException

    try:
        if docker_url:
            return docker.DockerClient(base_url=docker_url, timeout=int(timeout_s) + 1)
        return docker.from_env(timeout=int(timeout_s) + 1)
    except DockerException as exc:
        raise SteeringError(f"the Docker engine does not answer, so no steering container can run: {exc}") from None


def image_or_error(client: Any, image: str) -> Any:
    """The local image; SteeringError naming the fix when it is not on this host (never pulled)."""
    from docker.errors import ImageNotFound

    try:
        return client.images.get(image)
    except ImageNotFound:
        raise SteeringError(
            f"the steering image {image!r} is not on this server, and the service never pulls "
            "images: ask the operator to load it (docker load, or build it here)"
        ) from None


def hardening(
    limits: ContainerLimits,
    command: SteeringCommand,
    env: dict[str, str],
    workdir: Path,
    user: str,
    labels: dict[str, str],
) -> dict[str, Any]:
    """Every runtime setting of a steering container (docker SDK ``containers.create`` keywords)."""
    from docker.types import LogConfig, Ulimit

    return {
        "environment": env,
        "working_dir": command.workdir,
        "volumes": {str(workdir.resolve()): {"bind": command.workdir, "mode": "rw"}},
        "user": user,
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,noexec,nosuid,nodev,size={limits.tmpfs_mb}m"},
        "security_opt": ["no-new-privileges"],
        "cap_drop": ["ALL"],
        "network_mode": "none",
        "pids_limit": limits.pids,
        "mem_limit": f"{limits.memory_mb}m",
        "memswap_limit": f"{limits.memory_mb}m",
        "nano_cpus": int(limits.cpus * 1e9),
        "ulimits": [Ulimit(name="nofile", soft=1024, hard=1024)],
        "log_config": LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        "labels": labels,
        "detach": True,
    }


def prepare_owner(workdir: Path) -> str:
    """The container's user: nobody when the service runs as root (the directory is then given to
    nobody), else the service's own uid, which owns the directory already."""
    if os.getuid() == 0:
        os.chown(workdir, NOBODY, NOBODY)
        return f"{NOBODY}:{NOBODY}"
    return f"{os.getuid()}:{os.getgid()}"


def format_tail(raw: bytes) -> str:
    """The last lines of a container's output, as the end of an error message."""
    lines = raw.decode("utf-8", errors="replace").rstrip().splitlines()[-TAIL_LINES:]
    text = "\n".join(lines)
    if not text:
        return "; it printed nothing"
    if len(text) > TAIL_CHARS:
        text = "..." + text[-TAIL_CHARS:]
    return f"; last output:\n{text}"


def container_tail(container: Any) -> str:
    from docker.errors import DockerException

    try:
        raw = container.logs(stdout=True, stderr=True, tail=TAIL_LINES)
    except DockerException:
        return ""
    return format_tail(raw) if isinstance(raw, bytes) else ""


def oom_note(container: Any) -> str:
    from docker.errors import DockerException

    try:
        container.reload()
        killed = bool(container.attrs.get("State", {}).get("OOMKilled"))
    except DockerException:
        return ""
    return " (killed for using more memory than its limit)" if killed else ""


def kill(container: Any) -> None:
    from docker.errors import DockerException

    with contextlib.suppress(DockerException):  # it may have ended on its own meanwhile
        container.kill()


def remove(client: Any, container_id: str) -> None:
    from docker.errors import DockerException

    with contextlib.suppress(DockerException):  # already gone
        client.api.remove_container(container_id, force=True)
