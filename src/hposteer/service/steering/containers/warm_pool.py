"""Warm steering containers: one long-lived container per segment, one ``docker exec`` per run.

For images that carry the ``io.hposteer.steering-server`` label (a JSON argv; our
steering_images/ do). The container runs that server
(src/hposteer/service/steering/image_programs/prefork_server.py), which imports the optimiser
libraries once; each steering run execs the task's own command in it, with the same hardening,
mount, user and limits as a one-shot run. What stays the same as
iDDS's one container per run: every run starts in an empty working directory holding only
``%IN``, and its ``hpogrid`` process starts from the server's untouched memory.

A container is removed when its segment ends (``retain``), after ``idle_s`` unused, when more
than ``limits.warm`` are up (least recently used first), after any failed run (the retry gets a
fresh container), and when the service stops. One left by a service that was killed is removed
by the next service on this host (its owner process is gone), with its working directory.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hposteer.service.core.steering import SteeringError
from hposteer.service.core.steering_exec import SteeringCommand
from hposteer.service.steering.containers import engine

SERVER_LABEL = "io.hposteer.steering-server"
ROLE = "steering-warm"
SOCKET = "/tmp/hposteer-steering.sock"
SOCKET_ENV = "HPOSTEER_STEERING_SOCKET"
TAIL_KEEP = 64 * 1024
ORPHAN_DIR_AGE_S = 60.0  # a warm directory no container names, this old, was left by a crash


@dataclass
class WarmContainer:
    key: int
    container_id: str
    identity: tuple[str, str]  # image id, mount path: a change needs a new container
    user: str
    workdir: Path
    last_used: float
    busy: bool = False


def server_command(image: Any) -> list[str] | None:
    """The image's steering-server argv, or None when it does not offer one."""
    raw = (image.labels or {}).get(SERVER_LABEL)
    if not raw:
        return None
    try:
        argv = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return argv if isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv) else None


def owner_token() -> str:
    """This process, as other processes on this host can check it is still alive."""
    return f"{socket.gethostname()}:{os.getpid()}:{start_ticks(os.getpid())}"


