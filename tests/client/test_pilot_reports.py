"""The pilot forwards a payload's intermediate reports with its heartbeats (docs/multi-fidelity.md).

The service side is built separately, so these tests run the real Pilot (and a real payload that
reports through ``hposteer.client.payload``) against a small real HTTP server on loopback that
implements register/acquire/heartbeat/complete and records what the pilot sends.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hposteer.client.http import ApiClient
from hposteer.client.pilot.agent import Pilot, PilotConfig
from hposteer.client.pilot.logs import Logger
from hposteer.client.pilot.runtimes.registry import make_runtime
from hposteer.client.pilot.slots import cpu_slots
from tests.conftest import docker_with_image


@dataclass
class Recorder:
    """What the pilot sent, and how the server answers."""

    heartbeat_interval_s: float = 5.0
    job_exec: str = ""
    container: str | None = None
    old_service: bool = False  # answer without reports_stored / last_step
    fail_reports: int = 0  # answer 500 to this many heartbeats that carry reports
    refuse_step: int | None = None  # answer 422 to a heartbeat that carries this step (the lease not extended)
    heartbeats: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    completions: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    stored: dict[int, dict[str, float]] = field(default_factory=dict)
    handed_out: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def job(self) -> dict[str, Any]:
        return {
            "attempt_id": 7, "lease_token": "tok-7", "lease_ttl_s": 60.0,
            "heartbeat_interval_s": self.heartbeat_interval_s, "task_id": 1, "task_name": "t", "point_id": 3,
            "attempt_number": 1, "job_number": 0, "segment": {"index": 0, "name": "main"}, "params": {"x": 0.5},
            "evaluation_exec": self.job_exec, "evaluation_container": self.container, "evaluation_input": "input.json",
            "evaluation_output": "output.json", "sandbox": None, "evaluation_timeout_s": None, "job_step": 0,
            "max_points_per_job": 1, "checkpoint": None, "meta": None, "metrics": None, "training": None,
        }  # fmt: skip

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if path == "/api/v1/pilot/register":
                return 200, {"pilot_id": 1, "lease_ttl_s": 60.0, "heartbeat_interval_s": 5.0, "idle_poll_s": 0.2}
            if path == "/api/v1/pilot/acquire":
                if self.handed_out:
                    return 200, {"job": None, "retry_after_s": 0.2}
                self.handed_out = True
                return 200, {"job": self.job(), "retry_after_s": 0.2}
            if path == "/api/v1/pilot/attempts/7/heartbeat":
                self.heartbeats.append((time.time(), body))
                if body.get("reports") and self.fail_reports > 0:
                    self.fail_reports -= 1
                    return 500, {"error": {"code": "injected", "message": "injected failure"}}
                if any(r["step"] == self.refuse_step for r in body.get("reports", [])):
                    return 422, {"error": {"code": "invalid", "message": f"reports[0]: step {self.refuse_step}"}}
                for report in body.get("reports", []):
                    self.stored.setdefault(report["step"], report["metrics"])  # duplicates are ignored
                answer: dict[str, Any] = {"action": "continue", "lease_expires_in_s": 60.0}
                if not self.old_service:
                    answer["reports_stored"] = len(self.stored)
                    answer["last_step"] = max(self.stored) if self.stored else None
                return 200, answer
            if path == "/api/v1/pilot/attempts/7/complete":
                self.completions.append((time.time(), body))
                return 200, {"accepted": True, "point_state": "finished", "next_job": None}
            return 404, {"error": {"code": "not_found", "message": path}}

    def report_beats(self) -> list[tuple[float, dict[str, Any]]]:
        return [(t, b) for t, b in self.heartbeats if b.get("reports")]


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str]]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(size) or b"{}")
            status, answer = rec.answer(self.path.split("?")[0], body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


REPORTING = """
import json, os, sys, time
from hposteer.client.payload import budget, report
assert os.environ["HPOSTEER_REPORT_FILE"] == "hposteer_report.jsonl"
assert os.environ["HPOSTEER_STOP_FILE"] == "hposteer_stop"
plan = budget()
assert (plan.max_steps, plan.start_step, plan.rung) == (None, 0, None), plan
for step in range(1, 6):
    report(step, loss=1.0 / step, t=time.time())
    time.sleep(0.4)
