"""The ``podman`` runtime: each attempt in a hardened container of a local image, through the podman CLI.

The container is the docker runtime's: :func:`podman_argv` translates
:func:`hposteer.client.pilot.runtimes.container_args.create_args` flag by flag, and refuses a setting it does not
know, so a hardening decision cannot be dropped on the way. The image must already be in podman's
storage (``--pull=never``); a name is looked up as given, then as ``localhost/NAME`` (what
``docker save NAME | podman load`` makes), and the attempt is pinned to the image's id.
``podman create`` then ``podman start --attach --interactive``: the attached CLI process writes the
container's output to the attempt's log and ends with the container's status; the pilot holds its
stdin, so if the pilot dies the container's watchdog (container_args.GUARD) kills the payload.
The one addition is a seccomp profile that refuses new namespaces (src/hposteer/client/pilot/runtimes/seccomp.py), as
Docker's default profile does and podman's does not. Containers carry the docker runtime's labels,
are removed when they end (``--rm``, and ``podman rm`` after), and leftovers of a dead earlier
pilot of the same name on this host are removed at start.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hposteer.client.pilot.runtimes.base import (
    KILL_GRACE_S,
    Payload,
    RuntimeOptions,
    RuntimeStartError,
    image_reference,
)
from hposteer.client.pilot.runtimes.container_args import NOBODY, container_user, create_args, exit_code, give_to
from hposteer.client.pilot.runtimes.engine_cli import alive, check_bind_source, check_image, last_line, run_engine
from hposteer.client.pilot.runtimes.seccomp import SeccompProfileError, profile_path

ENGINE_ERROR = 125  # podman's own failures
LABEL = "hposteer.pilot"
HOW_TO_LOAD = "docker save {ref} | podman load"


def podman_argv(
    args: Mapping[str, Any],
    *,
    name: str,
    rootless: bool = False,
    podman: str = "podman",
    seccomp_profile: Path | None = None,
) -> list[str]:
    """``podman create`` for the container ``create_args`` describes (pure: the golden test reads it).

    ``seccomp_profile``: hposteer.client.pilot.runtimes.seccomp's profile, which refuses new namespaces."""
    known = dict(args)
    argv = [podman, "create", "--rm", "--pull=never", f"--name={name}", "--log-driver=none", "--read-only-tmpfs=false"]
    if rootless:
        argv.append("--userns=keep-id")  # the pilot's uid is the same inside: the working directory stays its own
    if known.pop("privileged") is not False:
        raise ValueError("privileged containers are never made")
    argv.append(f"--entrypoint={json.dumps(known.pop('entrypoint'))}")
    argv.append(f"--workdir={known.pop('working_dir')}")
    argv.append(f"--user={known.pop('user')}")
    argv += [f"--env={k}={v}" for k, v in known.pop("environment").items()]
    argv += [f"--label={k}={v}" for k, v in known.pop("labels").items()]
    for mount in known.pop("mounts"):
        if mount["Type"] != "bind":
            raise ValueError(f"unknown mount type {mount['Type']!r}")
        source = check_bind_source("podman", Path(mount["Source"]))
        argv.append(
            f"--mount=type=bind,source={source},destination={mount['Target']}{',ro' if mount['ReadOnly'] else ''}"
        )
    if known.pop("read_only"):
        argv.append("--read-only")
    argv += [f"--tmpfs={path}:{options}" for path, options in known.pop("tmpfs").items()]
    argv += [f"--security-opt={option}" for option in known.pop("security_opt")]
    if seccomp_profile is not None:
        argv.append(f"--security-opt=seccomp={seccomp_profile}")
    argv += [f"--cap-drop={cap}" for cap in known.pop("cap_drop")]
    argv.append(f"--network={known.pop('network_mode')}")
    argv.append(f"--pids-limit={known.pop('pids_limit')}")
    argv.append(f"--memory={known.pop('mem_limit')}")
    argv.append(f"--memory-swap={known.pop('memswap_limit')}")
    argv += [f"--ulimit={u['name']}={u['soft']}:{u['hard']}" for u in known.pop("ulimits")]
    argv.append(f"--interactive={str(known.pop('stdin_open')).lower()}")
    argv.append(f"--tty={str(known.pop('tty')).lower()}")
    argv.append(f"--http-proxy={str(known.pop('use_config_proxy')).lower()}")
    if "nano_cpus" in known:
        argv.append(f"--cpus={known.pop('nano_cpus') / 1e9:g}")
    for request in known.pop("device_requests", []):
        argv += [f"--device=nvidia.com/gpu={gpu}" for gpu in request["device_ids"]]  # CDI names
    image, command = known.pop("image"), known.pop("command")
    if known:
        raise ValueError(f"container settings podman does not know: {sorted(known)}")
    return [*argv, image, *command]  # the image id (never a name) ends the options; the guard is sh's argument


class PodmanPayload:
    def __init__(self, process: subprocess.Popen[bytes], name: str, podman: str):
        self._process = process  # `podman start --attach --interactive`, its stdin held (the watchdog)
        self.name = name
        self._podman = podman
        self._code: int | None = None

    def poll(self) -> int | None:
        return self._finish(self._process.poll())

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self._finish(self._process.wait(timeout=timeout_s))
        except subprocess.TimeoutExpired:
            return None

    def _finish(self, status: int | None) -> int | None:
        if status is None or self._code is not None:
            return self._code if status is not None else None
        with contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()
        with contextlib.suppress(RuntimeStartError):  # --rm removes it; this covers a podman that did not
            run_engine("podman", [self._podman, "rm", "--force", "--ignore", "--time=0", self.name])
        self._code = exit_code(status) if status >= 0 else ENGINE_ERROR  # < 0: the CLI itself was killed
        return self._code

    def terminate(self, grace_s: float = KILL_GRACE_S) -> int:
        """``podman stop``: SIGTERM to the container's shell (passed on to the payload), SIGKILL after ``grace_s``."""
        grace = max(0, math.ceil(grace_s))
        with contextlib.suppress(RuntimeStartError):
            run_engine("podman", [self._podman, "stop", f"--time={grace}", self.name], timeout_s=grace + 30)
        code = self.wait(30.0)
        if code is None:
            with contextlib.suppress(RuntimeStartError):
                run_engine("podman", [self._podman, "rm", "--force", "--time=0", self.name])
            self._process.kill()
            code = self.wait(30.0)
        return ENGINE_ERROR if code is None else code


