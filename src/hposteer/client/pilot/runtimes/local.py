"""The ``local`` runtime: **NO ISOLATION.** The payload runs directly on this machine, as the pilot's
user, with the pilot's environment (minus its token), able to read and write whatever that
user can, and with network access. Use it only for payloads you trust, and for development.
It runs ``/bin/sh -c <evaluation_exec>`` in the working directory with ``PATH`` extended by
that directory, as PanDA's ``__run_main_exec.sh`` does inside its container, in a process
group of its own (so stopping it stops everything it started), with stdout and stderr going
to a log file in the working directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from hposteer.client.pilot.runtimes.base import LocalPayload, Payload, RuntimeStartError


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
