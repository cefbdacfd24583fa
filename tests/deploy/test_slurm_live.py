"""The Slurm pilot job (deploy/batch/slurm) under a real Slurm: a private one-node cluster on this host
(tests/deploy/slurm_cluster.py) runs `hposteer-pilot.sbatch`, submitted by real `sbatch` as users do it
(through `submit-pilots.sh`, and directly with the settings exported), against a live service on loopback.
The job's pilot evaluates a task's points inside the job, ends the job when idle, and drains on the
SIGTERM that Slurm sends to the batch shell (`--signal=B:TERM@...`, here `scancel --batch`).

The jobs ask for 2 CPUs: the node is this 2-core VM, and a job asking for the scripts' default of 4 is
accepted by sbatch but stays pending forever (Reason=PartitionConfig).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hposteer.client.http import ApiClient
from tests.conftest import LiveService
from tests.deploy.slurm_cluster import SlurmCluster, program, slurm_cluster, tail
from tests.support.pilots import new_site, points, submit, upload

SLURM_DIR = Path(__file__).resolve().parents[2] / "deploy" / "batch" / "slurm"
SBATCH_SCRIPT = SLURM_DIR / "hposteer-pilot.sbatch"
SLURM_SUBMIT = SLURM_DIR / "submit-pilots.sh"
HPOSTEER = str(Path(sys.executable).parent / "hposteer")  # the venv's pilot program, as on a shared file system
HOST = socket.gethostname().split(".")[0]
# The evaluation tells where it ran: in which Slurm job, on which host.
WHERE_IT_RAN = """
import json, os, socket
p = json.load(open("input.json"))
json.dump({"status": 0, "loss": (p["x"] - 0.5) ** 2,
           "message": "slurm_job=" + os.environ.get("SLURM_JOB_ID", "none") + " host=" + socket.gethostname()},
          open("output.json", "w"))
"""
SLOW = """
import json, time
p = json.load(open("input.json"))
time.sleep(4)
json.dump({"status": 0, "loss": p["x"]}, open("output.json", "w"))
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


@pytest.fixture
def slurm_jobs(slurm: SlurmCluster) -> Iterator[list[str]]:
    """Ids of the jobs a test submitted; any still queued or running afterwards is cancelled."""
    submitted: list[str] = []
    yield submitted
    queued = set(slurm.run("squeue", "--noheader", "--format", "%i").split())
    if leftover := [job for job in submitted if job in queued]:
        slurm.run("scancel", *leftover)


def job_id_from(sbatch_output: str) -> str:
    found = re.fullmatch(r"Submitted batch job (\d+)\s*", sbatch_output)
    assert found, f"unexpected sbatch output: {sbatch_output!r}"
    return found.group(1)


