"""The ``docker`` runtime: each attempt in a hardened container of a local image (docs/pilot.md).

The container's settings come from :func:`hposteer.client.pilot.runtimes.container_args.create_args`; this module
makes the engine calls. The image must already be on the engine (the pilot never pulls); it is
pinned by its local id when the attempt starts. The container's output is followed into the
attempt's log file by a thread, and the container is removed once it has ended and its output
is in. Containers are labelled with the pilot (name, host, process id) and the attempt; when a
pilot starts, it removes the leftover containers of an earlier process of the same name on this
host that is no longer running (a pilot killed with SIGKILL, a crashed machine). While the
pilot runs, it keeps each container's stdin attached: if the pilot dies, the engine closes it,
and the container stops its payload at once.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from hposteer.client.pilot.runtimes.base import (
    KILL_GRACE_S,
    Payload,
    RuntimeOptions,
    RuntimeStartError,
    image_reference,
)
from hposteer.client.pilot.runtimes.container_args import NOBODY, container_user, create_args, exit_code, give_to
from hposteer.client.pilot.runtimes.engine_cli import alive

ENGINE_ERROR = 125  # what `docker run` exits with when the engine fails; reported when it is lost
LABEL = "hposteer.pilot"


class DockerPayload:
    def __init__(self, container: Container, log_path: Path, stdin: Any):
        self._container = container
        self._log_path = log_path
        self._stdin = stdin  # held open: the engine closes the container's stdin when the pilot dies
        self._code: int | None = None
        self._done = threading.Event()
        self._logs = threading.Thread(target=self._follow_logs, name=f"logs-{container.short_id}", daemon=True)
        self._logs.start()
        threading.Thread(target=self._wait, name=f"wait-{container.short_id}", daemon=True).start()

    def _follow_logs(self) -> None:
        try:
            with self._log_path.open("ab") as log:
                for chunk in self._container.logs(stream=True, follow=True, stdout=True, stderr=True):
                    log.write(chunk)
                    log.flush()
        except (docker.errors.DockerException, OSError):
            pass  # the engine went away: the waiting thread says so in the log

    def _wait(self) -> None:
        try:
            status = int(self._container.wait()["StatusCode"])
        except Exception as exc:  # the engine went away or the request broke: the attempt cannot go on
            status = ENGINE_ERROR
            self._note(f"lost the container engine while waiting for the payload: {exc}")
        self._logs.join(timeout=10)
        with contextlib.suppress(Exception):
            self._stdin.close()
        try:
            self._container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            self._note(f"could not remove container {self._container.short_id}: {exc}")
        self._code = exit_code(status)
        self._done.set()

    def _note(self, text: str) -> None:
        with contextlib.suppress(OSError), self._log_path.open("a") as log:
            log.write(f"\n[hposteer pilot] {text}\n")

    def poll(self) -> int | None:
        return self._code if self._done.is_set() else None

    def wait(self, timeout_s: float) -> int | None:
        self._done.wait(timeout_s)
        return self.poll()

    def terminate(self, grace_s: float = KILL_GRACE_S) -> int:
        """``docker stop``: SIGTERM to the payload's process group, SIGKILL after ``grace_s``."""
        with contextlib.suppress(docker.errors.DockerException):
            self._container.stop(timeout=max(0, math.ceil(grace_s)))
        code = self.wait(30.0)
        if code is None:
            with contextlib.suppress(docker.errors.DockerException):
                self._container.kill()
            code = self.wait(30.0)
        return ENGINE_ERROR if code is None else code


class DockerRuntime:
    """Hardened containers on the local Docker engine (docs/architecture.md#security)."""

    name = "docker"
    isolated = True

    def __init__(self, options: RuntimeOptions):
        self.options = options
        try:
            self.client = docker.from_env()
            self.client.ping()
        except docker.errors.DockerException as exc:
            raise RuntimeStartError(
                f"runtime docker: cannot reach the Docker engine ({exc}); start dockerd, or point DOCKER_HOST at it"
            ) from exc
        self.labels = {
            LABEL: options.pilot_name,
            f"{LABEL}.host": socket.gethostname(),
            f"{LABEL}.pid": str(os.getpid()),
        }
        removed = self.remove_leftovers()
        if removed:
            options.log(
                f"removed {removed} leftover container(s) of an earlier run of pilot "
                f"{options.pilot_name!r} on this host"
            )

    def remove_leftovers(self) -> int:
        """Remove the containers of earlier processes of this pilot (same name, this host, no longer running)."""
        removed = 0
        for container in self.client.containers.list(all=True, filters={"label": f"{LABEL}={self.options.pilot_name}"}):
            labels = container.labels
            if labels.get(f"{LABEL}.host") != self.labels[f"{LABEL}.host"] or alive(labels.get(f"{LABEL}.pid", "")):
                continue
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
                removed += 1
        return removed

    def start(
        self,
        command: str,
        workdir: Path,
        env: dict[str, str],
        log_path: Path,
        *,
        image: str | None = None,
        gpus: tuple[str, ...] = (),
        network: bool = False,
        attempt_id: int | None = None,
    ) -> Payload:
        reference = image_reference("docker", image, self.options)
        image_id, image_path = self._image(reference)
        user = container_user(os.getuid(), os.getgid())
        workdir = workdir.resolve()
        if user == NOBODY:
            try:
                give_to(workdir, 65534, 65534)
            except OSError as exc:
                raise RuntimeStartError(f"cannot give {workdir} to the container's user {NOBODY}: {exc}") from exc
        labels = {**self.labels, "hposteer.attempt": "" if attempt_id is None else str(attempt_id)}
        args = create_args(
            image_id=image_id,
            command=command,
            workdir=workdir,
            env=env,
            user=user,
            gpus=gpus,
            network=network,
            labels=labels,
            limits=self.options.limits,
            image_path=image_path,
        )
        container = None
        try:
            container = self.client.containers.create(**args)
            stdin = container.attach_socket(params={"stdin": 1, "stream": 1})
            container.start()
        except docker.errors.DockerException as exc:
            if container is not None:
                with contextlib.suppress(docker.errors.DockerException):
                    container.remove(force=True)
            raise RuntimeStartError(f"runtime docker: cannot start a container of image {reference!r}: {exc}") from exc
        return DockerPayload(container, log_path, stdin)

    def _image(self, reference: str) -> tuple[str, str | None]:
        """The image's id (the attempt is pinned to it) and the PATH its configuration sets (a venv's bin...)."""
        try:
            found = self.client.images.get(reference)
            variables = (found.attrs.get("Config") or {}).get("Env") or []
            path = next((v.split("=", 1)[1] for v in variables if v.startswith("PATH=")), None)
            return str(found.id), path
        except docker.errors.ImageNotFound:
            raise RuntimeStartError(
                f"runtime docker: image {reference!r} is not on this machine's Docker engine, and the pilot never "
                f"pulls images. Make it available first, e.g. `docker load -i image.tar` (a file made with "
                f"`docker save {reference}` where the image exists), or build it here with "
                f"`docker build -t {reference}`"
            ) from None
        except docker.errors.DockerException as exc:
            raise RuntimeStartError(f"runtime docker: cannot look up image {reference!r}: {exc}") from exc
