"""What every runtime shares: the protocols, the pilot's options, image references, errors.

The runtime modules (``local``, ``docker``, ``podman``, ``apptainer``) import this module and their
helpers (``container_args``, ``engine_cli``, ``seccomp``), never ``registry``, which imports them:
so there is no import circle (an import-linter contract in pyproject.toml keeps it so).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hposteer.client.pilot.runtimes.container_args import ContainerLimits

LOG_TAIL_BYTES = 64 * 1024
KILL_GRACE_S = 10.0


class RuntimeStartError(Exception):
    """The runtime does not exist, or could not start the payload."""


class Payload(Protocol):
    """A started evaluation."""

    def poll(self) -> int | None:
        """The exit code, or None while it runs."""

    def wait(self, timeout_s: float) -> int | None:
        """Wait up to ``timeout_s``; the exit code, or None if it still runs."""

    def terminate(self, grace_s: float = KILL_GRACE_S) -> int:
        """Stop it and everything it started: SIGTERM, then SIGKILL after ``grace_s``."""


@dataclass(frozen=True)
class RuntimeOptions:
    """The pilot's settings a runtime may use (``local`` uses none of them)."""

    pilot_name: str = "hposteer-pilot"  # container runtimes label their containers with it
    default_image: str | None = None  # for tasks naming no --evaluationContainer
    limits: ContainerLimits = field(default_factory=ContainerLimits)
    log: Callable[[str], None] = print  # what a runtime has to tell the pilot's operator at start


def image_reference(runtime: str, image: str | None, options: RuntimeOptions) -> str:
    """The image a container runtime runs: the task's, else the pilot's default (an error names both),
    in the runtime's own local form (:func:`local_image`)."""
    reference = image or options.default_image
    if not reference:
        raise RuntimeStartError(
            f"runtime {runtime}: the task names no image (--evaluationContainer) and the pilot has no default "
            "(--container-image)"
        )
    return local_image(runtime, reference)


DOCKER_SCHEME = "docker://"  # PanDA's form: docker://python:3.11-slim
PULL_SCHEMES = ("library://", "oras://", "shub://", "http://", "https://")  # only a registry has these
DAEMON_SOURCE = "docker-daemon:"  # apptainer's name for an image in the local Docker engine
APPTAINER_NAMES = frozenset({"apptainer", "singularity"})


def local_image(runtime: str, reference: str) -> str:
    """``reference`` as ``runtime`` finds it on this machine (the pilot never pulls).

    PanDA configurations name images ``docker://NAME``: docker and podman look ``NAME`` up in their
    own image storage, apptainer/singularity read it from the local Docker engine
    (``docker-daemon:NAME``). Other registry schemes have no local equivalent and are refused."""
    if reference.startswith(PULL_SCHEMES):
        raise RuntimeStartError(
            f"runtime {runtime}: {reference[:100]!r} names an image in a remote registry, and the pilot never "
            "pulls images; give a local image instead: a name the local engine has (`docker://NAME` or `NAME`)"
            + (", or the absolute path of a .sif file" if runtime in APPTAINER_NAMES else "")
        )
    if not reference.startswith(DOCKER_SCHEME):
        return reference
    name = reference.removeprefix(DOCKER_SCHEME)
    if not name:
        raise RuntimeStartError(
            f"runtime {runtime}: the image {reference!r} names no image after 'docker://' (e.g. docker://python:3.11)"
        )
    return f"{DAEMON_SOURCE}{name}" if runtime in APPTAINER_NAMES else name


class Runtime(Protocol):
    name: str
    isolated: bool  # False: the payload can touch this machine as the pilot's user

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
        """Run ``command`` (a shell command line) in ``workdir``; output appended to ``log_path``.

        ``image`` is the task's evaluation container, ``gpus`` the slot's GPU ids, ``network``
        whether the payload may use the network (the task asks and the site allows), and
        ``attempt_id`` labels what the runtime starts. Runtimes without containers ignore them.
        """


class LocalPayload:
    """A payload run as a process group of its own on this machine (the ``local`` and ``apptainer``
    runtimes): stopping it stops everything it started."""

    def __init__(self, process: subprocess.Popen[bytes]):
        self._process = process
        self.pid = process.pid  # also the process group id

    def poll(self) -> int | None:
        code = self._process.poll()
        if code is not None:
            self._kill_leftovers()
        return code

    def wait(self, timeout_s: float) -> int | None:
        try:
            code = self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
        self._kill_leftovers()
        return code

    def terminate(self, grace_s: float = KILL_GRACE_S) -> int:
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 30.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
            code = self.wait(wait_s)
            if code is not None:
                return code
        return self._process.wait()

    def _kill_leftovers(self) -> None:
        """Processes the payload left behind in its group (daemons, stray workers) go with it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of a log, decoded leniently (a character cut in two is dropped)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read(limit)
    except OSError:
        return ""
    if size > limit:
        skip = 0
        while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:  # UTF-8 continuation bytes
            skip += 1
        data = data[skip:]
    return data.decode(errors="replace")
