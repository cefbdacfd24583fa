"""Real service processes for benchmarks: `python -m hposteer.service serve` on a fresh SQLite directory,
or several replicas of it on one fresh PostgreSQL database; plus per-process CPU sampling from /proc."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class Service:
    url: str
    data_dir: Path
    user_token: str
    pilot_token: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _token(data_dir: Path, role: str, owner: str, database_url: str | None = None) -> str:
    database = ["--database-url", database_url] if database_url else []
    out = subprocess.run(
        [sys.executable, "-m", "hposteer.service", "token", "create", "--data-dir", str(data_dir), *database,
         "--role", role, "--owner", owner, "--json"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return str(json.loads(out.stdout)["token"])


@contextmanager
def running_service(**env_settings: str) -> Iterator[Service]:
    """Start the service as its own process (steering in its child process, as in production)."""
    with tempfile.TemporaryDirectory(prefix="hposteer-bench-") as tmp:
        data_dir = Path(tmp)
        port = _free_port()
        env = dict(os.environ)
        env.update({f"HPOSTEER_{k.upper()}": v for k, v in env_settings.items()})
        log = (data_dir / "service.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "hposteer.service", "serve", "--data-dir", str(data_dir), "--port", str(port),
             "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"service did not start: {(data_dir / 'service.log').read_text()}")
                time.sleep(0.1)
            yield Service(url, data_dir, _token(data_dir, "user", "bench"), _token(data_dir, "pilot", "bench"))
        finally:
            process.terminate()
            process.wait(timeout=60)
            log.close()


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"


# -- PostgreSQL and replicas -----------------------------------------------------------------

LOCAL_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_admin_url() -> str:
    """The PostgreSQL server benchmarks create their databases on: $HPOSTEER_BENCH_POSTGRES_URL,
    else the local one (any existing database of it; fresh ones are created beside it)."""
    return os.environ.get("HPOSTEER_BENCH_POSTGRES_URL") or LOCAL_POSTGRES


def postgres_unavailable(admin_url: str | None = None) -> str | None:
    """Why no PostgreSQL database can be created at ``admin_url``, or None when it can."""
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(admin_url or postgres_admin_url(), connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:
        return f"PostgreSQL at {admin_url or postgres_admin_url()} does not answer: {str(exc).splitlines()[0]}"
    return None


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    return url.rsplit("/", 1)[0] + "/" + name


@contextmanager
def postgres_database(prefix: str = "hposteer_bench", admin_url: str | None = None) -> Iterator[str]:
    """A fresh PostgreSQL database (its SQLAlchemy URL), dropped afterwards, also on failure."""
    from sqlalchemy import create_engine, text

    admin_url = admin_url or postgres_admin_url()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield with_database(admin_url, name)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@dataclass
class Replicas:
    """N service processes on one database; ``pids[i]`` serves ``urls[i]``."""

    urls: list[str]
    pids: list[int]
    database_url: str
    data_dir: Path
    user_token: str
    pilot_token: str


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"service did not start: {log_path.read_text()}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a replica we started (SIGTERM, then SIGKILL), then whatever is left of the process group
    it leads: it was started in a session of its own, so that group holds only it and its children."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
    pgid = process.pid
    if pgid > 1 and pgid != os.getpgid(0):
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


@contextmanager
def running_replicas(count: int, database_url: str, **env_settings: str) -> Iterator[Replicas]:
    """Start ``count`` service processes (``python -m hposteer.service serve --database-url``) on one database.

    The schema is migrated once beforehand (`python -m hposteer.service db upgrade`) and the replicas start
    with ``HPOSTEER_AUTO_MIGRATE=false``: migrations run at the same time by several start-ups
    could race. They share one data directory (blobs, as a shared volume would be). Every replica
    runs its own steering child process and reaper, as in production; all are stopped at the end,
    also when the benchmark fails.
    """
    with tempfile.TemporaryDirectory(prefix="hposteer-bench-replicas-") as tmp:
        data_dir = Path(tmp)
        common = ["--data-dir", str(data_dir), "--database-url", database_url]
        subprocess.run(
            [sys.executable, "-m", "hposteer.service", "db", "upgrade", *common],
            check=True,
            capture_output=True,
            text=True,
        )
        env = dict(os.environ)
        env.update({f"HPOSTEER_{k.upper()}": v for k, v in env_settings.items()})
        env["HPOSTEER_AUTO_MIGRATE"] = "false"
        processes: list[subprocess.Popen[bytes]] = []
        logs = []
        urls = []
        try:
            for index in range(count):
                port = _free_port()
                log_path = data_dir / f"replica-{index}.log"
                log = log_path.open("wb")
                logs.append(log)
                command = [sys.executable, "-m", "hposteer.service", "serve", *common, "--port", str(port)]
                process = subprocess.Popen(
                    [*command, "--log-level", "warning"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # its own process group: stopped whole in _stop
                )
                processes.append(process)
                urls.append(f"http://127.0.0.1:{port}")
            for index, (url, process) in enumerate(zip(urls, processes, strict=True)):
                _wait_healthy(url, process, data_dir / f"replica-{index}.log")
            yield Replicas(
                urls=urls,
                pids=[p.pid for p in processes],
                database_url=database_url,
                data_dir=data_dir,
                user_token=_token(data_dir, "user", "bench", database_url),
                pilot_token=_token(data_dir, "pilot", "bench", database_url),
            )
        finally:
            for process in processes:
                _stop(process)
            for log in logs:
                log.close()


def replica_log_problems(replicas: Replicas) -> list[str]:
    """Lines of the replicas' logs that report errors (empty when the run was clean)."""
    problems = []
    for path in sorted(replicas.data_dir.glob("replica-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if "Traceback" in line or "ERROR" in line or "too many clients" in line:
                problems.append(f"{path.name}: {line.strip()}")
    return problems


# -- CPU per process, from /proc ------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcessCpu:
    pid: int
    ppid: int
    comm: str
    cmdline: str
    ticks: int  # user + system CPU time so far, in clock ticks


@dataclass(frozen=True)
class CpuSnapshot:
    at: float  # time.perf_counter()
    busy_ticks: int  # whole machine: every CPU time that is not idle or iowait
    total_ticks: int
    steal_ticks: int
    processes: dict[int, ProcessCpu]


def cpu_snapshot() -> CpuSnapshot:
    """CPU time of the whole machine and of every process so far (Linux /proc; cheap: ~ms)."""
    at = time.perf_counter()
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    # user nice system idle iowait irq softirq steal (guest time is already inside user)
    idle = values[3] + values[4]
    total = sum(values[:8])
    processes: dict[int, ProcessCpu] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2 :].split()
        # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15
        pid = int(entry.name)
        processes[pid] = ProcessCpu(pid, int(rest[1]), comm, cmdline, int(rest[11]) + int(rest[12]))
    return CpuSnapshot(at, total - idle, total, values[7], processes)


def descendants(snapshot: CpuSnapshot, root: int) -> set[int]:
    """``root`` and every process below it in ``snapshot``."""
    children: dict[int, list[int]] = {}
    for proc in snapshot.processes.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_breakdown(before: CpuSnapshot, after: CpuSnapshot, label: Callable[[ProcessCpu], str]) -> dict[str, float]:
    """Cores used per label between two snapshots (CPU seconds / wall seconds), plus the machine's
    total ("machine busy") and what no labelled process accounts for ("unaccounted": processes that
    ended in between, kernel threads, interrupts). A process started in between counts all its time."""
    wall = after.at - before.at
    used: dict[str, float] = {}
    for pid, proc in after.processes.items():
        earlier = before.processes.get(pid)
        start = earlier.ticks if earlier is not None and earlier.comm == proc.comm else 0
        delta = proc.ticks - start
        if delta <= 0:
            continue
        key = label(proc)
        used[key] = used.get(key, 0.0) + delta / CLOCK_TICKS / wall
    ticks_per_core_s = CLOCK_TICKS * wall
    cores = (after.total_ticks - before.total_ticks) / ticks_per_core_s
    busy = (after.busy_ticks - before.busy_ticks) / ticks_per_core_s
    result = {key: round(value, 2) for key, value in sorted(used.items(), key=lambda kv: -kv[1])}
    result["unaccounted"] = round(max(busy - sum(used.values()), 0.0), 2)
    result["machine busy"] = round(busy, 2)
    result["machine cores"] = round(cores, 2)
    result["steal"] = round((after.steal_ticks - before.steal_ticks) / ticks_per_core_s, 2)
    return result


def memory_gib() -> float:
    """Total RAM of the machine in GiB (for the machine line of a results section)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0
