"""The pilot against a live service (real HTTP, real SQLite) with real payload processes."""

from __future__ import annotations

import json
import signal
import tarfile
import time
from pathlib import Path

from hposteer.client.http import ApiClient
from hposteer.client.pilot.slots import cpu_slots, parse_workers
from tests.conftest import LiveService
from tests.support.pilots import GOOD, hposteer_pilot, new_site, points, run_pilot, submit, upload, wait_until


def stopped(pid_file: Path) -> bool:
    """The process is gone or a zombie, within a few seconds (orphans are reaped by init later)."""
    stat_file = Path(f"/proc/{pid_file.read_text()}/stat")
    deadline = time.monotonic() + 5
    while stat_file.exists() and time.monotonic() < deadline:
        try:
            if stat_file.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.05)
    return not stat_file.exists()


def test_two_gpu_slots_finish_a_task(live_service: LiveService, tmp_path: Path) -> None:
    site = new_site()
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(api, site, upload(api, {"eval.py": GOOD}))
        started = time.monotonic()
        pilot = run_pilot(live_service, site, tmp_path / "work", slots=parse_workers("0:1"))
        elapsed = time.monotonic() - started
        task = api.get_task(task_id)
        done = points(api, task_id)
    assert task["state"] == "finished" and task["progress"]["done"] == 4
    assert pilot.evaluated == 4 and elapsed < 20
    assert {p["attempts"][0]["slot"] for p in done} == {"0", "1"}, "both slots worked"
    assert all(p["loss"] == (p["params"]["x"] - 0.5) ** 2 for p in done)
    for point in done:
        attempt = point["attempts"][0]
        assert attempt["pilot"] == "test-pilot" and attempt["site"] == site and attempt["exit_code"] == 0
    work = tmp_path / "work"
    assert len(list((work / "sandboxes").iterdir())) == 1, "the sandbox was downloaded once"
    workdir = work / f"task{task_id}" / "point1.attempt1"
    assert json.loads((workdir / "input.json").read_text()) == done[0]["params"]
    assert (workdir / "eval.py").read_text() == GOOD and (workdir / "payload.log").exists()
    slot = done[0]["attempts"][0]["slot"]
    output = json.loads((workdir / "output.json").read_text())
    assert output["message"] == f"gpu={slot} slot={slot}", "each slot exports its own GPU"


def test_bad_outputs_are_reported_with_class_and_message(live_service: LiveService, tmp_path: Path) -> None:
    site = new_site()
    with ApiClient(live_service.url, live_service.user_token) as api:
        silent = submit(api, site, upload(api, {"eval.py": "print('forgot the output')"}), max_points=1, max_attempts=2)
        garbled = submit(api, site, upload(api, {"eval.py": "open('output.json','w').write('{loss: 1')"}), max_points=1)
        crash = submit(api, site, upload(api, {"eval.py": "import sys; sys.exit(3)"}), max_points=1)
        refused = upload(api, {"eval.py": GOOD}, [tarfile.TarInfo("../escape.py")])
        hostile = submit(api, site, refused, max_points=1, max_attempts=1)
        run_pilot(live_service, site, tmp_path / "work", slots=cpu_slots(1))
        silent_point, garbled_point, crash_point, hostile_point = (
            points(api, t)[0] for t in (silent, garbled, crash, hostile)
        )
    assert silent_point["state"] == "failed" and silent_point["is_failure"]
    assert [a["failure_class"] for a in silent_point["attempts"]] == ["missing_output", "missing_output"]
    assert silent_point["attempts"][0]["message"] == "the evaluation exited 0 but wrote no output.json"
    garbled_attempt = garbled_point["attempts"][0]
    assert garbled_attempt["failure_class"] == "invalid_output"
    assert garbled_attempt["message"] == (
        "output.json is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"
    )
    assert crash_point["attempts"][0]["failure_class"] == "payload_error"
    assert crash_point["attempts"][0]["exit_code"] == 3
    assert crash_point["attempts"][0]["message"] == "the evaluation exited with code 3"
    assert hostile_point["attempts"][0]["failure_class"] == "pilot_error"
    assert "sandbox refused" in hostile_point["attempts"][0]["message"]
    assert "[path_traversal]" in hostile_point["attempts"][0]["message"]
    assert not (tmp_path / "work" / "escape.py").exists() and not (tmp_path / "escape.py").exists()


