"""How payloads run: runtimes behind one small protocol, resolved by name from one table.

A runtime starts the evaluation command in a prepared working directory and hands back a
:class:`Payload` that can be waited for and terminated as a whole. ``local`` runs it on this
machine; ``docker`` (src/hposteer/client/pilot/docker_runtime.py) and ``podman`` in a hardened container
(docs/architecture.md#security), ``apptainer``/``singularity`` in ``apptainer exec`` for HPC sites. A runtime is made
once per pilot from its name and the pilot's :class:`RuntimeOptions`; container runtimes import
their engine's library only then, so ``local`` pilots never need it.

``local``: **NO ISOLATION.** The payload runs directly on this machine, as the pilot's
user, with the pilot's environment (minus its token), able to read and write whatever that
user can, and with network access. Use it only for payloads you trust, and for development.
It runs ``/bin/sh -c <evaluation_exec>`` in the working directory with ``PATH`` extended by
that directory, as PanDA's ``__run_main_exec.sh`` does inside its container, in a process
group of its own (so stopping it stops everything it started), with stdout and stderr going
to a log file in the working directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hposteer.client.pilot.container_args import ContainerLimits

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


def shell_argv(command: str) -> list[str]:
    """The argv that runs ``command`` so that the kernel stops it when the pilot dies (SIGKILL, OOM...).

    An orphan would go on computing, holding the slot's GPU, for a result nobody can report.
    util-linux's setpriv gives the shell a parent-death signal (HUP); the shell runs the command in
    a subshell and, on HUP, kills its whole process group (the payload and everything it started).
    The shell outlives SIGTERM (the subshell does not inherit the trap), so a payload keeps its
    grace period, and it ends as the command did: its exit status, or the signal that killed it
    (re-raised on itself, so the pilot sees the signal as before). Where setpriv is missing, a plain
    ``sh -c`` (the payload then outlives a killed pilot).
    """
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    if setpriv is None:
        return ["/bin/sh", "-c", command]
    return [setpriv, "--pdeathsig", "HUP", "/bin/sh", "-c", _GUARD.replace("{command}", command, 1)]


# {command} sits on lines of its own, so that a trailing comment or a heredoc in it stays its own.
_GUARD = """trap 'kill -KILL 0' HUP
trap ':' TERM INT
(
{command}
) &
payload=$!
while :; do
  wait "$payload"; status=$?
  kill -0 "$payload" 2>/dev/null || break
done
if [ "$status" -gt 128 ] && [ "$status" -lt 160 ]; then
  trap - TERM INT HUP
  kill -s "$(kill -l "$status")" $$
fi
exit "$status"
"""


class LocalPayload:
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


class LocalRuntime:
    """``/bin/sh -c`` on this machine. NO ISOLATION: trusted payloads and development only."""

    name = "local"
    isolated = False

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
        """The image is ignored (as before: a task naming one runs here without it), GPUs are in the
        environment already, and the network is whatever this machine has."""
        env = {**env, "PATH": env.get("PATH", os.defpath) + os.pathsep + str(workdir), "PWD": str(workdir)}
        try:
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    shell_argv(command),
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, so it can be stopped as a whole
                    close_fds=True,
                )
        except OSError as exc:
            raise RuntimeStartError(f"cannot start /bin/sh in {workdir}: {exc}") from exc
        return LocalPayload(process)


def _local(options: RuntimeOptions) -> Runtime:
    return LocalRuntime()


def _docker(options: RuntimeOptions) -> Runtime:
    from hposteer.client.pilot.docker_runtime import DockerRuntime  # the Docker SDK only for docker pilots

    return DockerRuntime(options)


def _podman(options: RuntimeOptions) -> Runtime:
    from hposteer.client.pilot.podman_runtime import PodmanRuntime

    return PodmanRuntime(options)


def _apptainer(engine: str) -> Callable[[RuntimeOptions], Runtime]:
    def make(options: RuntimeOptions) -> Runtime:
        from hposteer.client.pilot.apptainer_runtime import ApptainerRuntime

        return ApptainerRuntime(options, engine)

    return make


RUNTIMES: dict[str, Callable[[RuntimeOptions], Runtime]] = {
    "local": _local,
    "docker": _docker,
    "podman": _podman,  # podman_runtime.py: the docker runtime's container, through the podman CLI
    "apptainer": _apptainer(
        "apptainer"
    ),  # src/hposteer/client/pilot/apptainer_runtime.py: not yet run on a live engine
    "singularity": _apptainer("singularity"),
}


def make_runtime(name: str, options: RuntimeOptions | None = None) -> Runtime:
    """The runtime called ``name``; RuntimeStartError if there is none or it cannot work here."""
    factory = RUNTIMES.get(name)
    if factory is None:
        raise RuntimeStartError(f"unknown runtime {name!r}; known runtimes: {', '.join(sorted(RUNTIMES))}")
    return factory(options or RuntimeOptions())


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
