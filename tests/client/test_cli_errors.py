"""Errors that point at the fix (issue 12 part 4) and tokens in files (part 5), through the real
commands run as subprocesses against a real service on loopback."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LiveService

CLIENT = [sys.executable, "-m", "hposteer.client.cli"]
PHPO = [sys.executable, "-m", "hposteer.client.phpo"]
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("HPOSTEER_")}


def run(
    *args: str, cwd: Path | None = None, command: list[str] = CLIENT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**CLEAN_ENV, "PYTHONPATH": str(Path.cwd()), **(env or {})},
        check=False,
    )


def token_file(tmp_path: Path, secret: str, name: str = "token") -> str:
    path = tmp_path / name
    path.write_text(secret + "\n")
    return str(path)


def into_closed_pipe(
    *args: str, command: list[str] = CLIENT, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe whose reader has gone, as `... | head` leaves it once head has its lines."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [*command, *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=cwd,
            env={**CLEAN_ENV, "PYTHONPATH": str(Path.cwd())},
            check=False,
        )
    finally:
        os.close(write_end)


def test_token_file_option_and_environment(live_service: LiveService, tmp_path: Path) -> None:
    path = token_file(tmp_path, live_service.user_token)
    by_option = run("task", "list", "--server", live_service.url, "--token-file", path)
    assert by_option.returncode == 0, by_option.stderr
    by_env = run("task", "list", env={"HPOSTEER_SERVER": live_service.url, "HPOSTEER_TOKEN_FILE": path})
    assert by_env.returncode == 0, by_env.stderr
    missing = run("task", "list", "--server", live_service.url, "--token-file", str(tmp_path / "nope"))
    assert missing.returncode == 1
    assert f"--token-file {tmp_path / 'nope'}: no such file" in missing.stderr and "Traceback" not in missing.stderr
    empty = run("task", "list", "--server", live_service.url, "--token-file", token_file(tmp_path, "", "empty"))
    assert empty.returncode == 1 and "the file is empty; it must hold the token" in empty.stderr


def test_pilot_reads_its_token_file(live_service: LiveService, tmp_path: Path) -> None:
    path = token_file(tmp_path, live_service.pilot_token)
    pilot = run(
        "pilot", "--server", live_service.url, "--token-file", path, "--site", "NOWHERE-ERRS",
        "--workdir", str(tmp_path / "work"), "--exit-when-idle", "0.5",
    )  # fmt: skip
    assert pilot.returncode == 0, pilot.stderr
    assert "registered" in pilot.stderr or "pilot" in pilot.stderr
    # the local runtime has no network isolation: it must not say the network is "not allowed"
    assert "network not allowed" not in pilot.stderr
    assert "network not isolated (local runtime: payloads use this machine's network)" in pilot.stderr
    bad = run("pilot", "--server", live_service.url, "--token-file", str(tmp_path / "none"))
    assert bad.returncode == 2 and f"--token-file {tmp_path / 'none'}: no such file" in bad.stderr


def test_a_wrong_token_is_only_said_to_be_refused(live_service: LiveService, tmp_path: Path) -> None:
    wrong = run("task", "list", "--server", live_service.url, "--token-file", token_file(tmp_path, "hps_wrong"))
    assert wrong.returncode == 1
    assert "the server refused the token: the token is unknown, expired or revoked" in wrong.stderr
    assert "no token" not in wrong.stderr and "pass --token" not in wrong.stderr


@pytest.mark.parametrize("command", [CLIENT, PHPO], ids=["hposteer", "phpo"])
def test_server_url_without_scheme(command: list[str], tmp_path: Path) -> None:
    path = token_file(tmp_path, "hps_x")
    args = ["task", "list"] if command is CLIENT else ["--outDS", "u.x", "--evaluationExec", "true", "--noSubmit"]
    result = run(*args, "--server", "localhost:8000", "--token-file", path, command=command, cwd=tmp_path)
    assert result.returncode == 1
    assert "--server 'localhost:8000' is not a server URL: add http:// (or https://) in front" in result.stderr
    assert "http://localhost:8000" in result.stderr and "Traceback" not in result.stderr
    from_env = run(*args, "--token-file", path, command=command, cwd=tmp_path, env={"HPOSTEER_SERVER": "host:1"})
    assert "HPOSTEER_SERVER 'host:1' is not a server URL" in from_env.stderr


def test_pilot_server_url_without_scheme(tmp_path: Path) -> None:
    result = run("pilot", "--server", "localhost:8000", "--token-file", token_file(tmp_path, "hps_x"))
    assert result.returncode == 2
    assert "add http:// (or https://) in front, e.g. http://localhost:8000" in result.stderr


def test_output_into_a_closed_pipe_ends_without_a_traceback(live_service: LiveService, tmp_path: Path) -> None:
    path = token_file(tmp_path, live_service.user_token)
    for args, command in (
        (["task", "list", "--server", live_service.url, "--token-file", path], CLIENT),
        (["--help"], CLIENT),
        (["pilot", "--help"], CLIENT),
        (["--help"], PHPO),
        (["token", "list", "--data-dir", str(live_service.settings.data_dir)], CLIENT),
    ):
        result = into_closed_pipe(*args, command=command)
        assert "BrokenPipeError" not in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
        # 141 as `seq 100000 | head` (128 + SIGPIPE); argparse's --help swallows the error itself and exits 0
        assert result.returncode == (0 if "--help" in args else 141), (args, result.returncode, result.stderr)


def test_token_create_refuses_a_fresh_default_database(tmp_path: Path) -> None:
    result = run("token", "create", "--role", "user", "--owner", "me", cwd=tmp_path)
    assert result.returncode == 2
    assert "no database at" in result.stderr and "Pass --data-dir DIR" in result.stderr
    assert "hps_" not in result.stdout and not (tmp_path / ".hposteer").exists(), "nothing created"
    made = run("token", "create", "--data-dir", "data", "--role", "user", "--owner", "me", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    again = run("token", "create", "--role", "user", "--owner", "me", cwd=tmp_path / "data")
    assert again.returncode == 2, "another directory's default is still a fresh database"
    (tmp_path / ".hposteer").mkdir()
    (tmp_path / "data" / "hposteer.db").rename(tmp_path / ".hposteer" / "hposteer.db")
    existing = run("token", "list", cwd=tmp_path)
    assert existing.returncode == 0, "the default database exists: that is the server's"


def test_token_create_output_writes_a_private_file(tmp_path: Path, live_service: LiveService) -> None:
    data = ["--data-dir", str(live_service.settings.data_dir)]
    out = tmp_path / "alice.token"
    made = run("token", "create", *data, "--role", "user", "--owner", "alice", "--output", str(out))
    assert made.returncode == 0, made.stderr
    secret = out.read_text().strip()
    assert secret.startswith("hps_") and secret not in made.stdout + made.stderr, "the token is not printed"
    assert str(out) in made.stdout and "--token-file" in made.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    listed = run("task", "list", "--server", live_service.url, "--token-file", str(out))
    assert listed.returncode == 0, listed.stderr
    refused = run("token", "create", *data, "--role", "user", "--owner", "alice", "--output", str(out))
    assert refused.returncode == 2 and "the file exists; pass --force to replace it" in refused.stderr
    assert out.read_text().strip() == secret, "not overwritten"
    out.chmod(0o644)
    forced = run("token", "create", *data, "--role", "user", "--owner", "alice", "--output", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert out.read_text().strip() != secret and stat.S_IMODE(out.stat().st_mode) == 0o600
