"""Pilot launch scripts for batch systems (deploy/batch): the submit helpers are run against fake
`sbatch` / `condor_submit` programs that record what they were given, and the job scripts that run on
a worker node are run for real, with what the helpers passed, against a live service: a real pilot
started by the script evaluates a task's points, takes its slots from the job's GPUs or CPUs, drains
on the batch system's SIGTERM and at its lifetime, and exits when idle.

No Slurm or HTCondor is installed here, so their own parts are not exercised: the #SBATCH directives
and the submit description's macro language are checked by reading them (HTCondor's `$(name:default)`
and `$Fnx()` are expanded by a small stand-in below, not by condor_submit).
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shlex
import shutil
import signal
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
from tests.support.pilots import GOOD, new_site, points, submit, upload

BATCH = Path(__file__).resolve().parents[2] / "deploy" / "batch"
SBATCH_SCRIPT = BATCH / "slurm" / "hposteer-pilot.sbatch"
SLURM_SUBMIT = BATCH / "slurm" / "submit-pilots.sh"
CONDOR_SUB = BATCH / "htcondor" / "hposteer-pilot.sub"
CONDOR_WRAPPER = BATCH / "htcondor" / "hposteer-pilot.sh"
CONDOR_SUBMIT = BATCH / "htcondor" / "submit-pilots.sh"
VENV_BIN = str(Path(sys.executable).parent)  # where `hposteer` is installed
HOST = socket.gethostname().split(".")[0]
FAKE = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["FAKE_RECORD"], "w") as f:
    json.dump({{"argv": sys.argv[1:], "env": {{k: v for k, v in os.environ.items() if k.startswith("HPOSTEER")}}}}, f)
print(os.environ["FAKE_ANSWER"])
"""


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A directory with fake sbatch and condor_submit that record their arguments and environment."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    for name in ("sbatch", "condor_submit"):
        (bin_dir / name).write_text(FAKE)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def run_helper(helper: Path, fake_bin: Path, tmp_path: Path, *args: str, **env: str) -> dict[str, Any]:
    record = tmp_path / "submitted.json"
    environment = {
        "PATH": f"{fake_bin}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FAKE_RECORD": str(record),
        "FAKE_ANSWER": "Submitted batch job 4242" if helper == SLURM_SUBMIT else "1 job(s) submitted to cluster 77.",
        **env,
    }
    done = subprocess.run(
        [str(helper), *args], env=environment, capture_output=True, text=True, check=False, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == environment["FAKE_ANSWER"]
    return dict(json.loads(record.read_text()))


@pytest.fixture
def jobs() -> Iterator[list[subprocess.Popen[str]]]:
    """Job scripts started by a test, each in a session of its own; whatever still runs is killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for job in started:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)  # the group this test created for the job, pilot included
            job.wait(timeout=10)


def start_job(jobs: list[subprocess.Popen[str]], script: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    job = subprocess.Popen(
        ["bash", str(script)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    jobs.append(job)
    return job


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A worker node's environment: the pilot program on PATH, a TMPDIR, nothing of ours."""
    return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path), **extra}


def read_until(job: subprocess.Popen[str], text: str, timeout_s: float = 30) -> str:
    """The job's stderr up to the first line holding ``text``."""
    assert job.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(job.stderr, selectors.EVENT_READ)
        while text not in seen:
            assert time.monotonic() < deadline and job.poll() is None, f"no {text!r} in:\n{seen}"
            if selector.select(timeout=0.5):
                seen += job.stderr.readline()
    return seen


def wait_for(job: subprocess.Popen[str], timeout_s: float = 60) -> str:
    _, stderr = job.communicate(timeout=timeout_s)
    assert job.returncode == 0, stderr
    return stderr