class PodmanRuntime:
    """Hardened containers through the podman CLI (docs/architecture.md#security; the docker runtime's settings)."""

    name = "podman"
    isolated = True

    def __init__(self, options: RuntimeOptions, podman: str = "podman"):
        self.options = options
        self.podman = podman
        if shutil.which(podman) is None:
            raise RuntimeStartError(
                f"runtime podman: no {podman!r} command here; install podman (apt-get install podman)"
            )
        version = run_engine("podman", [podman, "version", "--format", "{{.Client.Version}}"])
        if version.returncode != 0:
            raise RuntimeStartError(f"runtime podman: `podman version` failed: {last_line(version.stderr)}")
        self.rootless = os.getuid() != 0
        try:
            self.seccomp_profile = profile_path()
        except SeccompProfileError as exc:
            raise RuntimeStartError(f"runtime podman: {exc}") from None
        self.labels = {
            LABEL: options.pilot_name,
            f"{LABEL}.host": socket.gethostname(),
            f"{LABEL}.pid": str(os.getpid()),
        }
        removed = self.remove_leftovers()
        if removed:
            options.log(
                f"removed {removed} leftover container(s) of an earlier run of pilot {options.pilot_name!r} here"
            )

    def remove_leftovers(self) -> int:
        """Remove the containers of earlier processes of this pilot (same name, this host, no longer running)."""
        listed = run_engine(
            "podman", [self.podman, "ps", "--all", "--format=json", f"--filter=label={LABEL}={self.options.pilot_name}"]
        )
        if listed.returncode != 0:
            return 0
        removed = 0
        for container in json.loads(listed.stdout or "[]"):
            labels = container.get("Labels") or {}
            if labels.get(f"{LABEL}.host") != self.labels[f"{LABEL}.host"] or alive(labels.get(f"{LABEL}.pid", "")):
                continue
            if run_engine("podman", [self.podman, "rm", "--force", "--time=0", str(container["Id"])]).returncode == 0:
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
        reference = image_reference("podman", image, self.options)
        image_id, image_path = self._image(check_image("podman", reference))
        user = container_user(os.getuid(), os.getgid())
        workdir = workdir.resolve()
        if user == NOBODY:
            try:
                give_to(workdir, 65534, 65534)
            except OSError as exc:
                raise RuntimeStartError(f"cannot give {workdir} to the container's user {NOBODY}: {exc}") from exc
        labels = {**self.labels, "hposteer.attempt": "" if attempt_id is None else str(attempt_id)}
        args = create_args(
            image_id=image_id, command=command, workdir=workdir, env=env, user=user, gpus=gpus, network=network,
            labels=labels, limits=self.options.limits, image_path=image_path,
        )  # fmt: skip
        name = f"hposteer-{uuid.uuid4().hex[:16]}"
        argv = podman_argv(
            args, name=name, rootless=self.rootless, podman=self.podman, seccomp_profile=self.seccomp_profile
        )
        created = run_engine("podman", argv)
        if created.returncode != 0:
            raise RuntimeStartError(
                f"runtime podman: cannot create a container of image {reference!r}: {last_line(created.stderr)}"
            )
        try:
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    [self.podman, "start", "--attach", "--interactive", name],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # the terminal's Ctrl-C is the pilot's (a drain), not the payload's
                    close_fds=True,
                )
        except OSError as exc:
            run_engine("podman", [self.podman, "rm", "--force", "--time=0", name])
            raise RuntimeStartError(f"runtime podman: cannot run podman: {exc}") from exc
        return PodmanPayload(process, name, self.podman)

    def _image(self, reference: str) -> tuple[str, str | None]:
        """The image's id (the attempt is pinned to it) and the PATH its configuration sets."""
        candidates = [reference] if reference.startswith("localhost/") else [reference, f"localhost/{reference}"]
        for candidate in candidates:
            exists = run_engine("podman", [self.podman, "image", "exists", "--", candidate])
            if exists.returncode == 1:  # not there (0: there; anything else: podman failed)
                continue
            found = run_engine("podman", [self.podman, "image", "inspect", "--format=json", "--", candidate])
            if exists.returncode != 0 or found.returncode != 0:
                message = last_line(found.stderr or exists.stderr)
                raise RuntimeStartError(f"runtime podman: cannot look up image {candidate!r}: {message}")
            info = json.loads(found.stdout)[0]
            variables = (info.get("Config") or {}).get("Env") or []
            path = next((v.split("=", 1)[1] for v in variables if v.startswith("PATH=")), None)
            return str(info["Id"]), path
        raise RuntimeStartError(
            f"runtime podman: image {reference!r} is not in podman's image storage (looked for "
            f"{' and '.join(repr(c) for c in candidates)}), and the pilot never pulls images. Load it first, e.g. "
            f"`{HOW_TO_LOAD.format(ref=reference)}` on this machine where docker has it, or `podman load -i image.tar` "
            f"(a file made with `docker save {reference} -o image.tar`)"
        )
