"""Container runtimes behind one small protocol, resolved by name from one table.

``local`` runs the evaluation command with ``/bin/sh -c`` in the working directory, as
PanDA's ``__run_main_exec.sh`` does inside its container. It gives NO isolation: the
payload runs as the pilot's user with the pilot's environment. Use it for trusted payloads
and development; the container runtimes (docker, podman, apptainer) come later.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

LOG_TAIL_BYTES = 64 * 1024


class RuntimeStartError(Exception):
    """The runtime could not start the payload (or does not exist)."""


class Payload(Protocol):
    def poll(self) -> int | None: ...

    def wait(self, timeout_s: float) -> int | None: ...

    def terminate(self, grace_s: float = 10.0) -> int: ...


class Runtime(Protocol):
    name: str

    def start(self, command: str, workdir: Path, env: dict[str, str], log_path: Path) -> Payload: ...


class LocalPayload:
    def __init__(self, process: subprocess.Popen[bytes]):
        self._process = process

    def poll(self) -> int | None:
        return self._process.poll()

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self, grace_s: float = 10.0) -> int:
        """SIGTERM the payload's whole process group, SIGKILL it after ``grace_s``."""
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, sig)
            code = self.wait(wait)
            if code is not None:
                _reap_group(self._process.pid)
                return code
        return self._process.wait()


def _reap_group(pgid: int) -> None:
    """Children that outlived their parent in the group are killed too."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class LocalRuntime:
    name = "local"

    def start(self, command: str, workdir: Path, env: dict[str, str], log_path: Path) -> Payload:
        with log_path.open("ab") as log:
            try:
                process = subprocess.Popen(
                    ["/bin/sh", "-c", command],
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, so it can be stopped as a whole
                )
            except OSError as exc:
                raise RuntimeStartError(f"cannot start /bin/sh: {exc}") from exc
        return LocalPayload(process)


RUNTIMES: dict[str, Callable[[], Runtime]] = {"local": LocalRuntime}


def make_runtime(name: str) -> Runtime:
    factory = RUNTIMES.get(name)
    if factory is None:
        raise RuntimeStartError(f"unknown runtime {name!r}; available: {', '.join(sorted(RUNTIMES))}")
    return factory()


def log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of a log, decoded leniently."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode(errors="replace")
    except OSError:
        return ""