def test_scripts_are_valid_shell() -> None:
    scripts = [SBATCH_SCRIPT, SLURM_SUBMIT, CONDOR_WRAPPER, CONDOR_SUBMIT]
    deploy = BATCH.parent
    for script in scripts:
        checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, f"{script}: {checked.stderr}"
        assert os.access(script, os.X_OK), f"{script} is not executable"
    for script in (deploy / "compose" / "create-pilot-token.sh", deploy / "images" / "postgres" / "entrypoint.sh"):
        checked = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, f"{script}: {checked.stderr}"
    if shutil.which("shellcheck"):  # not installed by .ci/run; clean at every level when it was run here
        others = [deploy / "images" / "build.sh", deploy / "images" / "postgres" / "entrypoint.sh"]
        checked = subprocess.run(
            ["shellcheck", "-S", "warning", *map(str, scripts + others)], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stdout


def test_sbatch_script_directives_drain_before_the_time_limit() -> None:
    directives = re.findall(r"^#SBATCH (\S+)", SBATCH_SCRIPT.read_text(), flags=re.MULTILINE)
    assert "--signal=B:TERM@600" in directives, "the batch shell (B:) gets SIGTERM, and passes it to the pilot"
    assert "--nodes=1" in directives and "--ntasks=1" in directives
    assert any(d.startswith("--time=") for d in directives)


def test_slurm_submit_helper_passes_resources_and_settings(fake_bin: Path, tmp_path: Path, token_file: Path) -> None:
    submitted = run_helper(
        SLURM_SUBMIT, fake_bin, tmp_path,
        "--server", "https://hpo.example.org", "--token-file", str(token_file), "--count", "3", "--gpus", "2",
        "--cpus", "8", "--mem", "32G", "--time", "2-00:00:00", "--drain-before", "900", "--partition", "gpu",
        "--site", "CERN-T2", "--runtime", "apptainer", "--pilot", "/opt/hposteer/bin/hposteer",
        "--pilot-args", "--cpu-flags avx2,fma --gpu-model A100", "--", "--mail-type=END",
        HPOSTEER_TOKEN="hps_must_not_travel",
    )  # fmt: skip
    argv = submitted["argv"]
    assert argv[-1] == str(SBATCH_SCRIPT)
    assert {
        "--array=1-3", "--gres=gpu:2", "--cpus-per-task=8", "--mem=32G", "--time=2-00:00:00",
        "--signal=B:TERM@900", "--partition=gpu", "--mail-type=END", "--output=hposteer-pilot-%A_%a.log",
    } <= set(argv)  # fmt: skip
    assert submitted["env"] == {
        "HPOSTEER_SERVER": "https://hpo.example.org",
        "HPOSTEER_TOKEN_FILE": str(token_file),
        "HPOSTEER_PILOT_SITE": "CERN-T2",
        "HPOSTEER_PILOT_RUNTIME": "apptainer",
        "HPOSTEER_PILOT_IDLE": "600",
        "HPOSTEER_PILOT_GPUS_PER_SLOT": "1",
        "HPOSTEER_PILOT_SLOTS": "1",
        "HPOSTEER_PILOT_ARGS": "--cpu-flags avx2,fma --gpu-model A100",
        "HPOSTEER_PILOT_COMMAND": "/opt/hposteer/bin/hposteer",
    }, "settings travel in the environment, the token only as a file"


@pytest.mark.parametrize(
    ("wall", "drain", "refusal"),
    [
        ("10:00", "900", "--drain-before 900 is not shorter than --time 10:00 (600 s)"),  # HH:MM -> MM:SS
        ("15", "900", "--drain-before 900 is not shorter than --time 15 (900 s)"),  # minutes
        ("1-00", "900", None),  # a day
        ("0-00:20:00", "900", None),
        ("2:00:00", "900", None),
        ("tomorrow", "900", "--time tomorrow is not in Slurm's format"),
    ],
)
def test_slurm_submit_helper_checks_the_drain_against_the_wall_time(
    fake_bin: Path, tmp_path: Path, token_file: Path, wall: str, drain: str, refusal: str | None
) -> None:
    # Slurm checks time limits about every 30 s: a drain time not under the wall time drains at once.
    done = subprocess.run(
        [str(SLURM_SUBMIT), "--server", "https://hpo.example.org", "--token-file", str(token_file),
         "--time", wall, "--drain-before", drain],
        env={"PATH": f"{fake_bin}:/usr/bin:/bin", "FAKE_RECORD": str(tmp_path / "r"), "FAKE_ANSWER": "Submitted 1"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if refusal is None:
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "r").exists()
    else:
        assert done.returncode == 2 and refusal in done.stderr, done.stderr
        assert not (tmp_path / "r").exists(), "nothing was submitted"


def test_slurm_submit_helper_refuses_without_server(fake_bin: Path, tmp_path: Path, token_file: Path) -> None:
    done = subprocess.run(
        [str(SLURM_SUBMIT), "--token-file", str(token_file)],
        env={"PATH": f"{fake_bin}:/usr/bin:/bin", "FAKE_RECORD": str(tmp_path / "r"), "FAKE_ANSWER": ""},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "--server URL" in done.stderr
    assert not (tmp_path / "r").exists(), "nothing was submitted"


def test_slurm_job_runs_a_pilot_on_the_jobs_gpus(
    live_service: LiveService, fake_bin: Path, tmp_path: Path, token_file: Path, jobs: list[subprocess.Popen[str]]
) -> None:
    site = new_site()
    submitted = run_helper(
        SLURM_SUBMIT, fake_bin, tmp_path, "--server", live_service.url, "--token-file", str(token_file),
        "--gpus", "4", "--gpus-per-slot", "2", "--cpus", "4", "--site", site, "--idle", "2", "--pilot", "hposteer",
    )  # fmt: skip
    workdir = tmp_path / "work"
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(api, site, upload(api, {"eval.py": GOOD}), max_points=4)
        # What Slurm would give the job: the submitter's environment, its GPUs, CPUs and job id.
        env = base_env(
            tmp_path, **submitted["env"], SLURM_JOB_ID="4242", SLURM_CPUS_PER_TASK="4",
            CUDA_VISIBLE_DEVICES="0,1,2,3", HPOSTEER_PILOT_WORKDIR=str(workdir), HPOSTEER_PILOT_KEEP_WORKDIRS="1",
        )  # fmt: skip
        log = wait_for(start_job(jobs, SBATCH_SCRIPT, env, tmp_path))
        done = points(api, task_id)
    assert "--workers 0,1:2,3" in log and "--threads-per-slot 2" in log, log
    assert [p["state"] for p in done] == ["done"] * 4, log
    attempts = [p["attempts"][0] for p in done]
    assert {a["pilot"] for a in attempts} == {f"slurm-4242-{HOST}"} and {a["site"] for a in attempts} == {site}
    for attempt, point in zip(attempts, done, strict=True):
        output = json.loads((workdir / f"task{task_id}" / f"point{point['id']}.attempt1" / "output.json").read_text())
        gpus = {"0": "0,1", "1": "2,3"}[attempt["slot"]]
        assert output["message"] == f"gpu={gpus} slot={attempt['slot']}", "each slot has its pair of the job's GPUs"
    assert "pilot exited with status 0" in log


def test_slurm_job_without_gpus_uses_cpu_slots_drains_on_sigterm_and_cleans_up(
    live_service: LiveService, tmp_path: Path, token_file: Path, jobs: list[subprocess.Popen[str]]
) -> None:
    env = base_env(
        tmp_path, HPOSTEER_SERVER=live_service.url, HPOSTEER_TOKEN_FILE=str(token_file), HPOSTEER_PILOT_SLOTS="2",
        HPOSTEER_PILOT_SITE=new_site(), HPOSTEER_PILOT_IDLE="600", SLURM_JOB_ID="77",
    )  # fmt: skip
    job = start_job(jobs, SBATCH_SCRIPT, env, tmp_path)
    workdir = tmp_path / "hposteer-pilot-77"
    early = read_until(job, "registered as pilot")
    job.send_signal(signal.SIGTERM)  # Slurm's --signal=B:TERM@... goes to the batch shell
    log = early + wait_for(job, timeout_s=30)
    assert "--slots 2" in log and "--workers" not in log
    assert "passing SIGTERM to the pilot" in log and "draining" in log
    assert not workdir.exists(), "the default working directory is removed at the end"


def condor_submit_stand_in(submit_file: Path, assignments: list[str]) -> dict[str, str]:
    """The submit commands of `condor_submit FILE name=value...` with macros expanded, as HTCondor does
    for what this file uses: command-line variables come first, `$(name:default)`, `$Fnx(name)`."""
    macros: dict[str, str] = dict(a.split("=", 1) for a in assignments)
    commands: dict[str, str] = {}

    def expand(value: str) -> str:
        value = re.sub(r"\$Fnx\((\w+)\)", lambda m: Path(macros.get(m.group(1), "")).name, value)
        return re.sub(r"\$\((\w+)(?::([^)]*))?\)", lambda m: macros.get(m.group(1), m.group(2) or ""), value)

    for line in submit_file.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("queue"):
            commands["queue"] = expand(line.split(None, 1)[1])
            continue
        name, value = (part.strip() for part in line.split("=", 1))
        commands[name.lower()] = expand(value)
    return commands


def condor_environment(value: str) -> dict[str, str]:
    """HTCondor's quoted `environment` syntax: "A=1 B='x y'"."""
    assert value.startswith('"') and value.endswith('"'), value
    return dict(item.split("=", 1) for item in shlex.split(value[1:-1]))


def test_condor_submit_helper_and_description(fake_bin: Path, tmp_path: Path, token_file: Path) -> None:
    submitted = run_helper(
        CONDOR_SUBMIT, fake_bin, tmp_path, "--server", "https://hpo.example.org", "--token-file", str(token_file),
        "--count", "5", "--gpus", "2", "--cpus", "8", "--memory", "16GB", "--lifetime", "43200", "--site", "DESY",
        "--pilot-args", "--gpu-model A100 --gpu-memory 40GB",
    )  # fmt: skip
    argv = submitted["argv"]
    assert argv[0] == str(CONDOR_SUB)
    commands = condor_submit_stand_in(CONDOR_SUB, argv[1:])
    assert commands["executable"] == str(CONDOR_WRAPPER)
    assert commands["transfer_input_files"] == str(token_file), "the token travels as a file"
    assert (commands["request_gpus"], commands["request_cpus"], commands["request_memory"]) == ("2", "8", "16GB")
    assert commands["queue"] == "5" and commands["kill_sig"] == "SIGTERM"
    env = condor_environment(commands["environment"])
    assert env == {
        "HPOSTEER_SERVER": "https://hpo.example.org",
        "HPOSTEER_TOKEN_FILE": token_file.name,
        "HPOSTEER_PILOT_SITE": "DESY",
        "HPOSTEER_PILOT_RUNTIME": "local",
        "HPOSTEER_PILOT_GPUS_PER_SLOT": "1",
        "HPOSTEER_PILOT_SLOTS": "1",
        "HPOSTEER_PILOT_CPUS": "8",
        "HPOSTEER_PILOT_IDLE": "600",
        "HPOSTEER_PILOT_LIFETIME": "43200",
        "HPOSTEER_PILOT_COMMAND": "hposteer",
        "HPOSTEER_PILOT_ARGS": "--gpu-model A100 --gpu-memory 40GB",
    }
    assert "43200" in commands["periodic_remove"]


def condor_job_env(submitted: dict[str, Any], scratch: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    """What HTCondor would give the job: the description's environment, the token transferred into the
    scratch directory, the job ad, and OMP_NUM_THREADS (HTCondor sets it to request_cpus)."""
    argv = submitted["argv"]
    commands = condor_submit_stand_in(Path(argv[0]), argv[1:])
    scratch.mkdir()
    shutil.copy(commands["transfer_input_files"], scratch)
    (scratch / ".job.ad").write_text('ClusterId = 77\nProcId = 3\nGlobalJobId = "schedd#77.3#1"\n')
    return base_env(
        tmp_path, **condor_environment(commands["environment"]), _CONDOR_SCRATCH_DIR=str(scratch),
        _CONDOR_JOB_AD=str(scratch / ".job.ad"), OMP_NUM_THREADS=commands["request_cpus"], **extra,
    )  # fmt: skip


def test_condor_job_runs_a_pilot_on_its_gpu(
    live_service: LiveService, fake_bin: Path, tmp_path: Path, token_file: Path, jobs: list[subprocess.Popen[str]]
) -> None:
    site = new_site()
    submitted = run_helper(
        CONDOR_SUBMIT, fake_bin, tmp_path, "--server", live_service.url, "--token-file", str(token_file),
        "--gpus", "1", "--cpus", "2", "--idle", "2", "--site", site,
    )  # fmt: skip
    scratch = tmp_path / "scratch"
    with ApiClient(live_service.url, live_service.user_token) as api:
        task_id = submit(api, site, upload(api, {"eval.py": GOOD}), max_points=3)
        env = condor_job_env(submitted, scratch, tmp_path, CUDA_VISIBLE_DEVICES="1")  # HTCondor assigned GPU 1
        log = wait_for(start_job(jobs, CONDOR_WRAPPER, env, scratch))
        done = points(api, task_id)
    assert "--workers 1 " in log and "--threads-per-slot 2" in log, log
    assert [p["state"] for p in done] == ["done"] * 3, log
    assert {p["attempts"][0]["pilot"] for p in done} == {f"condor-77.3-{HOST}"}
    assert list((scratch / "hposteer-pilot").glob("task*/point*")) == [], "--clean-workdirs"


def test_condor_job_drains_at_its_lifetime(
    live_service: LiveService, fake_bin: Path, tmp_path: Path, token_file: Path, jobs: list[subprocess.Popen[str]]
) -> None:
    submitted = run_helper(
        CONDOR_SUBMIT, fake_bin, tmp_path, "--server", live_service.url, "--token-file", str(token_file),
        "--slots", "2", "--lifetime", "2", "--idle", "600", "--site", new_site(),
    )  # fmt: skip
    scratch = tmp_path / "scratch"
    started = time.monotonic()
    log = wait_for(start_job(jobs, CONDOR_WRAPPER, condor_job_env(submitted, scratch, tmp_path), scratch), 30)
    assert "--slots 2" in log and "lifetime of 2 s reached: draining" in log, log
    assert time.monotonic() - started < 20, "it did not wait for the idle time (600 s)"


def test_job_scripts_refuse_a_missing_token_file(tmp_path: Path) -> None:
    for script in (SBATCH_SCRIPT, CONDOR_WRAPPER):
        env = base_env(tmp_path, HPOSTEER_SERVER="http://127.0.0.1:9", HPOSTEER_TOKEN_FILE=str(tmp_path / "nope"))
        done = subprocess.run(
            ["bash", str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=30
        )
        assert done.returncode == 2 and "cannot read" in done.stderr, (script, done.stderr)