def submit_command(slurm: SlurmCluster, argv: list[str], cwd: Path, **env: str) -> str:
    """Run a submitting command (the helper or sbatch) as a user would; the job id it printed."""
    done = subprocess.run(argv, env=slurm.env(**env), cwd=cwd, capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 0, f"{argv[0]} failed ({done.returncode}): {done.stderr}{slurm.logs()}"
    return job_id_from(done.stdout)


def job_log(path: Path) -> str:
    assert path.exists(), f"the job wrote no {path}"
    return path.read_text()


def line_of(log: str, text: str) -> int:
    """Where ``text`` first appears in the job's log (to check the order of events)."""
    assert text in log, f"no {text!r} in the job's log:\n{log}"
    return log.index(text)


def wait_for_running_point(api: ApiClient, task_id: int, log: Path, timeout_s: float = 30) -> dict[str, Any]:
    """The first point an attempt holds (the pilot in the job has started evaluating it)."""
    deadline = time.monotonic() + timeout_s
    while not (running := [p for p in points(api, task_id) if p["state"] == "running"]):
        assert time.monotonic() < deadline, f"no point started within {timeout_s} s\n{tail(log)}"
        time.sleep(0.1)
    return running[0]


def test_submitted_pilot_job_evaluates_a_task_in_slurm_and_ends_when_idle(
    live_service: LiveService, slurm: SlurmCluster, tmp_path: Path, token_file: Path, slurm_jobs: list[str]
) -> None:
    site = new_site()
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(api, site, upload(api, {"eval.py": WHERE_IT_RAN}), max_points=4)
        job_id = submit_command(
            slurm,
            [str(SLURM_SUBMIT), "--server", live_service.url, "--token-file", str(token_file), "--cpus", "2",
             "--slots", "2", "--site", site, "--idle", "2", "--pilot", HPOSTEER],
            cwd=tmp_path,  # the job's working directory: its log goes here (--output=hposteer-pilot-%j.log)
            TMPDIR=str(tmp_path),
        )  # fmt: skip
        slurm_jobs.append(job_id)
        log_path = tmp_path / f"hposteer-pilot-{job_id}.log"
        ended = slurm.wait_for_end(job_id, timeout_s=45, log=log_path)
        log = job_log(log_path)
        done = points(api, task_id)
        task = api.get_task(task_id)
        messages = {api.get_point(task_id, p["id"])["attempts"][0]["message"] for p in done}
    assert (ended["JobState"], ended["ExitCode"]) == ("COMPLETED", "0:0"), f"{ended}\n{log}"
    assert (ended["NodeList"], ended["NumCPUs"]) == (slurm.node, "2"), ended
    assert task["state"] == "finished", f"{task['state']}\n{log}"
    assert [p["state"] for p in done] == ["done"] * 4, log
    attempts = [p["attempts"][0] for p in done]
    assert {(a["pilot"], a["site"], a["state"]) for a in attempts} == {(f"slurm-{job_id}-{HOST}", site, "succeeded")}
    assert {a["slot"] for a in attempts} <= {"0", "1"}
    assert messages == {f"slurm_job={job_id} host={HOST}"}, "each evaluation ran inside the Slurm job"
    assert f"job {job_id} on {HOST}" in log and "--slots 2 --threads-per-slot 1" in log, log
    assert "registered as pilot" in log and f"at site {site}" in log, log
    assert "no work for 2 s; exiting" in log and "stopped after 4 evaluation(s)" in log, log
    assert log.rstrip().endswith("pilot exited with status 0"), log
    assert not (tmp_path / f"hposteer-pilot-{job_id}").exists(), "the job's working directory is removed"


def test_slurm_signal_to_the_batch_shell_drains_the_pilot(
    live_service: LiveService, slurm: SlurmCluster, tmp_path: Path, token_file: Path, slurm_jobs: list[str]
) -> None:
    site = new_site()
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(api, site, upload(api, {"eval.py": SLOW}), max_points=4)
        # Directly with sbatch, the settings exported (docs/operator.md); idle 600 s: only the signal ends it.
        job_id = submit_command(
            slurm,
            [program("sbatch"), "--cpus-per-task=2", f"--output={tmp_path}/pilot-%j.log", str(SBATCH_SCRIPT)],
            cwd=tmp_path,
            HPOSTEER_SERVER=live_service.url,
            HPOSTEER_TOKEN_FILE=str(token_file),
            HPOSTEER_PILOT_COMMAND=HPOSTEER,
            HPOSTEER_PILOT_SITE=site,
            HPOSTEER_PILOT_IDLE="600",
            TMPDIR=str(tmp_path),
        )
        slurm_jobs.append(job_id)
        log_path = tmp_path / f"pilot-{job_id}.log"
        running = wait_for_running_point(api, task_id, log_path)
        # What --signal=B:TERM@600 does ten minutes before the time limit: SIGTERM to the batch shell only.
        slurm.run("scancel", "--signal=TERM", "--batch", job_id)
        ended = slurm.wait_for_end(job_id, timeout_s=30, log=log_path)
        log = job_log(log_path)
        after = {p["id"]: p for p in points(api, task_id)}
    assert (ended["JobState"], ended["ExitCode"]) == ("COMPLETED", "0:0"), f"{ended}\n{log}"
    drained = after[running["id"]]
    assert drained["state"] == "done", f"the running evaluation was lost: {drained}\n{log}"
    assert [a["state"] for a in drained["attempts"]] == ["succeeded"], log
    assert drained["attempts"][0]["pilot"] == f"slurm-{job_id}-{HOST}"
    started = [p for p in after.values() if p["attempts"]]
    assert started == [drained], f"no new evaluation starts after the signal: {started}\n{log}"
    signalled = line_of(log, "signal: passing SIGTERM to the pilot")
    assert signalled < line_of(log, "draining: no new work; waiting for 1 running evaluation(s)"), log
    assert signalled < line_of(log, ": finished, loss"), "the evaluation finishes after the signal\n" + log
    assert "second signal" not in log and "stopped after 1 evaluation(s)" in log, log
    assert log.rstrip().endswith("pilot exited with status 0"), log
