"""`hposteer` user and server commands, run for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hposteer.client.cli import main
from hposteer.client.http import ApiClient
from tests.conftest import LiveService

SPACE = {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hposteer.client.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture
def task_id(live_service: LiveService) -> int:
    with ApiClient(live_service.url, live_service.user_token) as api:
        body = {"name": "cli.task", "evaluation_exec": "true", "search_space": SPACE, "site": "NOWHERE"}
        return int(api.submit_task(body)["id"])


def test_task_list_show_and_kill_with_and_without_json(
    live_service: LiveService, task_id: int, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = ["--server", live_service.url, "--token", live_service.user_token]
    assert main(["task", "list", *conn]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["ID", "STATE", "DONE/MAX", "FAILED", "BEST", "LOSS", "OPTIMIZER", "NAME"]
    assert any(line.split()[0] == str(task_id) for line in table.splitlines()[1:])
    assert main(["task", "show", str(task_id), "--json", *conn]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == task_id and shown["optimizer"] == "tpe:TPE"
    assert main(["task", "show", str(task_id), "--points", *conn]) == 0
    assert f"task {task_id}  cli.task/" in capsys.readouterr().out
    assert main(["task", "kill", str(task_id), "--json", *conn]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "killed"
    assert main(["task", "wait", str(task_id), *conn]) == 6, "a killed task is not a success (exit 6)"
    assert "killed" in capsys.readouterr().out
    assert main(["task", "list", "--state", "killed", "--json", *conn]) == 0
    assert task_id in [t["id"] for t in json.loads(capsys.readouterr().out)]


def test_wait_times_out_with_exit_3(
    live_service: LiveService, task_id: int, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = ["--server", live_service.url, "--token", live_service.user_token]
    assert main(["task", "wait", str(task_id), "--timeout", "0.3", "--interval", "0.1", *conn]) == 3
    assert "still running after 0.3 s" in capsys.readouterr().out


def test_errors_are_explained(live_service: LiveService, task_id: int, capsys: pytest.CaptureFixture[str]) -> None:
    other = ["--server", live_service.url, "--token", live_service.other_user_token]
    assert main(["task", "show", str(task_id), *other]) == 1
    assert f"task {task_id} does not exist" in capsys.readouterr().err
    assert main(["task", "list", "--server", live_service.url, "--token", "hps_nope"]) == 1
    assert "unknown, expired or revoked" in capsys.readouterr().err
    assert main(["task", "list", "--server", "http://127.0.0.1:9", "--token", "t"]) == 1
    assert "cannot reach the hposteer server" in capsys.readouterr().err
    result = run("task", "list", "--server", live_service.url, env={"HPOSTEER_TOKEN": ""})
    assert result.returncode == 1 and "no token" in result.stderr


def test_token_commands_on_the_server_host(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    created = run("token", "create", *data, "--role", "user", "--owner", "zoe", "--label", "laptop", "--json")
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)
    assert token["token"].startswith("hps_") and token["owner"] == "zoe"
    listing = run("token", "list", *data, "--json")
    assert [t["owner"] for t in json.loads(listing.stdout)] == ["zoe"]
    assert token["token"] not in listing.stdout, "secrets are never shown again"
    stored = (tmp_path / "hposteer.db").read_bytes()
    assert token["token"].encode() not in stored, "only a hash is stored"
    bad = run("token", "create", *data, "--role", "user", "--owner", "has space")
    assert bad.returncode == 2 and "invalid owner name" in bad.stderr
    assert run("token", "revoke", *data, str(token["id"])).returncode == 0
    again = run("token", "revoke", *data, str(token["id"]))
    assert again.returncode == 1 and "no active token" in again.stderr


def test_bad_settings_are_reported_not_traced(tmp_path: Path) -> None:
    result = run(
        "serve", "--data-dir", str(tmp_path), env={"HPOSTEER_LEASE_TTL_S": "1", "HPOSTEER_HEARTBEAT_INTERVAL_S": "5"}
    )
    assert result.returncode == 2
    assert "heartbeat_interval_s (5.0) must be shorter than lease_ttl_s (1.0)" in result.stderr
    assert "Traceback" not in result.stderr
