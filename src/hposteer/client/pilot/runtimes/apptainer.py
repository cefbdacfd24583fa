"""The ``apptainer`` (and ``singularity``) runtime: each attempt in ``apptainer exec``, for HPC sites.

**Not run on a live engine yet**: apptainer cannot be installed where this was written; the
command line is golden-tested only (docs/pilot.md says so). :func:`apptainer_argv` builds it:
``--containall`` (own PID, IPC and mount namespaces, minimal /dev, empty /tmp and home, clean
environment), ``--no-eval`` (no shell evaluation of the environment), ``--no-privs``, no network
but loopback (``--net --network=none``; the host's when allowed), the image read-only (no
``--writable``), the working directory as the only bind mount at ``/srv/workDir``, and the cwd,
memory/pids/CPU limits as cgroups, ``--nv`` for GPU slots. Apptainer runs the payload as the user
who starts it, so a root pilot is refused. The payload's environment goes in as
``APPTAINERENV_*`` variables of the engine's process (no comma splitting, no evaluation), whose
own ``APPTAINER_*`` settings (binds, capabilities...) from the pilot's environment are dropped.

The shell inside is :data:`GUARD`, which stops the payload with ``kill 0`` (its process group)
and never ``kill -1``: a site may disable PID namespaces, and ``kill -1`` outside one means every
process of the user on the host. The pilot stops an attempt like the local runtime does (SIGTERM
to the engine's process group, SIGKILL after the grace period) and holds its stdin, so that if the
pilot dies the watchdog in the guard kills the payload.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from hposteer.client.pilot.runtimes.base import (
    DAEMON_SOURCE,
    KILL_GRACE_S,
    LocalPayload,
    Payload,
    RuntimeOptions,
    RuntimeStartError,
    image_reference,
)
from hposteer.client.pilot.runtimes.container_args import WORKDIR, ContainerLimits, container_env, exit_code
from hposteer.client.pilot.runtimes.engine_cli import check_bind_source, check_image, run_engine

KEEP = frozenset({"CACHEDIR", "TMPDIR", "CONFIGDIR"})  # of APPTAINER_*: where the engine keeps its files
GUARD = """exec 3<&0
(
{command}
) </dev/null 3<&- &
payload=$!
trap 'trap : TERM INT; kill -TERM 0 2>/dev/null' TERM INT
{ while read -r _; do :; done; kill -KILL 0 2>/dev/null; } <&3 &
exec 3<&-
while :; do
  wait "$payload"; status=$?
  kill -0 "$payload" 2>/dev/null || break
