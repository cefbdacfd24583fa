"""The container runner: one steering run is one hardened container run, stateless like iDDS.

Per run: a fresh working directory under ``<data_dir>/steering`` holding only ``%IN``; the
container runs with that directory bind-mounted read-write at the command's working path and
used as its cwd, a read-only root, a small tmpfs ``/tmp``, no new privileges, every capability
dropped, no network, pids/memory/CPU limits, a non-root user and a wall-clock limit; the image
must already be on this host (never pulled). Afterwards ``%OUT`` is read and checked
(``service.core.steering_files``), the container and the directory are removed.

Every way a run can go wrong (no engine, missing image, non-zero exit, timeout, missing or
invalid output) raises ``SteeringError`` with a message for the task's owner that ends with the
container's last output lines; the steering loop records it as a failed run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.core.searchspace import Params, SearchSpace
from service.core.steering import Observation, SteeringError
from service.core.steering_exec import (
    INPUT_FILE,
    OUTPUT_FILE,
    SteeringCommand,
    fill_placeholders,
    placeholder_values,
)
from service.core.steering_files import input_text, parse_output

NOBODY = 65534
MAX_OUTPUT_BYTES = 16 * 1024 * 1024
TAIL_LINES = 20
TAIL_CHARS = 2000
SWEEP_GRACE_S = 60  # a container this long past its deadline was left by a crashed service
MIN_WORKDIR_AGE_S = 3600  # a working directory older than this and than any run was left by one


@dataclass(frozen=True)
class ContainerLimits:
    timeout_s: float = 600.0
    memory_mb: int = 2048
    pids: int = 256
    cpus: float = 1.0
    tmpfs_mb: int = 256


class ContainerRunner:
    """Runs a task's steering container through the Docker engine (``docker`` SDK, local socket)."""

    name = "container"

    def __init__(self, work_root: Path, limits: ContainerLimits | None = None, *, docker_url: str | None = None):
        self.work_root = work_root
        self.limits = limits or ContainerLimits()
        self.docker_url = docker_url

    def run(
        self,
        *,
        key: int,
        command: SteeringCommand,
        space: SearchSpace,
        raw_space: Any,
        segmented: bool,
        model_id: int,
        history: Sequence[Observation],
        n: int,
        max_points: int,
    ) -> list[Params]:
        """Up to ``n`` new points (more are dropped by the caller); ``[]``: the optimiser is exhausted.

        ``%NUM_POINTS`` is ``n`` plus the unevaluated points in ``%IN``: hpogrid generate
        subtracts those, so it returns exactly the ``n`` wanted.
        """
        unevaluated = sum(1 for obs in history if obs.pending)
        values = placeholder_values(num_points=n + unevaluated, max_points=max_points)
        argv = [fill_placeholders(word, values) for word in command.argv]
        env = {"HOME": "/tmp", **{k: fill_placeholders(v, values) for k, v in command.env}}
        self.work_root.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"segment-{key}-", dir=self.work_root))
        try:
            (workdir / INPUT_FILE).write_text(input_text(history, raw_space, segmented=segmented, model_id=model_id))
            user = _prepare_owner(workdir)
            tail = self._run_container(command, argv, env, workdir, user)
            text = _read_output(workdir / OUTPUT_FILE, tail)
            try:
                return parse_output(text, space, segmented=segmented, model_id=model_id)
            except SteeringError as exc:
                raise SteeringError(f"{exc}{tail}") from None
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def retain(self, keys: set[int]) -> None:
        """Nothing is kept between runs."""

    def close(self) -> None:
        """Nothing is kept between runs."""

    def _run_container(
        self, command: SteeringCommand, argv: list[str], env: dict[str, str], workdir: Path, user: str
    ) -> str:
        """Run the container to its end; the formatted tail of its output (empty if it printed nothing)."""
        import docker
        import requests
        from docker.errors import DockerException, ImageNotFound, NotFound

        try:
            client = docker.DockerClient(base_url=self.docker_url) if self.docker_url else docker.from_env()
        except DockerException as exc:
            raise SteeringError(f"the Docker engine does not answer, so no steering container can run: {exc}") from None
        try:
            try:
                client.images.get(command.image)
            except ImageNotFound:
                raise SteeringError(
                    f"the steering image {command.image!r} is not on this server, and the service never pulls "
                    "images: ask the operator to load it (docker load, or build it here)"
                ) from None
            _sweep(client, self.work_root, max(self.limits.timeout_s + SWEEP_GRACE_S, MIN_WORKDIR_AGE_S))
            container = client.containers.create(command.image, argv, **self._hardening(command, env, workdir, user))
            try:
                container.start()
                try:
                    status = container.wait(timeout=self.limits.timeout_s)
                except requests.exceptions.RequestException:
                    _kill(container)
                    raise SteeringError(
                        f"the steering container ran longer than {self.limits.timeout_s:g} s and was killed"
                        + _tail(container)
                    ) from None
                tail = _tail(container)
                code = status.get("StatusCode")
                if code != 0:
                    raise SteeringError(f"the steering container exited with code {code}{_oom(container)}{tail}")
                return tail
            finally:
                with contextlib.suppress(NotFound):
                    container.remove(force=True)
        except DockerException as exc:
            raise SteeringError(f"the Docker engine failed to run the steering container: {exc}") from None
        finally:
            client.close()

    def _hardening(self, command: SteeringCommand, env: dict[str, str], workdir: Path, user: str) -> dict[str, Any]:
        """Every runtime setting of the container; none comes from the user's text."""
        from docker.types import LogConfig, Ulimit

        limits = self.limits
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
            "labels": {"hposteer.role": "steering", "hposteer.deadline": f"{time.time() + limits.timeout_s:.0f}"},
            "detach": True,
        }


