"""A SIGKILLed pilot takes its running payloads with it (no orphan keeps computing on the slot)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from hposteer.client.http import ApiClient
from tests.conftest import LiveService
from tests.support.pilots import hposteer_pilot, new_site, submit, upload, wait_until
from tests.support.runtime import start

LONG = """
import os, time
open(os.environ["PID_FILE"], "w").write(str(os.getpid()))
time.sleep(120)
"""


def _describe(pid: int) -> str:
    """The process and its ancestors (pid, state, command), to see which link of the chain held on."""
    chain = []
    while pid > 1 and len(chain) < 6:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
        except OSError:
            break
        chain.append(f"{pid} {fields[0]} pgid {fields[2]} {command}")
        pid = int(fields[1])
    return " <- ".join(chain)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_sigkilled_pilot_takes_its_payload_down(
    live_service: LiveService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "payload.pid"
    monkeypatch.setenv("PID_FILE", str(pid_file))
    site = new_site()
    with ApiClient(live_service.url, live_service.user_token) as api:
        submit(api, site, upload(api, {"eval.py": LONG}), max_points=1)
    pilot = hposteer_pilot(live_service, site, tmp_path / "work", "--slots", "1")
    try:
        wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", timeout_s=30)
        payload = int(pid_file.read_text())
        assert _alive(payload)
        pilot.send_signal(signal.SIGKILL)  # the pilot only: the payload runs in a session of its own
        pilot.wait(10)
        deadline = time.monotonic() + 10
        while _alive(payload) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(payload), f"the payload outlived its pilot: {_describe(payload)}"
    finally:
        if pilot.poll() is None:
            pilot.kill()
        if pid_file.exists() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


@pytest.mark.parametrize(
    ("command", "code", "output"),
    [
        ("echo ${HOME:+set} '{a}' # a trailing comment", 0, "set {a}\n"),
        ("exit 3", 3, ""),
        ("cat <<EOF\nheredoc\nEOF", 0, "heredoc\n"),
        ("kill -USR1 $$", -signal.SIGUSR1, ""),
    ],
)
def test_the_guarded_shell_keeps_the_commands_output_and_status(
    tmp_path: Path, command: str, code: int, output: str
) -> None:
    payload = start(command, tmp_path)
    assert payload.wait(10) == code
    assert (tmp_path / "payload.log").read_text() == output