def start_ticks(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22, counted after the command name


def owner_alive(token: str) -> bool:
    """False only when the owner was on this host and its process is gone (pids are not reused
    unnoticed: the start time must match too); a container of another host is left alone."""
    host, _, rest = token.partition(":")
    pid, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    return start_ticks(int(pid)) == ticks and ticks != ""


class WarmPool:
    """The warm containers of one service process, by segment (thread-safe)."""

    def __init__(self, work_root: Path, limits: engine.ContainerLimits):
        self.work_root = work_root
        self.limits = limits
        self.owner = owner_token()
        self._lock = threading.Lock()
        self._boxes: dict[int, WarmContainer] = {}
        self._swept = False

    def run(
        self,
        client: Any,
        key: int,
        command: SteeringCommand,
        image: Any,
        server: list[str],
        argv: list[str],
        env: dict[str, str],
        input_text: str,
        input_name: str,
    ) -> tuple[Path, str]:
        """Run ``argv`` in the segment's warm container; (its working directory, output tail).

        The caller reads %OUT from the directory, then calls ``finish`` (kept) or ``discard``."""
        self.sweep(client)
        box = self._checkout(client, key, command, image, server)
        if not _empty(box.workdir):  # the last run left something it cannot remove
            self.discard(client, key)
            box = self._checkout(client, key, command, image, server)
        try:
            (box.workdir / input_name).write_text(input_text)
            tail = self._exec(client, box, command, argv, env)
        except BaseException:
            self.discard(client, key)
            raise
        return box.workdir, tail

    def sweep(self, client: Any) -> None:
        """Once per pool: remove what killed services left (sweep_orphans)."""
        with self._lock:
            if self._swept:
                return
            self._swept = True
        sweep_orphans(client, self.work_root, self.owner)

    def finish(self, key: int) -> None:
        """The run is over and its output read: empty the directory for the next run."""
        with self._lock:
            box = self._boxes.get(key)
        if box is None:
            return
        _empty(box.workdir)
        box.last_used = time.monotonic()
        box.busy = False

    def discard(self, client: Any, key: int) -> None:
        with self._lock:
            box = self._boxes.pop(key, None)
        if box is not None:
            _remove_box(client, box)

    def retain(self, client_factory: Any, keys: set[int]) -> None:
        """Remove the containers of ended segments and those idle past ``idle_s``."""
        now = time.monotonic()
        with self._lock:
            gone = [
                box
                for key, box in self._boxes.items()
                if not box.busy and (key not in keys or now - box.last_used > self.limits.idle_s)
            ]
            for box in gone:
                del self._boxes[box.key]
        if gone:
            _remove_all(client_factory, gone)

    def close(self, client_factory: Any) -> None:
        with self._lock:
            boxes = list(self._boxes.values())
            self._boxes.clear()
        if boxes:
            _remove_all(client_factory, boxes)

    def keys(self) -> set[int]:
        with self._lock:
            return set(self._boxes)

    def _checkout(
        self, client: Any, key: int, command: SteeringCommand, image: Any, server: list[str]
    ) -> WarmContainer:
        identity = (str(image.id), command.workdir)
        with self._lock:
            box = self._boxes.get(key)
        if box is not None and (box.identity != identity or not _running(client, box.container_id)):
            self.discard(client, key)
            box = None
        if box is None:
            self._make_room(client)
            box = self._start(client, key, command, image, server, identity)
            with self._lock:
                self._boxes[key] = box
        box.busy = True
        return box

    def _make_room(self, client: Any) -> None:
        with self._lock:
            idle = sorted((b for b in self._boxes.values() if not b.busy), key=lambda b: b.last_used)
            excess = len(self._boxes) + 1 - self.limits.warm
            gone = idle[: max(excess, 0)]
            for box in gone:
                del self._boxes[box.key]
        for box in gone:
            _remove_box(client, box)

    def _start(
        self,
        client: Any,
        key: int,
        command: SteeringCommand,
        image: Any,
        server: list[str],
        identity: tuple[str, str],
    ) -> WarmContainer:
        from docker.errors import DockerException

        self.work_root.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"warm-segment-{key}-", dir=self.work_root))
        user = engine.prepare_owner(workdir)
        labels = {
            "hposteer.role": ROLE,
            "hposteer.owner": self.owner,
            "hposteer.segment": str(key),
            "hposteer.workdir": str(workdir),
        }
        env = {"HOME": "/tmp", SOCKET_ENV: SOCKET}
        settings = engine.hardening(self.limits, command, env, workdir, user, labels)
        try:
            container = client.containers.create(image.id, [*server, "--socket", SOCKET], **settings)
            container.start()
        except DockerException as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise SteeringError(f"the Docker engine failed to start the warm steering container: {exc}") from None
        return WarmContainer(key, container.id, identity, user, workdir, time.monotonic())

    def _exec(
        self, client: Any, box: WarmContainer, command: SteeringCommand, argv: list[str], env: dict[str, str]
    ) -> str:
        from docker.errors import DockerException

        try:
            exec_id = client.api.exec_create(
                box.container_id, argv, environment=env, workdir=command.workdir, user=box.user
            )["Id"]
        except DockerException as exc:
            raise SteeringError(f"the Docker engine failed to run the steering command: {exc}") from None
        outcome: dict[str, Any] = {}

        def pump() -> None:
            kept = bytearray()
            try:
                for chunk in client.api.exec_start(exec_id, stream=True):
                    kept += chunk
                    if len(kept) > 2 * TAIL_KEEP:
                        del kept[:-TAIL_KEEP]
            except Exception as exc:  # the engine went away, or the container was removed
                outcome["error"] = exc
            outcome["output"] = bytes(kept)

        reader = threading.Thread(target=pump, name=f"steer-exec-{box.key}", daemon=True)
        reader.start()
        reader.join(self.limits.timeout_s)
        if reader.is_alive():
            engine.remove(client, box.container_id)
            reader.join(10)
            raise SteeringError(
                f"the steering container ran longer than {self.limits.timeout_s:g} s and was killed"
                + engine.format_tail(outcome.get("output", b""))
            )
        tail = engine.format_tail(outcome.get("output", b""))
        if "error" in outcome:
            raise SteeringError(f"the Docker engine lost the steering run: {outcome['error']}{tail}")
        try:
            code = client.api.exec_inspect(exec_id).get("ExitCode")
        except DockerException as exc:
            raise SteeringError(f"the Docker engine lost the steering run: {exc}{tail}") from None
        if code != 0:
            oom = engine.oom_note(client.containers.get(box.container_id)) if code == 137 else ""
            raise SteeringError(f"the steering container exited with code {code}{oom}{tail}")
        return tail


def sweep_orphans(client: Any, work_root: Path, owner: str) -> None:
    """Remove warm containers whose service process on this host is gone, and their directories."""
    from docker.errors import DockerException

    named: set[str] = set()
    try:
        containers = client.containers.list(all=True, filters={"label": f"hposteer.role={ROLE}"})
    except DockerException:
        return
    for container in containers:
        labels = container.labels or {}
        token, workdir = labels.get("hposteer.owner", ""), labels.get("hposteer.workdir", "")
        if token == owner or owner_alive(token):
            named.add(workdir)
            continue
        engine.remove(client, container.id)
        _remove_dir(work_root, Path(workdir))
    if not work_root.is_dir():
        return
    now = time.time()
    for path in work_root.glob("warm-*"):
        try:
            old = path.stat().st_mtime < now - ORPHAN_DIR_AGE_S
        except OSError:
            continue
        if str(path) not in named and old:
            _remove_dir(work_root, path)


def _remove_dir(work_root: Path, path: Path) -> None:
    """Only ever a warm directory directly under the service's own steering directory."""
    if path.parent == work_root and path.name.startswith("warm-") and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)


def _running(client: Any, container_id: str) -> bool:
    from docker.errors import DockerException

    try:
        return bool(client.api.inspect_container(container_id)["State"]["Running"])
    except DockerException:
        return False


def _remove_box(client: Any, box: WarmContainer) -> None:
    engine.remove(client, box.container_id)
    shutil.rmtree(box.workdir, ignore_errors=True)


def _remove_all(client_factory: Any, boxes: list[WarmContainer]) -> None:
    try:
        client = client_factory()
    except SteeringError:  # no engine: the next service's sweep removes them
        return
    try:
        for box in boxes:
            _remove_box(client, box)
    finally:
        client.close()


def _empty(workdir: Path) -> bool:
    """Remove everything a run left in its directory (never following links out of it); False if
    something could not be removed."""
    try:
        for entry in workdir.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        return not any(workdir.iterdir())
    except OSError:
        return False