def _sweep(client: Any, work_root: Path, max_age_s: float) -> None:
    """Remove what a run cut short by a crash left behind: containers past their deadline, and
    working directories older than any run may last (a missed one is retried at the next run)."""
    from docker.errors import DockerException

    now = time.time()
    try:
        for container in client.containers.list(all=True, filters={"label": "hposteer.role=steering"}):
            deadline = container.labels.get("hposteer.deadline", "")
            if deadline.isdigit() and int(deadline) + SWEEP_GRACE_S < now:
                with contextlib.suppress(DockerException):
                    container.remove(force=True)
    except DockerException:
        return
    for path in work_root.iterdir():
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink() and path.stat().st_mtime < now - max_age_s:
                shutil.rmtree(path, ignore_errors=True)


def _prepare_owner(workdir: Path) -> str:
    """The container's user: nobody when the service runs as root (the directory is then given to
    nobody), else the service's own uid, which owns the directory already."""
    if os.getuid() == 0:
        os.chown(workdir, NOBODY, NOBODY)
        return f"{NOBODY}:{NOBODY}"
    return f"{os.getuid()}:{os.getgid()}"


def _read_output(path: Path, tail: str) -> str:
    """%OUT, refusing links (the container owns the directory) and oversized files."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise SteeringError(f"the steering container wrote no output file (%OUT, {OUTPUT_FILE}){tail}") from None
    except OSError as exc:
        raise SteeringError(f"the output file {OUTPUT_FILE} cannot be read ({exc.strerror}); is it a link?") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SteeringError(f"the output file {OUTPUT_FILE} is not a regular file")
        data = handle.read(MAX_OUTPUT_BYTES + 1)
    if len(data) > MAX_OUTPUT_BYTES:
        raise SteeringError(f"the output file {OUTPUT_FILE} is larger than {MAX_OUTPUT_BYTES // 2**20} MiB")
    return data.decode("utf-8", errors="replace")


def _kill(container: Any) -> None:
    from docker.errors import DockerException

    with contextlib.suppress(DockerException):  # it may have ended on its own meanwhile
        container.kill()


def _tail(container: Any) -> str:
    from docker.errors import DockerException

    try:
        raw = container.logs(stdout=True, stderr=True, tail=TAIL_LINES)
    except DockerException:
        return ""
    text = raw.decode("utf-8", errors="replace").rstrip() if isinstance(raw, bytes) else ""
    if not text:
        return "; it printed nothing"
    if len(text) > TAIL_CHARS:
        text = "..." + text[-TAIL_CHARS:]
    return f"; last output:\n{text}"


def _oom(container: Any) -> str:
    from docker.errors import DockerException

    try:
        container.reload()
        killed = bool(container.attrs.get("State", {}).get("OOMKilled"))
    except DockerException:
        return ""
    return " (killed for using more memory than its limit)" if killed else ""