def test_exit_when_idle_exits_cleanly(live_service: LiveService, tmp_path: Path) -> None:
    started = time.monotonic()
    pilot = hposteer_pilot(live_service, new_site(), tmp_path / "work", "--exit-when-idle", "0.5", "--slots", "2")
    _, stderr = pilot.communicate(timeout=30)
    assert pilot.returncode == 0, stderr
    assert time.monotonic() - started < 15
    assert "registered as pilot" in stderr and "no work for 0.5 s; exiting" in stderr
    assert "WITHOUT ISOLATION" in stderr


def test_sigterm_drains_running_evaluations_then_exits(live_service: LiveService, tmp_path: Path) -> None:
    site = new_site()
    slow = "import json, time\ntime.sleep(2)\njson.dump({'loss': 1.0}, open('output.json', 'w'))\n"
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(api, site, upload(api, {"eval.py": slow}), max_points=6)
        pilot = hposteer_pilot(live_service, site, tmp_path / "work", "--slots", "2")
        wait_until(lambda: len(list((tmp_path / "work").glob("task*/point*/payload.log"))) == 2)
        pilot.send_signal(signal.SIGTERM)
        _, stderr = pilot.communicate(timeout=30)
        progress = api.get_task(task_id)["progress"]
    assert pilot.returncode == 0, stderr
    assert "draining: no new work; waiting for 2 running evaluation(s)" in stderr
    assert stderr.count("finished, loss 1") == 2
    assert progress["done"] == 2 and progress["running"] == 0, "the two running evaluations finished and reported"
    assert progress["pending"] >= 1, "no new work was taken"


def test_a_signal_delivered_twice_at_once_still_drains(live_service: LiveService, tmp_path: Path) -> None:
    # As under `scancel --full --signal=TERM`: the pilot and the job script's trap forwarding to it.
    site = new_site()
    slow = "import json, time\ntime.sleep(1.5)\njson.dump({'loss': 1.0}, open('output.json', 'w'))\n"
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(api, site, upload(api, {"eval.py": slow}), max_points=2)
        pilot = hposteer_pilot(live_service, site, tmp_path / "work")
        wait_until(lambda: len(list((tmp_path / "work").glob("task*/point*/payload.log"))) == 1)
        pilot.send_signal(signal.SIGTERM)
        time.sleep(0.1)  # two deliveries, not one pending signal taken once
        pilot.send_signal(signal.SIGTERM)
        _, stderr = pilot.communicate(timeout=30)
        attempts = [a for p in points(api, task_id) for a in p["attempts"]]
    assert pilot.returncode == 0, stderr
    assert "taken as the same request, still draining" in stderr and "second signal" not in stderr
    assert [a["state"] for a in attempts] == ["succeeded"], "the running evaluation finished and nothing new began"


def test_second_signal_stops_payloads_and_reports_them_killed(live_service: LiveService, tmp_path: Path) -> None:
    site = new_site()
    endless = "import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(600)\n"
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(api, site, upload(api, {"eval.py": endless}), max_points=1)
        pilot = hposteer_pilot(live_service, site, tmp_path / "work")
        pid_file = tmp_path / "work" / f"task{task_id}" / "point1.attempt1" / "pid"
        wait_until(lambda: pid_file.exists() and pid_file.read_text() != "")
        pilot.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # a second signal within 0.5 s is taken as the first delivered twice (next test)
        pilot.send_signal(signal.SIGINT)
        _, stderr = pilot.communicate(timeout=30)
        attempt = points(api, task_id)[0]["attempts"][0]
    assert pilot.returncode == 0, stderr
    assert attempt["state"] == "failed" and attempt["failure_class"] == "killed"
    assert "second signal" in attempt["message"]
    assert stopped(pid_file)


def test_killing_the_task_stops_its_payload(live_service: LiveService, tmp_path: Path) -> None:
    site = new_site()
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(api, site, upload(api, {"eval.py": "import time\ntime.sleep(600)\n"}), max_points=1)
        pilot = hposteer_pilot(live_service, site, tmp_path / "work", "--exit-when-idle", "1")
        wait_until(lambda: api.get_task(task_id)["progress"]["running"] >= 1)
        api.kill_task(task_id)
        _, stderr = pilot.communicate(timeout=30)
    assert "the task was killed; stopping the payload" in stderr
    assert pilot.returncode == 0


