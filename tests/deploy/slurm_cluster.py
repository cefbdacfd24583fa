"""A private one-node Slurm cluster on this host, for tests that submit real batch jobs.

`slurm_cluster(DIR)` writes a slurm.conf into DIR, makes sure munged answers (starting it when it does not),
starts slurmctld and slurmd in the foreground, each in a process group of its own, waits until the node is
idle, and yields a `SlurmCluster` whose `env()` points Slurm's commands at that configuration. The settings
need neither systemd nor cgroups (VMs, containers): processes are tracked by parentage
(proctrack/linuxproc), tasks are not bound or confined (task/none), nothing is accounted (no slurmdbd, so
no `sacct`: a job's end is read from `scontrol show job` while slurmctld remembers it, MinJobAge). Ports are
free ones picked at start, state and logs stay in DIR. On the way out the cluster's jobs are cancelled,
exactly the daemons started here are stopped, and munged is stopped only when it was started here.

Debian's slurm-wlm and munge provide the programs; without them the tests skip, except under CI=true
(.ci/run installs them), where that fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import IN_CI, free_port

SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
CLIENT_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
PROGRAMS = ("slurmctld", "slurmd", "sbatch", "scontrol", "scancel", "sinfo", "squeue", "munged", "munge")
MUNGE_RUN_DIR = Path("/run/munge")
MUNGE_KEY = Path("/etc/munge/munge.key")
ENDED_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
)


def program(name: str) -> str:
    """The full path of a Slurm or MUNGE program (the daemons live in /usr/sbin, not always on PATH)."""
    found = shutil.which(name, path=SEARCH_PATH)
    assert found is not None, f"no {name}"
    return found


def require_slurm() -> None:
    """Skip without slurm-wlm and munge, except under CI=true, where that fails."""
    missing = [name for name in PROGRAMS if shutil.which(name, path=SEARCH_PATH) is None]
    if missing and IN_CI:
        pytest.fail(
            f"CI=true but Slurm is missing ({', '.join(missing)}): .ci/run installs slurm-wlm and munge "
            "(apt-get install slurm-wlm munge) so that the live Slurm tests run in CI"
        )
    if missing:
        pytest.skip(f"no Slurm here ({', '.join(missing)} missing): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:  # slurmd and munged start as root, and slurmd runs jobs as their users
        if IN_CI:
            pytest.fail("CI=true but the tests do not run as root: the live Slurm cluster needs root")
        pytest.skip("the live Slurm cluster needs root")


def tail(path: Path, lines: int = 40) -> str:
    """The end of a log file, for failure messages."""
    if not path.exists():
        return f"({path} does not exist)"
    return f"--- {path} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def node_description(name: str) -> str:
    """This machine's CPUs, sockets, cores and memory as slurmd sees them (`slurmd -C`), under ``name``."""
    found = subprocess.run([program("slurmd"), "-C"], capture_output=True, text=True, check=True, timeout=30)
    fields = found.stdout.splitlines()[0].split()
    hardware = [f for f in fields if f.split("=")[0] in ("CPUs", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")]
    memory = next(f for f in fields if f.startswith("RealMemory="))
    return " ".join([f"NodeName={name}", "NodeAddr=127.0.0.1", *hardware, memory, "State=UNKNOWN"])


def write_conf(directory: Path, node: str) -> Path:
    """slurm.conf for one node on this host, everything kept in ``directory``."""
    (directory / "state").mkdir(exist_ok=True)
    (directory / "spool").mkdir(exist_ok=True)
    conf = directory / "slurm.conf"
    controller_port = free_port()
    while (node_port := free_port()) == controller_port:
        pass
    conf.write_text(
        f"""# A private one-node test cluster (tests/deploy/slurm_cluster.py).
ClusterName=hposteertest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={controller_port}
SlurmdPort={node_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={directory}/state
SlurmdSpoolDir={directory}/spool
SlurmctldPidFile={directory}/slurmctld.pid
SlurmdPidFile={directory}/slurmd.pid
SlurmctldLogFile={directory}/slurmctld.log
SlurmdLogFile={directory}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No systemd, no cgroups: processes tracked by parentage, tasks neither bound nor confined.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
# How long slurmctld remembers an ended job (scontrol show job reads its state and exit code).
MinJobAge=600
{node_description(node)}
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""
    )
    return conf


def munge_answers() -> bool:
    """Whether a munged answers on the default socket (`munge -n` encodes a credential through it)."""
    done = subprocess.run([program("munge"), "-n"], capture_output=True, check=False, timeout=10)
    return done.returncode == 0


@contextmanager
def running_munged(directory: Path) -> Iterator[None]:
    """munged, started here (as user munge, in the foreground, in its own process group) when none
    answers, and then stopped afterwards; one that already ran is left alone."""
    if munge_answers():
        yield
        return
    assert MUNGE_KEY.exists(), f"{MUNGE_KEY} is missing (the munge package creates it)"
    MUNGE_RUN_DIR.mkdir(mode=0o755, exist_ok=True)
    shutil.chown(MUNGE_RUN_DIR, user="munge", group="munge")
    log = directory / "munged.out"
    with log.open("w") as out:
        munged = subprocess.Popen(
            [program("munged"), "--foreground"],
            user="munge",
            group="munge",
            extra_groups=[],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(munge_answers, 15, lambda: f"munged did not answer\n{tail(log)}")
        yield
    finally:
        stop_group(munged)


def wait_until(condition: Callable[[], bool], timeout_s: float, explain: Callable[[], str]) -> None:
    """Poll ``condition()`` until it holds; fail with ``explain()`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(explain())
        time.sleep(0.2)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a daemon started here with its process group: SIGTERM, SIGKILL after 10 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@dataclass(frozen=True)
class SlurmCluster:
    """A running test cluster: its configuration, its one node, where its logs are."""

    conf: Path
    node: str
    directory: Path

    def env(self, **extra: str) -> dict[str, str]:
        """A minimal environment for Slurm's commands on this cluster (sbatch passes it on to the job)."""
        return {"PATH": CLIENT_PATH, "HOME": str(self.directory), "SLURM_CONF": str(self.conf), **extra}

    def run(self, *argv: str, timeout_s: float = 30) -> str:
        """A Slurm command's output; fails with its error output when it fails."""
        command = [program(argv[0]), *argv[1:]]
        done = subprocess.run(command, env=self.env(), capture_output=True, text=True, check=False, timeout=timeout_s)
        assert done.returncode == 0, f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}{self.logs()}"
        return done.stdout

    def job(self, job_id: str) -> dict[str, str]:
        """The job's fields as `scontrol show job` gives them (JobState, ExitCode, NodeList, ...)."""
        line = self.run("scontrol", "show", "job", "--oneliner", job_id)
        return dict(field.split("=", 1) for field in line.split() if "=" in field)

    def wait_for_end(self, job_id: str, timeout_s: float, log: Path | None = None) -> dict[str, str]:
        """The job's fields once it has ended (COMPLETED, FAILED, CANCELLED, ...); a timeout shows its ``log``."""
        deadline = time.monotonic() + timeout_s
        while (fields := self.job(job_id))["JobState"] not in ENDED_STATES:
            assert time.monotonic() < deadline, (
                f"job {job_id} still {fields['JobState']} ({fields.get('Reason')}) after {timeout_s} s\n"
                + (tail(log) if log else "")
            )
            time.sleep(0.25)
        return fields

    def cancel_all_jobs(self) -> None:
        """Cancel whatever is still queued or running here, and wait until the node has let it go."""
        ids = self.run("squeue", "--noheader", "--format", "%i").split()
        if ids:
            self.run("scancel", *ids)
        wait_until(
            lambda: not self.run("squeue", "--noheader", "--format", "%i").split(),
            30,
            lambda: f"jobs still queued after scancel: {self.run('squeue')}",
        )

    def logs(self) -> str:
        return "\n" + "\n".join(tail(self.directory / name, 15) for name in ("slurmctld.log", "slurmd.log"))


def session_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])


def leftover_job_sessions(conf: Path) -> set[int]:
    """Sessions of this cluster's slurmstepd processes still alive after slurmd stopped: each job step runs
    in a session of its own, outside slurmd's process group; slurmstepd inherits slurmd's environment, so
    SLURM_CONF names our configuration."""
    sessions = set()
    for proc in Path("/proc").iterdir():
        try:
            if (
                proc.name.isdigit()
                and (proc / "comm").read_text().strip() == "slurmstepd"
                and f"SLURM_CONF={conf}".encode() in (proc / "environ").read_bytes().split(b"\0")
            ):
                sessions.add(session_of(int(proc.name)))
        except OSError:  # gone meanwhile
            continue
    return sessions - {os.getsid(0)}


def kill_sessions(sessions: set[int]) -> None:
    """SIGKILL every process of these sessions (a step daemon and the job's processes under it)."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and session_of(int(proc.name)) in sessions:
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, IndexError):
            continue


@contextmanager
def slurm_cluster(directory: Path, start_timeout_s: float = 30) -> Iterator[SlurmCluster]:
    """A one-node Slurm cluster configured and logging in ``directory``, for the duration of the block."""
    require_slurm()
    node = socket.gethostname().split(".")[0]  # slurmd finds its NodeName by the short host name
    with running_munged(directory):
        conf = write_conf(directory, node)
        cluster = SlurmCluster(conf=conf, node=node, directory=directory)
        daemons: list[subprocess.Popen[bytes]] = []
        try:
            for daemon in ("slurmctld", "slurmd"):
                with (directory / f"{daemon}.out").open("w") as out:
                    daemons.append(
                        subprocess.Popen(
                            [program(daemon), "-D", "-f", str(conf)],
                            env=cluster.env(),
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            wait_until(
                lambda: all(d.poll() is None for d in daemons) and node_idle(cluster),
                start_timeout_s,
                lambda: (
                    f"the test cluster's node {node} did not become idle{cluster.logs()}\n"
                    + "\n".join(tail(directory / f"{d}.out", 15) for d in ("slurmctld", "slurmd"))
                ),
            )
            yield cluster
        finally:
            try:
                if daemons and all(d.poll() is None for d in daemons):
                    cluster.cancel_all_jobs()
            finally:
                for process in reversed(daemons):
                    stop_group(process)
                kill_sessions(leftover_job_sessions(conf))


def node_idle(cluster: SlurmCluster) -> bool:
    """Whether slurmd has registered and the node takes jobs (sinfo fails while slurmctld starts)."""
    done = subprocess.run(
        [program("sinfo"), "--noheader", "--nodes", cluster.node, "--format", "%T"],
        env=cluster.env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    return done.returncode == 0 and done.stdout.strip() == "idle"
