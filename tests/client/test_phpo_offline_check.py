"""`phpo --noSubmit` checks the search space, the segments and --architecture offline with the server's code
(hposteer.core.submission_checks): the real command, run as a subprocess without a server, refuses a bad task
with exactly the issues that a real service answers for the same task on submit, and exit code 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from hposteer.client.phpo import prepare, submission
from tests.conftest import LiveService

ROOT = Path(__file__).resolve().parents[2]
PHPO = [sys.executable, "-m", "hposteer.client.phpo"]
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("HPOSTEER_")}
REQUIRED = ["--outDS", "user.alice.offline", "--evaluationExec", "python train.py", "--optimizer", "random",
            "--searchSpaceFile", "space.json", "--site", "NOWHERE"]  # fmt: skip
GOOD = {"lr": {"method": "loguniform", "dimension": {"low": 1e-4, "high": 1e-1}}}
# name -> (space, segments or None, extra options)
BAD: dict[str, tuple[Any, Any, list[str]]] = {
    "unknown method": ({"lr": {"method": "lognormalish", "dimension": {"mu": 0, "sigma": 1}}}, None, []),
    "low above high": ({"lr": {"method": "uniform", "dimension": {"low": 1, "high": 0}}}, None, []),
    "several problems": (
        {
            "lr": {"method": "loguniform", "dimension": {"low": 0, "high": 1, "bse": 2}},
            "layers": {"method": "uniformint", "dimensoin": {"low": 1, "high": 4}},
            "act": {"method": "categorical", "dimension": {"categories": []}},
            "drop": {"method": "loguniformint", "dimension": {"low": 1, "high": 4}},
        },
        None,
        [],
    ),
    "no parameter": ({}, None, []),
    "lognormal overflows": ({"w": {"method": "lognormal", "dimension": {"mu": 300, "sigma": 50}}}, None, []),
    "bad architecture": (GOOD, None, ["--architecture", "gpu(bogus"]),
    "segments": (
        [{"model_id": 0, "search_space": GOOD}, {"model_id": 1, "search_space": {"x": {"method": "fixed"}}}],
        [{"name": "segA"}, {"name": "segB"}, {"name": "segA"}],
        [],
    ),
}


def phpo(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PHPO, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**CLEAN_ENV, "PYTHONPATH": str(ROOT), **(env or {})},
        check=False,
    )


def issue_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("  - ")]


def workdir(tmp_path: Path, space: Any, segments: Any) -> list[str]:
    """The files of a task in ``tmp_path``; the options that name them."""
    (tmp_path / "train.py").write_text("print('train')\n")
    (tmp_path / "space.json").write_text(json.dumps(space))
    if segments is None:
        return []
    (tmp_path / "segments.json").write_text(json.dumps(segments))
    return ["--segmentSpecFile", "segments.json"]


@pytest.mark.parametrize("case", list(BAD))
def test_no_submit_refuses_offline_with_the_issues_the_server_answers_on_submit(
    case: str, tmp_path: Path, live_service: LiveService, monkeypatch: pytest.MonkeyPatch
) -> None:
    space, segments, extra = BAD[case]
    args = [*REQUIRED, *workdir(tmp_path, space, segments), *extra]

    offline = phpo(tmp_path, *args, "--noSubmit", "--server", "http://127.0.0.1:9", "--dumpJson", "dump.json")
    assert offline.returncode == 2, offline.stderr
    assert "ERROR : the task is not valid; nothing was submitted (checked offline by --noSubmit" in offline.stderr
    assert "then run again." in offline.stderr
    assert "dry run" not in offline.stdout and "cannot reach" not in offline.stderr, "no server was asked"
    assert json.loads((tmp_path / "dump.json").read_text())["returnCode"] == 1, "PanDA's failure code in the dump"
    (tmp_path / "dump.json").unlink()

    with httpx.Client(base_url=live_service.url, timeout=30) as client:
        tasks_before = client.get("/api/v1/tasks", headers=auth(live_service)).json()["tasks"]
    submitted = phpo(tmp_path, *args, "--server", live_service.url, env={"HPOSTEER_TOKEN": live_service.user_token})
    assert submitted.returncode == 1, submitted.stderr
    assert "task submission failed: the task is not valid; nothing was submitted" in submitted.stderr
    assert issue_lines(offline.stderr) == issue_lines(submitted.stderr) != []

    monkeypatch.chdir(tmp_path)
    answered = server_issues(live_service, args)
    offline_lines = issue_lines(offline.stderr)
    assert len(offline_lines) == len(answered)
    for line, issue in zip(offline_lines, answered, strict=True):
        assert line.endswith(issue["message"]), "the very words of the server's JSON answer"
        for key in ("parameter", "key", "field"):  # phpo adds the option to a field: 'architecture (--architecture)'
            assert (f"{key} {issue.get(key)!r}"[:-1] in line) == (issue.get(key) is not None)
    with httpx.Client(base_url=live_service.url, timeout=30) as client:
        assert client.get("/api/v1/tasks", headers=auth(live_service)).json()["tasks"] == tasks_before


def auth(service: LiveService) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.user_token}", "X-Hposteer-Api": "1"}


def server_issues(service: LiveService, args: list[str]) -> list[dict[str, Any]]:
    """The issues of the server's JSON answer to the body that phpo sends (files read from the current directory)."""
    body = submission(prepare(args), None)
    with httpx.Client(base_url=service.url, timeout=30) as client:
        answer = client.post("/api/v1/tasks", json={**body, "dry_run": True}, headers=auth(service))
    assert answer.status_code == 422, answer.text
    issues: list[dict[str, Any]] = answer.json()["error"]["issues"]
    return issues


def test_a_good_space_passes_offline_and_is_then_validated_by_the_server(
    tmp_path: Path, live_service: LiveService
) -> None:
    workdir(tmp_path, {**GOOD, "act": {"method": "categorical", "dimension": {"categories": ["relu", "relu", "tanh"]}}},
            None)  # fmt: skip
    offline = phpo(tmp_path, *REQUIRED, "--noSubmit")
    assert offline.returncode == 0, offline.stderr
    assert "checked offline with the server's rules: the search space, the segments and --architecture are valid" in (
        offline.stdout
    )
    assert "NOT validated by a server" in offline.stdout and "no token" in offline.stderr
    assert "WARNING : parameter 'act': categories" in offline.stderr, "the space's warnings, offline too"

    online = phpo(tmp_path, *REQUIRED, "--noSubmit", "--server", live_service.url,
                  env={"HPOSTEER_TOKEN": live_service.user_token})  # fmt: skip
    assert online.returncode == 0, online.stderr
    assert "validated by the server at" in online.stdout
    assert online.stderr.count("WARNING : parameter 'act': categories") == 1, "the server's warning, once"