def test_a_lost_lease_stops_the_payload_and_drops_its_result(live_service: LiveService, tmp_path: Path) -> None:
    """The pilot is frozen past its lease; when it wakes, the heartbeat gets 409: stop, report nothing."""
    site = new_site()
    endless = "import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(600)\n"
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(api, site, upload(api, {"eval.py": endless}), max_points=1, max_attempts=1)
        pilot = hposteer_pilot(live_service, site, tmp_path / "work", "--exit-when-idle", "1")
        pid_file = tmp_path / "work" / f"task{task_id}" / "point1.attempt1" / "pid"
        wait_until(lambda: pid_file.exists() and pid_file.read_text() != "")
        pilot.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: points(api, task_id)[0]["state"] == "failed", timeout_s=15)
        finally:
            pilot.send_signal(signal.SIGCONT)
        _, stderr = pilot.communicate(timeout=30)
        attempt = points(api, task_id)[0]["attempts"][0]
    assert pilot.returncode == 0, stderr
    assert "lease lost" in stderr and "the result is dropped" in stderr
    assert attempt["failure_class"] != "killed", "nothing was reported for the lost lease"
    assert stopped(pid_file), "the payload was stopped"


def test_a_refused_registration_ends_the_pilot_with_a_clear_message(live_service: LiveService, tmp_path: Path) -> None:
    for token, site, expected in (
        ("hps_not-a-real-token", "SITE", "refused the registration: the token is unknown, expired or revoked"),
        (live_service.user_token, "SITE", "refused the registration: this route needs a pilot token"),
        (live_service.pilot_token, "bad site!", "invalid site name 'bad site!'"),
    ):
        pilot = hposteer_pilot(live_service, site, tmp_path / "work", "--token", token, "--exit-when-idle", "5")
        _, stderr = pilot.communicate(timeout=30)
        assert pilot.returncode == 1, stderr
        assert expected in stderr


def test_bad_options_exit_2(live_service: LiveService, tmp_path: Path) -> None:
    for options, expected in (
        (["--workers", "0,0"], "GPU 0 appears twice in slot 0"),
        (["--workers", "0::1"], "slot 1 has an empty GPU list"),
        (["--runtime", "lxc"], "unknown runtime 'lxc'; known runtimes: apptainer, docker, local, podman, singularity"),
        (["--container-memory", "lots"], "--container-memory 'lots': give a size in MB"),
        (["--exit-when-idle", "-1"], "--exit-when-idle must be 0 or more seconds"),
    ):
        pilot = hposteer_pilot(live_service, "SITE", tmp_path / "work", *options)
        _, stderr = pilot.communicate(timeout=30)
        assert pilot.returncode == 2, stderr
        assert expected in stderr


def test_a_pilot_bug_while_handling_a_job_fails_the_attempt_at_once(live_service: LiveService, tmp_path: Path) -> None:
    """An unexpected exception in the pilot's own handling of a job (here injected into the evaluator)
    is reported as a pilot_error failure right away, not left running until its lease runs out."""
    from hposteer.client.pilot.agent import Pilot, PilotConfig
    from hposteer.client.pilot.runtimes.registry import make_runtime
    from hposteer.client.pilot.slots import cpu_slots

    site = new_site()
    with ApiClient(live_service.url, live_service.user_token) as user:
        task_id = submit(user, site, upload(user, {"eval.py": "print('never run')\n"}), max_points=1, max_attempts=1)
        with ApiClient(live_service.url, live_service.pilot_token) as api:
            config = PilotConfig(
                name="buggy", site=site, slots=cpu_slots(1), runtime=make_runtime("local"), workdir=tmp_path,
                exit_when_idle_s=1.0,
            )  # fmt: skip
            pilot = Pilot(api, config)

            def broken(*_: object) -> None:
                raise KeyError("a bug in the pilot")

            pilot.evaluator.evaluate = broken  # type: ignore[assignment,method-assign]
            began = time.monotonic()
            assert pilot.run() == 0
            took = time.monotonic() - began
        [point] = points(user, task_id)
    [attempt] = point["attempts"]
    assert point["state"] == "failed" and attempt["failure_class"] == "pilot_error"
    assert "KeyError: 'a bug in the pilot'" in attempt["message"]
    assert took < live_service.settings.lease_ttl_s + 5, "reported at once, not at lease expiry"