done
exit "$status"
"""


def image_source(reference: str) -> str:
    """What apptainer runs: a SIF file or sandbox directory (absolute path) as given, or an image of the
    local Docker engine (``docker-daemon:NAME``; ``docker://NAME`` arrives as that, runtime.local_image)."""
    if reference.startswith("/"):
        if not os.path.exists(check_image("apptainer", reference)):
            raise RuntimeStartError(f"runtime apptainer: image {reference!r} does not exist on this machine")
        return reference
    name = check_image("apptainer", reference.removeprefix(DAEMON_SOURCE))
    docker = shutil.which("docker")
    if docker is not None and run_engine("apptainer", [docker, "image", "inspect", "--", name]).returncode != 0:
        raise RuntimeStartError(
            f"runtime apptainer: image {name!r} is not in this machine's Docker engine (where apptainer reads "
            "image names from), and the pilot never pulls images. Load it there first (`docker load -i image.tar`), "
            f"or give the absolute path of a .sif file made with `apptainer build eval.sif docker-daemon:{name}` "
            "where the image exists"
        )
    return f"{DAEMON_SOURCE}{name}"


def apptainer_argv(
    *,
    source: str,
    command: str,
    workdir: Path,
    gpus: Sequence[str] = (),
    network: bool = False,
    limits: ContainerLimits | None = None,
    apptainer: str = "apptainer",
) -> list[str]:
    """``apptainer exec`` for one attempt (pure: the golden test reads it). The environment is not in it:
    see :func:`engine_environment`."""
    limits = limits or ContainerLimits()
    argv = [
        apptainer,
        "exec",
        "--containall",  # -c (minimal /dev, empty /tmp and home), --pid, --ipc, --cleanenv
        "--pid",
        "--ipc",
        "--cleanenv",
        "--no-eval",
        "--no-privs",
        "--no-umask",
        *(
            () if network else ("--net", "--network=none")
        ),  # allowed: the host's network (unprivileged users get no other)
        f"--bind={check_bind_source('apptainer', workdir)}:{WORKDIR}:rw",
        f"--pwd={WORKDIR}",
        f"--memory={limits.memory_bytes}",
        f"--memory-swap={limits.memory_bytes}",
        f"--pids-limit={limits.pids}",
    ]
    if limits.cpus is not None:
        argv.append(f"--cpus={limits.cpus:g}")
    if gpus:
        argv.append("--nv")  # the driver's libraries and every GPU's device: CUDA_VISIBLE_DEVICES picks the slot's
    return [*argv, source, "/bin/sh", "-c", GUARD.replace("{command}", command, 1)]


def engine_environment(
    host: Mapping[str, str], payload: Mapping[str, str], gpus: Sequence[str], prefix: str
) -> dict[str, str]:
    """The environment of the engine's process: the host's, minus the engine's own settings (a bind or a
    capability set in the pilot's environment would widen the sandbox) and the pilot's token, plus the
    payload's as ``<prefix>ENV_NAME`` (apptainer's way in; ``PATH`` is appended to the image's)."""
    out = {
        k: v
        for k, v in host.items()
        if k != "HPOSTEER_TOKEN"
        and not k.startswith(("APPTAINERENV_", "SINGULARITYENV_"))
        and not (k.startswith(("APPTAINER_", "SINGULARITY_")) and k.split("_", 1)[1] not in KEEP)
    }
    inside = container_env(payload, gpus)
    inside.pop("HOME")  # apptainer refuses it: --containall gives the payload an empty home of its own
    inside.pop("PATH")
    inside["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)  # --nv shows every GPU: the host's ids select the slot's
    out.update({f"{prefix}{k}": v for k, v in inside.items()})
    out[f"{prefix}APPEND_PATH"] = WORKDIR
    return out


class ApptainerPayload(LocalPayload):
    """The engine's process group, stopped as the local runtime's is; exit codes as the container runtimes'."""

    def poll(self) -> int | None:
        code = super().poll()
        return None if code is None else self._done(code)

    def wait(self, timeout_s: float) -> int | None:
        code = super().wait(timeout_s)
        return None if code is None else self._done(code)

    def _done(self, code: int) -> int:
        with contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()
        return exit_code(code)

    def terminate(self, grace_s: float = KILL_GRACE_S) -> int:
        return exit_code(super().terminate(grace_s))


class ApptainerRuntime:
    """``apptainer exec`` (or ``singularity exec``) per attempt. NOT YET RUN ON A LIVE ENGINE."""

    isolated = True

    def __init__(self, options: RuntimeOptions, engine: str = "apptainer"):
        self.options = options
        self.name = engine
        self.binary = shutil.which(engine)
        if self.binary is None:
            raise RuntimeStartError(
                f"runtime {engine}: no {engine!r} command here; install Apptainer (>= 1.1) or SingularityCE (>= 3.10), "
                "or choose another --runtime"
            )
        if os.getuid() == 0:
            raise RuntimeStartError(
                f"runtime {engine}: the pilot runs as root, and {engine} runs payloads as the user who starts it; "
                "run the pilot as an unprivileged user"
            )
        self.prefix = "SINGULARITYENV_" if engine == "singularity" else "APPTAINERENV_"

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
        reference = image_reference(self.name, image, self.options)
        argv = apptainer_argv(
            source=image_source(reference),
            command=command,
            workdir=workdir.resolve(),
            gpus=gpus,
            network=network,
            limits=self.options.limits,
            apptainer=self.binary or self.name,
        )
        try:
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    argv,
                    env=engine_environment(os.environ, env, gpus, self.prefix),
                    stdin=subprocess.PIPE,  # held open: the guard's watchdog kills the payload when the pilot dies
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            raise RuntimeStartError(f"runtime {self.name}: cannot start {self.binary}: {exc}") from exc
        return ApptainerPayload(process)