with open(os.environ["HPOSTEER_REPORT_FILE"], "a") as f:
    f.write('{"step": "six", "loss": 1}\\n')        # line 6: refused
    f.write('not json\\n')                          # line 7: refused
    f.write('{"step": 6, "loss": 0.1, "t": %r}\\n' % time.time())  # line 8: good
    f.write('{"step": 7, "lo')                      # a partial line: waits for its newline
    f.flush()
    time.sleep(0.5)
    f.write('ss": 0.09, "t": %r}\\n' % time.time())
for step in range(10, 260):                        # a burst at the end: flushed before the completion
    report(step, loss=1.0 / step, t=time.time())
json.dump({"status": 0, "loss": 0.004}, open("output.json", "w"))
"""


def run_pilot(server: str, tmp_path: Path, rec: Recorder, script: str, runtime: str = "local") -> Pilot:
    if runtime == "local":
        (tmp_path / "payload.py").write_text(script)
        rec.job_exec = f"{sys.executable} {tmp_path / 'payload.py'}"
    else:
        rec.job_exec = f"python3 -c {shlex.quote(script)}"  # the image has no hposteer: the lines by hand
    with ApiClient(server, "test-token") as api:
        config = PilotConfig(
            name="test-pilot", site="S", slots=cpu_slots(1), runtime=make_runtime(runtime),
            workdir=tmp_path / "work", exit_when_idle_s=1.0, threads_per_slot=1,
        )  # fmt: skip
        pilot = Pilot(api, config, Logger(verbose=True))
        assert pilot.run() == 0
    return pilot


def sent_steps(rec: Recorder) -> list[int]:
    return [r["step"] for _, b in rec.heartbeats for r in b.get("reports", [])]


def test_reports_are_forwarded_promptly_in_order_and_flushed_before_the_completion(
    recorder: tuple[Recorder, str], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    rec, server = recorder
    run_pilot(server, tmp_path, rec, REPORTING)
    expected = [1, 2, 3, 4, 5, 6, 7, *range(10, 260)]
    assert len(rec.completions) == 1 and rec.completions[0][1]["outcome"] == "success"
    assert sorted(rec.stored) == expected  # every report, none lost on a normal end
    assert sent_steps(rec) == expected  # in order, each once (every beat was acknowledged)
    completed_at = rec.completions[0][0]
    assert all(t <= completed_at for t, b in rec.report_beats())
    # A report written is on the wire within 1 s (the heartbeat interval is 5 s).
    for at, body in rec.report_beats():
        for report in body["reports"]:
            assert at - report["metrics"]["t"] < 1.0, (report, at)
    assert all(len(b["reports"]) <= 100 for _, b in rec.report_beats())
    assert rec.stored[7] == {"loss": 0.09, "t": pytest.approx(rec.stored[7]["t"])}  # the partial line waited
    # Refused lines: in the pilot's log, in the attempt's log, forwarded with their line numbers.
    refused = [line for _, b in rec.heartbeats for line in b.get("refused", [])]
    assert len(refused) == 2
    assert refused[0].startswith("report file line 6: 'step' must be a whole number")
    assert refused[1].startswith("report file line 7: the line is not JSON")
    err = capfd.readouterr().err
    assert "report file line 6:" in err and "report file line 7:" in err
    (attempt,) = (tmp_path / "work" / "task1").iterdir()
    log = (attempt / "payload.log").read_text()
    assert "report file line 6:" in log and "report file line 7:" in log
    assert json.loads((attempt / "hposteer_budget.json").read_text()) == {
        "max_steps": None, "start_step": 0, "rung": None,
    }  # fmt: skip


RESEND = """
import json, time
from hposteer.client.payload import report
report(1, loss=0.5)
time.sleep(0.6)
report(2, loss=0.4)
time.sleep(0.6)
json.dump({"status": 0, "loss": 0.4}, open("output.json", "w"))
"""


def test_reports_of_a_failed_heartbeat_are_sent_again(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    rec, server = recorder
    rec.fail_reports = 1
    rec.heartbeat_interval_s = 0.5
    run_pilot(server, tmp_path, rec, RESEND)
    beats = rec.report_beats()
    assert [r["step"] for r in beats[0][1]["reports"]] == [1]  # the one answered 500
    assert sorted(rec.stored) == [1, 2]
    assert sent_steps(rec).count(1) == 2  # sent again after the failure
    assert all(t <= rec.completions[0][0] for t, _ in beats)


def test_reports_the_service_refuses_are_dropped_and_the_lease_kept(
    recorder: tuple[Recorder, str], tmp_path: Path
) -> None:
    """A 422 for what a heartbeat carried means its lease was not extended either: the pilot drops
    that batch and beats again at once without it, so a report never costs the attempt its lease."""
    rec, server = recorder
    rec.refuse_step = 1
    rec.heartbeat_interval_s = 0.5
    run_pilot(server, tmp_path, rec, RESEND)
    refused_at = next(i for i, (_, b) in enumerate(rec.heartbeats) if any(r["step"] == 1 for r in b.get("reports", [])))
    following = rec.heartbeats[refused_at + 1]
    assert following[0] - rec.heartbeats[refused_at][0] < 0.5  # at once, not at the next interval
    assert not any(r["step"] == 1 for r in following[1].get("reports", []))
    assert sent_steps(rec).count(1) == 1  # dropped, never sent again
    assert sorted(rec.stored) == [2]
    assert rec.completions[0][1]["outcome"] == "success"
    (attempt,) = (tmp_path / "work" / "task1").iterdir()
    assert "the service refused the reports it was sent (steps 1 to 1)" in (attempt / "payload.log").read_text()


def test_an_older_service_without_last_step_gets_each_report_once(
    recorder: tuple[Recorder, str], tmp_path: Path
) -> None:
    rec, server = recorder
    rec.old_service = True
    run_pilot(server, tmp_path, rec, RESEND)
    assert sent_steps(rec) == [1, 2]
    assert rec.completions[0][1]["outcome"] == "success"


PLAIN = """
import json, time
time.sleep(1.6)
json.dump({"status": 0, "loss": 0.25}, open("output.json", "w"))
"""


def test_a_payload_without_reports_gets_the_heartbeats_it_got_before(
    recorder: tuple[Recorder, str], tmp_path: Path
) -> None:
    rec, server = recorder
    rec.heartbeat_interval_s = 0.5
    run_pilot(server, tmp_path, rec, PLAIN)
    assert rec.completions[0][1]["loss"] == 0.25
    assert [body for _, body in rec.heartbeats] == [{"lease_token": "tok-7"}] * len(rec.heartbeats)
    assert 2 <= len(rec.heartbeats) <= 4  # one per 0.5 s over about 1.7 s: nothing extra
    gaps = [b[0] - a[0] for a, b in zip(rec.heartbeats, rec.heartbeats[1:], strict=False)]
    assert all(gap >= 0.45 for gap in gaps), gaps


IN_A_CONTAINER = """
import json, os, time
assert os.getcwd() == "/srv/workDir", os.getcwd()
budget = json.load(open(os.environ["HPOSTEER_BUDGET_FILE"]))
for step in (1, 2, 3):
    with open(os.environ["HPOSTEER_REPORT_FILE"], "a") as f:
        f.write(json.dumps({"step": step, "loss": 1.0 / step, "max_steps": -1 if budget["max_steps"] is None else 0}))
        f.write("\\n")
    time.sleep(0.3)
json.dump({"status": 0, "loss": 0.3}, open("output.json", "w"))
"""


def test_a_docker_payloads_reports_are_forwarded(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    docker_with_image("hposteer/base:bookworm").close()
    rec, server = recorder
    rec.container = "hposteer/base:bookworm"
    run_pilot(server, tmp_path, rec, IN_A_CONTAINER, runtime="docker")
    assert rec.completions[0][1]["outcome"] == "success", rec.completions
    assert sent_steps(rec) == [1, 2, 3]
    assert rec.stored[1] == {"loss": 1.0, "max_steps": -1.0}
