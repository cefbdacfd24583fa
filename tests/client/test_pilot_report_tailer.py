"""The report tailer (client/pilot/reports.py) on a real file that grows while it is read."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest

from hposteer.client.payload import BUDGET_FILE, REPORT_FILE, STOP_FILE
from hposteer.client.pilot.evaluation import payload_environment
from hposteer.client.pilot.logs import Logger
from hposteer.client.pilot.reports import MAX_BATCH, MAX_REFUSED_FORWARDED, ReportTailer
from hposteer.client.pilot.runtimes.container_args import container_env
from hposteer.client.pilot.slots import Slot
from hposteer.client.pilot.workdir import SandboxError, report_file_name, write_budget
from hposteer.client.wire import Job
from tests.support.runtime import make_job


def tailer(tmp_path: Path) -> tuple[ReportTailer, io.StringIO]:
    stream = io.StringIO()
    return ReportTailer(tmp_path / "r.jsonl", Logger(stream=stream), "slot 0", tmp_path / "payload.log"), stream


def append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


def test_no_file_means_nothing_pending(tmp_path: Path) -> None:
    t, stream = tailer(tmp_path)
    assert t.poll() == 0 and not t.pending and t.batch() == ([], [])
    assert stream.getvalue() == ""


def test_a_growing_file_is_read_incrementally_and_a_partial_line_waits(tmp_path: Path) -> None:
    t, _ = tailer(tmp_path)
    append(t.path, '{"step": 1, "loss": 0.5}\n{"step": 2, "lo')
    assert t.poll() == 1
    assert t.batch() == ([{"step": 1, "metrics": {"loss": 0.5}}], [])
    assert t.poll() == 0  # nothing new
    append(t.path, 'ss": 0.4, "acc": 1}\n')
    assert t.poll() == 1
    assert [r["step"] for r in t.batch()[0]] == [1, 2]
    assert t.batch()[0][1]["metrics"] == {"loss": 0.4, "acc": 1.0}


def test_reports_stay_pending_until_acknowledged(tmp_path: Path) -> None:
    t, _ = tailer(tmp_path)
    append(t.path, "".join(f'{{"step": {s}, "loss": 1}}\n' for s in range(1, 251)))
    assert t.poll() == 250
    sent, refused = t.batch()
    assert len(sent) == MAX_BATCH and sent[0]["step"] == 1
    t.acknowledge(sent, refused, {"action": "continue", "lease_expires_in_s": 9, "last_step": 40})
    assert t.batch()[0][0]["step"] == 41  # the service holds up to 40: 41.. go again
    sent, refused = t.batch()
    t.acknowledge(sent, refused, {"action": "continue", "lease_expires_in_s": 9})  # an older service: all stored
    assert t.batch()[0][0]["step"] == 141
    sent, refused = t.batch()
    t.acknowledge(sent, refused, {"action": "continue", "lease_expires_in_s": 9, "last_step": 250})
    assert not t.pending


def test_reports_the_service_keeps_ignoring_are_dropped_after_three_answers(tmp_path: Path) -> None:
    t, stream = tailer(tmp_path)
    append(t.path, '{"step": 1, "loss": 1}\n{"step": 2, "loss": 1}\n')
    t.poll()
    for _ in range(3):
        sent, refused = t.batch()
        t.acknowledge(sent, refused, {"action": "continue", "lease_expires_in_s": 9, "last_step": None})
    assert not t.pending
    assert "did not store steps 1 to 2" in stream.getvalue()


def test_bad_lines_are_refused_logged_twice_and_at_most_20_forwarded(tmp_path: Path) -> None:
    t, stream = tailer(tmp_path)
    append(t.path, '{"step": 1, "loss": 1}\n{"step": 1, "loss": 1}\n' + "nope\n" * 30 + '{"step": 5, "loss": NaN}\n')
    t.poll()
    sent, refused = t.batch()
    assert [r["step"] for r in sent] == [1]
    assert len(refused) == MAX_REFUSED_FORWARDED
    assert refused[0] == "report file line 2: step 1 after step 1: steps must increase within an attempt"
    assert refused[1].startswith("report file line 3: the line is not JSON")
    assert t.refused_lines == 32
    log = stream.getvalue()
    assert "report file line 33: NaN is not a number JSON allows" in log  # logged, though not forwarded
    attempt_log = (tmp_path / "payload.log").read_text()
    assert attempt_log.count("hposteer pilot: r.jsonl: report file line") == 32
    t.acknowledge(sent, refused, {"action": "continue", "lease_expires_in_s": 9, "last_step": 1})
    assert not t.pending
    append(t.path, "bad again\n")
    t.poll()
    assert t.batch()[1] == []  # the 20 of this attempt are used up; it is only logged


def test_a_file_written_by_another_process_as_it_runs(tmp_path: Path) -> None:
    t, _ = tailer(tmp_path)
    script = (
        "import sys, time\n"
        "from hposteer.client.payload import report\n"
        "for s in range(1, 31):\n"
        "    report(s, loss=1 / s)\n"
        "    time.sleep(0.01)\n"
    )
    env = {**os.environ, "HPOSTEER_REPORT_FILE": str(t.path)}
    with subprocess.Popen([sys.executable, "-c", script], env=env) as writer:
        while writer.poll() is None:
            t.poll()
    t.poll()
    assert [r["step"] for r in t.batch()[0]] == list(range(1, 31))[:MAX_BATCH]


def test_a_symbolic_link_or_a_fifo_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text('{"step": 1, "loss": 1}\n')
    t, stream = tailer(tmp_path)
    t.path.symlink_to(secret)
    assert t.poll() == 0 and not t.pending
    assert "it is a symbolic link" in stream.getvalue()
    t.path.unlink()
    os.mkfifo(t.path)
    t2, stream2 = tailer(tmp_path)
    assert t2.poll() == 0  # does not block
    assert "not a regular file" in stream2.getvalue()


def test_every_runtime_tells_the_payload_its_files(tmp_path: Path) -> None:
    """The variables are relative to the working directory, the payload's cwd in every runtime,
    and the containers' environment (docker, podman and apptainer share container_env) keeps them."""
    job = make_job()
    env = payload_environment(Slot("0", ()), job, {"PATH": "/usr/bin"})
    files = {"HPOSTEER_REPORT_FILE": REPORT_FILE, "HPOSTEER_STOP_FILE": STOP_FILE, "HPOSTEER_BUDGET_FILE": BUDGET_FILE}
    assert {k: env[k] for k in files} == files
    inside = container_env(env, ())
    assert {k: inside[k] for k in files} == files
    renamed = payload_environment(Slot("0", ()), cast(Job, {**job, "report_file": "curve.jsonl"}), {})
    assert renamed["HPOSTEER_REPORT_FILE"] == "curve.jsonl"
    with pytest.raises(SandboxError, match="report file name"):
        report_file_name(cast(Job, {**job, "report_file": "../up.jsonl"}))


def test_the_budget_file_is_the_jobs_budget_or_no_limit(tmp_path: Path) -> None:
    job = make_job()
    (tmp_path / REPORT_FILE).write_text('{"step": 1, "loss": 1}\n')  # from the sandbox or a checkpoint
    (tmp_path / STOP_FILE).write_text("{}")
    write_budget(job, tmp_path)
    assert not (tmp_path / REPORT_FILE).exists() and not (tmp_path / STOP_FILE).exists()
    assert json.loads((tmp_path / BUDGET_FILE).read_text()) == {"max_steps": None, "start_step": 0, "rung": None}
    write_budget(cast(Job, {**job, "budget": {"max_steps": 9, "start_step": 3, "rung": 1}}), tmp_path)
    assert json.loads((tmp_path / BUDGET_FILE).read_text()) == {"max_steps": 9, "start_step": 3, "rung": 1}
