"""The container runner: one steering run of a task's own container, stateless like iDDS.

Per run: a working directory under ``<data_dir>/steering`` holding only ``%IN``, bind-mounted
read-write at the command's working path and used as its cwd; a read-only root, a small tmpfs
``/tmp``, no new privileges, every capability dropped, no network, pids/memory/CPU limits, a
non-root user and a wall-clock limit (hposteer.service.steering.containers.engine); the image must already
be on this host (never pulled). Afterwards ``%OUT`` is read and checked
(``hposteer.service.core.steering_files``).

An image labelled ``io.hposteer.steering-server`` runs warm (hposteer.service.steering.containers.warm_pool):
the segment's container stays up between runs and each run is a ``docker exec`` of the same
command, saving the container start and the library imports. Any other image gets a fresh
container per run, removed with its directory afterwards.

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
from pathlib import Path
from typing import Any

from hposteer.core.searchspace import Params, SearchSpace
from hposteer.service.core.steering import Observation, SteeringError
from hposteer.service.core.steering_exec import (
    INPUT_FILE,
    OUTPUT_FILE,
    SteeringCommand,
    fill_placeholders,
    placeholder_values,
)
from hposteer.service.core.steering_files import input_text, parse_output
from hposteer.service.steering.containers import engine
from hposteer.service.steering.containers.engine import ContainerLimits
from hposteer.service.steering.containers.warm_pool import WarmPool, server_command

MAX_OUTPUT_BYTES = 16 * 1024 * 1024
SWEEP_GRACE_S = 60  # a container this long past its deadline was left by a crashed service
MIN_WORKDIR_AGE_S = 3600  # a working directory older than this and than any run was left by one
ENGINE_SLACK_S = 30  # engine reads wait this much longer than a run may last

__all__ = ["ContainerLimits", "ContainerRunner"]


class ContainerRunner:
    """Runs a task's steering container through the Docker engine (``docker`` SDK, local socket)."""

    name = "container"

    def __init__(self, work_root: Path, limits: ContainerLimits | None = None, *, docker_url: str | None = None):
        self.work_root = work_root
        self.limits = limits or ContainerLimits()
        self.docker_url = docker_url
        self._pool = WarmPool(work_root, self.limits)

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
        text_in = input_text(history, raw_space, segmented=segmented, model_id=model_id)
        client = self._client()
        try:
            image = engine.image_or_error(client, command.image)
            server = server_command(image) if self.limits.warm > 0 else None
            if server is None:
                return self._run_once(client, command, argv, env, text_in, space, segmented, model_id)
            workdir, tail = self._pool.run(client, key, command, image, server, argv, env, text_in, INPUT_FILE)
            try:
                return _points(_read_output(workdir / OUTPUT_FILE, tail), tail, space, segmented, model_id)
            except SteeringError:
                self._pool.discard(client, key)
                raise
            finally:
                self._pool.finish(key)
        finally:
            client.close()

    def retain(self, keys: set[int]) -> None:
        """Remove the warm containers of every other segment, and those idle too long."""
        if self._pool.keys():
            self._pool.retain(self._client, keys)

    def close(self) -> None:
        """Remove every warm container (the service is stopping)."""
        if self._pool.keys():
            self._pool.close(self._client)

    def sweep(self) -> None:
        """Remove the warm containers a killed service left on this host (when an engine answers)."""
        try:
            client = self._client()
        except SteeringError:
            return
        try:
            self._pool.sweep(client)
        finally:
            client.close()

    def _client(self) -> Any:
        return engine.connect(self.docker_url, self.limits.timeout_s + ENGINE_SLACK_S)

    def _run_once(
        self,
        client: Any,
        command: SteeringCommand,
        argv: list[str],
        env: dict[str, str],
        text_in: str,
        space: SearchSpace,
        segmented: bool,
        model_id: int,
    ) -> list[Params]:
        """A fresh container for this run alone, removed with its directory afterwards."""
        self.work_root.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="segment-", dir=self.work_root))
        try:
            (workdir / INPUT_FILE).write_text(text_in)
            user = engine.prepare_owner(workdir)
            tail = self._run_container(client, command, argv, env, workdir, user)
            return _points(_read_output(workdir / OUTPUT_FILE, tail), tail, space, segmented, model_id)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _run_container(
        self, client: Any, command: SteeringCommand, argv: list[str], env: dict[str, str], workdir: Path, user: str
    ) -> str:
        """Run the container to its end; the formatted tail of its output."""
        import requests
        from docker.errors import DockerException, NotFound

        try:
            _sweep(client, self.work_root, max(self.limits.timeout_s + SWEEP_GRACE_S, MIN_WORKDIR_AGE_S))
            labels = {
                "hposteer.role": "steering",
                "hposteer.deadline": f"{time.time() + self.limits.timeout_s:.0f}",
                "hposteer.workdir": str(workdir),  # which run's directory, for an operator reading `docker ps`
            }
            settings = engine.hardening(self.limits, command, env, workdir, user, labels)
            container = client.containers.create(command.image, argv, **settings)
            try:
                container.start()
                try:
                    status = container.wait(timeout=self.limits.timeout_s)
                except requests.exceptions.RequestException:
                    engine.kill(container)
                    raise SteeringError(
                        f"the steering container ran longer than {self.limits.timeout_s:g} s and was killed"
                        + engine.container_tail(container)
                    ) from None
                tail = engine.container_tail(container)
                code = status.get("StatusCode")
                if code != 0:
                    raise SteeringError(
                        f"the steering container exited with code {code}{engine.oom_note(container)}{tail}"
                    )
                return tail
            finally:
                with contextlib.suppress(NotFound):
                    container.remove(force=True)
        except DockerException as exc:
            raise SteeringError(f"the Docker engine failed to run the steering container: {exc}") from None


def _points(text: str, tail: str, space: SearchSpace, segmented: bool, model_id: int) -> list[Params]:
    try:
        return parse_output(text, space, segmented=segmented, model_id=model_id)
    except SteeringError as exc:
        raise SteeringError(f"{exc}{tail}") from None


def _sweep(client: Any, work_root: Path, max_age_s: float) -> None:
    """Remove what a one-shot run cut short by a crash left behind: containers past their deadline,
    and working directories older than any run may last (a missed one is retried at the next run).
    Warm containers and their directories are swept by hposteer.service.steering.containers.warm_pool."""
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
            if path.name.startswith("warm-"):
                continue
            if path.is_dir() and not path.is_symlink() and path.stat().st_mtime < now - max_age_s:
                shutil.rmtree(path, ignore_errors=True)


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
