"""(e) Replicas on PostgreSQL, side by side with Optuna 5's RDB storage, in one run.

What is measured, for hposteer with 1 and then 3 replicas (``python -m hposteer.service serve`` processes
on one fresh PostgreSQL database, bench/harness.py ``running_replicas``) and for Optuna:

* **Evaluations completed per second** with 64 concurrent slots of zero work, counted over a
  fixed window that starts after a warm-up (connection pools filled, steering ahead of the slots).
  The slots are threads of W load-generator processes (8 x 8 by default), each slot with its own
  HTTP client (the pilot's ``ApiClient``), the slots spread round-robin over the replicas' URLs.
  An evaluation is what a pilot slot does after its payload: ``complete(..., acquire_next=True)``,
  whose answer carries the slot's next job. One evaluation in ``split_every`` (10) of each slot
  is instead reported as the two separate calls, ``complete`` and then a plain ``acquire``, so
  that the plain acquire is sampled under the same load (a pilot makes that call when a slot
  starts or ran dry).
* **Acquire latency**, p50/p99, of the calls that hand out a job, as the slot sees them over
  loopback HTTP: (1) the plain ``acquire`` and (2) ``complete`` with ``acquire_next`` (the
  completion and the next claim, one transaction); ``complete`` alone is reported too, so the
  acquire part of (2) can be read off as the difference. And the pilot's view, "job wait": from
  sending the report to holding the next job, answers without a job included; after such an
  answer a slot waits as the pilot does (``PilotBackoff``), so empty answers cost what they cost
  a real pilot. One more row spreads the slots over ``spread_tasks`` tasks (16), to tell contention
  on one task's rows from the service's own cost.
* **Latency below saturation**: with zero work, 64 slots always wait on the service, so every
  latency is 64 / throughput (Little's law) whatever the service does per call. One more row gives
  each evaluation ``paced_work_s`` (0.5 s) of work before its report, as real payloads do (they
  take minutes): the slots then offer at most 128 evaluations/s, and the latencies are the
  service's own. This row is not one of the issue's zero-work rows and is left out of the verdicts.
* **Optuna 5**, same PostgreSQL, its own fresh database: ``RDBStorage``, ``RandomSampler``, one
  float parameter, a zero-work objective as ask/tell loops (``ask`` with the distribution, then
  ``tell`` a constant) in the same 64 threads over the same W processes, one study. Ask/tell is
  what ``study.optimize`` does per trial minus its bookkeeping, so it is Optuna's fastest honest
  path and lets ``ask`` be timed apart (the analogue of acquire). Trials/s over the same windows;
  Optuna also with 8 slots (``optuna_reference_slots``), where it is faster.
* **Where the CPU goes** during each window: CPU time per process from /proc (replicas, their
  steering children, the load generators, PostgreSQL backends of the benchmark's database,
  PostgreSQL's own processes, everything else on the machine) in cores, and what PostgreSQL's
  backends of that database were doing (pg_stat_activity sampled every 100 ms: running, waiting
  for a lock, for the WAL, or idle in a transaction while the client computes).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.harness import (
    ProcessCpu,
    Replicas,
    cpu_breakdown,
    cpu_snapshot,
    descendants,
    memory_gib,
    postgres_database,
    replica_log_problems,
    running_replicas,
)

SPACE = {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}}
OTHER = "other processes (not this benchmark)"
TARGET_EVALUATIONS_PER_S = 1000.0
TARGET_RATIO = 3.0
TARGET_ACQUIRE_P99_MS = 50.0


@dataclass
class Config:
    """One configuration of the benchmark; ``quick`` is a smoke run (not for the docs)."""

    replicas: tuple[int, ...] = (1, 3)  # the headline rows: one task, as in (b)
    spread_tasks: int = 16  # one more row: the most replicas, the slots spread over this many tasks (0: none)
    paced_work_s: float = 0.5  # one more row: the most replicas, each evaluation this long (0: none)
    optuna_reference_slots: tuple[int, ...] = (8,)  # Optuna also at these concurrencies, for reference
    slots: int = 64
    processes: int = 8  # load-generator processes; slots are threads spread evenly over them
    warmup_s: float = 5.0
    window_s: float = 20.0
    split_every: int = 10  # one evaluation in this many per slot: complete, then a plain acquire
    empty_wait_s: float | None = None  # after an answer without a job: None = the pilot's backoff
    db_pool_size: int | None = None  # HPOSTEER_DB_POOL_SIZE of the replicas (None: the service's default)
    points_per_iteration: int = 1024
    optuna: bool = True
    database_prefix: str = "bench_replicas"  # fresh databases are named <prefix>_hposteer_<random> etc.

    @classmethod
    def for_run(cls, quick: bool) -> Config:
        return cls(warmup_s=2.0, window_s=5.0) if quick else cls()


# -- statistics ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0 to 100) by linear interpolation between closest ranks; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    value = ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
    return round(value, 2)


def latency_stats(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "max_ms": round(max(values), 2) if values else None,
    }


# -- load generator (runs in spawned processes) -------------------------------------------------


@dataclass
class SlotResult:
    """What one slot saw in the window: latencies in ms of calls that returned inside it."""

    evaluations: int = 0
    complete_next_ms: list[float] = field(default_factory=list)  # complete(acquire_next=True), every call
    complete_ms: list[float] = field(default_factory=list)  # complete alone (the split evaluations)
    acquire_ms: list[float] = field(default_factory=list)  # plain acquire calls that handed out a job
    job_wait_ms: list[float] = field(default_factory=list)  # report sent -> next job in hand, retries included
    empty: int = 0  # answers without a job (complete's next_job or acquire): "no work for you now"
    errors: list[str] = field(default_factory=list)


class PilotBackoff:
    """After an answer without a job the pilot asks again after 50 ms, then 100, 200 ms ... up to
    the server's ``retry_after_s`` (src/hposteer/client/pilot/agent.py ``_Backoff``); reset by a job. A fixed
    ``wait_s`` replaces it (an aggressive poller, to see the service's capacity rather than the pilot's)."""

    def __init__(self, wait_s: float | None = None, first_s: float = 0.05):
        self.fixed = wait_s
        self.first_s = first_s
        self.delay = first_s

    def next(self, cap_s: float) -> float:
        if self.fixed is not None:
            return self.fixed
        delay = min(self.delay, max(cap_s, 0.0))
        self.delay = min(self.delay * 2, max(cap_s, self.first_s))
        return delay

    def reset(self) -> None:
        self.delay = self.first_s


def _hposteer_slot(url: str, token: str, pilot_id: int, slot: str, offset: int, args: dict[str, Any]) -> SlotResult:
    from hposteer.client.http import ApiClient

    t0, t1 = args["window"]
    split_every: int = args["split_every"]
    backoff = PilotBackoff(args["empty_wait_s"])
    result = SlotResult()
    count = offset  # staggers the split evaluations of the slots
    reported_at: float | None = None  # when the slot sent its last report and began waiting for a job
    with ApiClient(url, token) as api:
        job: Any = None
        while time.perf_counter() < t1:
            try:
                if job is None:
                    began = time.perf_counter()
                    answer = api.acquire(pilot_id, slot)
                    ended = time.perf_counter()
                    job = answer["job"]
                    inside = t0 <= ended <= t1
                    if job is None:
                        result.empty += inside
                        time.sleep(backoff.next(float(answer["retry_after_s"])))
                        continue
                    backoff.reset()
                    if inside:
                        result.acquire_ms.append((ended - began) * 1000)
                        if reported_at is not None:
                            result.job_wait_ms.append((ended - reported_at) * 1000)
                    reported_at = None
                    continue
                if args["work_s"]:
                    time.sleep(args["work_s"])  # the payload; the job wait ends when the job arrives
                report = {"lease_token": job["lease_token"], "outcome": "success", "loss": 0.5}
                count += 1
                split = split_every > 0 and count % split_every == 0
                began = time.perf_counter()
                completed = api.complete(job["attempt_id"], report, acquire_next=not split)
                ended = time.perf_counter()
                job = None if split else completed["next_job"]
                reported_at = began
                if t0 <= ended <= t1:
                    result.evaluations += 1
                    (result.complete_ms if split else result.complete_next_ms).append((ended - began) * 1000)
                    if job is not None:
                        result.job_wait_ms.append((ended - began) * 1000)
                    elif not split:
                        result.empty += 1
                if job is not None:
                    backoff.reset()
                    reported_at = None
                elif not split:  # asked for the next job and got none: wait as the pilot does
                    time.sleep(backoff.next(args["retry_after_s"]))
            except Exception as exc:  # counted and shown; the slot goes on with a fresh acquire
                result.errors.append(f"{type(exc).__name__}: {exc}")
                job = None
                time.sleep(0.05)
    return result


def _optuna_slot(study: Any, window: tuple[float, float]) -> SlotResult:
    from optuna.distributions import FloatDistribution

    t0, t1 = window
    distributions = {"x": FloatDistribution(0.0, 1.0)}
    result = SlotResult()
    while time.perf_counter() < t1:
        try:
            began = time.perf_counter()
            trial = study.ask(distributions)
            asked = time.perf_counter()
            study.tell(trial, 0.5)
            ended = time.perf_counter()
        except Exception as exc:
            result.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.05)
            continue
        if t0 <= ended <= t1:
            result.evaluations += 1
            result.acquire_ms.append((asked - began) * 1000)  # ask: the trial is handed out
            result.complete_ms.append((ended - asked) * 1000)  # tell
            result.complete_next_ms.append((ended - began) * 1000)  # the whole trial
    return result


def _worker(kind: str, args: dict[str, Any], ready: Any, go: Any, start: Any, out: Any) -> None:
    """One load-generator process: its slots as threads, started together at the shared clock."""
    slots: list[dict[str, Any]] = args["slots"]
    study = None
    if kind == "optuna":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = optuna.storages.RDBStorage(args["storage_url"])
        study = optuna.load_study(
            study_name=args["study"], storage=storage, sampler=optuna.samplers.RandomSampler(seed=os.getpid())
        )
    else:
        import hposteer.client.http  # noqa: F401  (imported before the clock starts)
    ready.put(os.getpid())
    go.wait()
    start_at = float(start.value)
    window = (start_at + args["warmup_s"], start_at + args["warmup_s"] + args["window_s"])
    results: list[SlotResult] = []
    lock = threading.Lock()

    def run(slot: dict[str, Any]) -> None:
        while time.perf_counter() < start_at:
            time.sleep(0.001)
        if kind == "optuna":
            result = _optuna_slot(study, window)
        else:
            result = _hposteer_slot(
                slot["url"], args["token"], args["pilot_id"], slot["name"], slot["offset"], {**args, "window": window}
            )
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run, args=(s,)) for s in slots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put([asdict(r) for r in results])


# -- the parent: start, sample, collect ---------------------------------------------------------


class WaitSampler:
    """What the PostgreSQL backends of one database are doing, sampled every ``period_s``:
    the average number of backends per (state, wait event) over the samples."""

    def __init__(self, database_url: str, period_s: float = 0.1):
        self.url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.database = database_url.rsplit("/", 1)[1]
        self.period_s = period_s
        self.counts: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(self.period_s):
                rows = conn.execute(
                    "SELECT state, coalesce(wait_event_type, '') || '/' || coalesce(wait_event, ''), count(*) "
                    "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
                    "AND state IN ('active', 'idle in transaction') GROUP BY 1, 2",
                    (self.database,),
                ).fetchall()
                self.samples += 1
                for state, wait, n in rows:
                    key = f"{state}: {'on CPU' if wait == '/' else wait}"
                    self.counts[key] = self.counts.get(key, 0) + int(n)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=5)
        n = max(self.samples, 1)
        ranked = sorted(self.counts.items(), key=lambda kv: -kv[1])
        return {key: round(value / n, 2) for key, value in ranked if value / n >= 0.05}


def _postgres_label(proc: ProcessCpu, database: str) -> str | None:
    if proc.comm != "postgres" and not proc.cmdline.startswith("postgres"):
        return None
    words = proc.cmdline.split()
    if len(words) > 1 and words[0] == "postgres:" and words[1].endswith(":"):
        del words[1]  # the cluster's name, as Debian sets it: "postgres: 15/main: ..."
    # A backend's title: "postgres: USER DATABASE HOST(PORT) STATE"
    if len(words) >= 4 and words[0] == "postgres:" and ("(" in words[3] or words[3] == "[local]"):
        return "postgres: backends of this database" if words[2] == database else "postgres: other databases"
    if words[:3] == ["postgres:", "autovacuum", "worker"]:
        return "postgres: autovacuum" if database in words else "postgres: other databases"
    return "postgres: server processes (WAL writer, checkpointer, ...)"


def _labeller(database: str, replica_pids: list[int], generators: list[int]) -> Callable[[ProcessCpu], str]:
    me = os.getpid()
    snapshot = cpu_snapshot()
    families = {pid: descendants(snapshot, pid) for pid in replica_pids}

    def label(proc: ProcessCpu) -> str:
        for index, pid in enumerate(replica_pids):
            if proc.pid == pid:
                return f"replica {index + 1}: service process"
            if proc.pid in families[pid] or proc.ppid in families[pid]:
                return f"replica {index + 1}: steering child"
        if proc.pid in generators:
            return "load generators"
        if proc.pid == me:
            return "benchmark parent (sampling)"
        return _postgres_label(proc, database) or f"{OTHER}: {proc.comm}"

    return label


@contextmanager
def _generators(
    kind: str, per_process: list[dict[str, Any]], timeout_s: float
) -> Iterator[tuple[float, Any, list[Any]]]:
    """Start the load-generator processes, wait until all have imported their libraries, start
    the shared clock; yields (start time, results queue, processes). Joined (or killed) afterwards."""
    ctx = multiprocessing.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    start = ctx.Value("d", 0.0)
    procs = [ctx.Process(target=_worker, args=(kind, args, ready, go, start, out)) for args in per_process]
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout_s
        started = 0
        while started < len(procs):
            try:
                ready.get(timeout=0.5)
                started += 1
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode is not None]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f"load generators did not start (exit codes {dead})") from None
        start.value = time.perf_counter() + 0.3
        go.set()
        yield float(start.value), out, procs
        for p in procs:
            p.join(timeout=timeout_s)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(timeout=10)


def _drive(
    kind: str,
    per_process: list[dict[str, Any]],
    config: Config,
    database_url: str,
    replica_pids: list[int],
) -> dict[str, Any]:
    """Run the generators; sample CPU and PostgreSQL over the window; merge the slots' results."""
    database = database_url.rsplit("/", 1)[1]
    load_before = os.getloadavg()
    with _generators(kind, per_process, timeout_s=config.warmup_s + config.window_s + 120) as (start_at, out, procs):
        label = _labeller(database, replica_pids, [p.pid for p in procs if p.pid is not None])
        t0 = start_at + config.warmup_s
        t1 = t0 + config.window_s
        _sleep_until(t0)
        waits = WaitSampler(database_url)
        waits.start()
        before = cpu_snapshot()
        _sleep_until(t1)
        after = cpu_snapshot()
        wait_profile = waits.stop()
        merged = SlotResult()
        for _ in procs:
            for raw in out.get(timeout=config.window_s + 120):
                r = SlotResult(**raw)
                merged.evaluations += r.evaluations
                merged.complete_next_ms += r.complete_next_ms
                merged.complete_ms += r.complete_ms
                merged.acquire_ms += r.acquire_ms
                merged.job_wait_ms += r.job_wait_ms
                merged.empty += r.empty
                merged.errors += r.errors
    cpu, others = _fold_others(cpu_breakdown(before, after, label))
    window = after.at - before.at
    return {
        "evaluations": merged.evaluations,
        "evaluations_per_s": round(merged.evaluations / config.window_s, 1),
        "sampled_window_s": round(window, 2),
        "latency": merged,
        "cpu_cores": cpu,
        "cpu_cores_other_processes": others,
        "postgres_backends": wait_profile,
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }


def _fold_others(cores: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """One "other processes" entry instead of one per command name; the top five apart."""
    folded: dict[str, float] = {}
    others: dict[str, float] = {}
    for key, value in cores.items():
        if key.startswith(f"{OTHER}: "):
            others[key.split(": ", 1)[1]] = value
        else:
            folded[key] = value
    if others:
        folded[OTHER] = round(sum(others.values()), 2)
        folded = dict(sorted(folded.items(), key=lambda kv: (kv[0].startswith(("machine", "steal")), -kv[1])))
    top = dict(sorted(others.items(), key=lambda kv: -kv[1])[:5])
    return folded, top


def _sleep_until(at: float) -> None:
    while (left := at - time.perf_counter()) > 0:
        time.sleep(min(left, 0.05))


def _spread(slots: int, processes: int) -> list[list[int]]:
    """Slot numbers per process: round-robin, so each process has slots of every replica."""
    return [list(range(slots))[i::processes] for i in range(processes)]


def measure_hposteer(replicas: Replicas, config: Config, tasks: int = 1, work_s: float = 0.0) -> dict[str, Any]:
    """hposteer with ``len(replicas.urls)`` replicas: ``tasks`` tasks of one user (one segment each,
    random optimiser), the slots of one pilot, each evaluation ``work_s`` long (0: zero work)."""
    from hposteer.client.http import ApiClient

    urls = replicas.urls
    with (
        ApiClient(urls[0], replicas.user_token) as user,
        ApiClient(urls[0], replicas.pilot_token) as pilot,
    ):
        per_task = max(config.points_per_iteration // tasks, 128)
        task_ids = [
            user.submit_task(
                {
                    "name": f"bench.replicas.{index}",
                    "evaluation_exec": "true",
                    "search_space": SPACE,
                    "optimizer": "random",
                    "max_points": 1_000_000,
                    "n_points_per_iteration": per_task,
                    "min_unevaluated_points": per_task // 2,
                    "n_parallel_evaluation": config.slots,
                    "seed": 1 + index,
                }
            )["id"]
            for index in range(tasks)
        ]
        names = [str(i) for i in range(config.slots)]
        registration = pilot.register_pilot(
            {"name": "bench", "site": "BENCH", "slots": [{"name": s, "gpus": []} for s in names]}
        )
        deadline = time.monotonic() + 60
        for task_id in task_ids:
            while user.get_task(task_id)["progress"]["pending"] < per_task // 2:
                if time.monotonic() > deadline:
                    raise RuntimeError("steering did not generate the first points within 60 s")
                time.sleep(0.1)
        per_process = [
            {
                "slots": [{"name": names[i], "url": urls[i % len(urls)], "offset": i} for i in numbers],
                "token": replicas.pilot_token,
                "pilot_id": registration["pilot_id"],
                "retry_after_s": registration["idle_poll_s"],
                "split_every": config.split_every,
                "empty_wait_s": config.empty_wait_s,
                "warmup_s": config.warmup_s,
                "window_s": config.window_s,
                "work_s": work_s,
            }
            for numbers in _spread(config.slots, config.processes)
        ]
        row = _drive("hposteer", per_process, config, replicas.database_url, replicas.pids)
        done = 0
        for task_id in task_ids:
            done += user.get_task(task_id)["progress"]["done"]
            user.kill_task(task_id)
    merged: SlotResult = row.pop("latency")
    return {
        "system": "hposteer",
        "slots": config.slots,
        "replicas": len(urls),
        "label": f"hposteer, {len(urls)} replica{'s' if len(urls) > 1 else ''}"
        + (f", {tasks} tasks" if tasks > 1 else "")
        + (f", {work_s:g} s of work per evaluation" if work_s else ""),
        "tasks": tasks,
        "work_s": work_s,
        "empty_wait": "pilot backoff" if config.empty_wait_s is None else f"{config.empty_wait_s * 1000:g} ms",
        **row,
        "acquire": latency_stats(merged.acquire_ms),
        "complete_acquire_next": latency_stats(merged.complete_next_ms),
        "complete": latency_stats(merged.complete_ms),
        "job_wait": latency_stats(merged.job_wait_ms),
        "empty_answers": merged.empty,
        "errors": len(merged.errors),
        "first_errors": sorted(set(merged.errors))[:5],
        "server_done_points": done,
        "replica_log_problems": replica_log_problems(replicas)[:10],
    }


def measure_optuna(storage_url: str, config: Config, slots: int | None = None) -> dict[str, Any]:
    """Optuna 5: RDBStorage on ``storage_url``, RandomSampler, zero-work ask/tell loops in ``slots``
    threads (default: as many as hposteer's slots) over the same processes (fewer if fewer slots)."""
    import optuna

    slots = slots or config.slots
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(storage_url)
    optuna.create_study(study_name="bench", storage=storage, sampler=optuna.samplers.RandomSampler(seed=1))
    storage.engine.dispose()
    per_process = [
        {
            "slots": [{"name": str(i)} for i in numbers],
            "storage_url": storage_url,
            "study": "bench",
            "warmup_s": config.warmup_s,
            "window_s": config.window_s,
        }
        for numbers in _spread(slots, min(config.processes, slots))
    ]
    row = _drive("optuna", per_process, config, storage_url, [])
    merged: SlotResult = row.pop("latency")
    return {
        "system": f"optuna {optuna.__version__}",
        "label": f"optuna {optuna.__version__}, {slots} slots",
        "slots": slots,
        "replicas": None,
        **row,
        "ask": latency_stats(merged.acquire_ms),
        "tell": latency_stats(merged.complete_ms),
        "trial": latency_stats(merged.complete_next_ms),
        "errors": len(merged.errors),
        "first_errors": sorted(set(merged.errors))[:5],
    }


# -- the section ---------------------------------------------------------------------------------


def _line(row: dict[str, Any]) -> str:
    if row["system"] == "hposteer":
        a, c, w = row["acquire"], row["complete_acquire_next"], row["job_wait"]
        return (
            f"replicas {row['label']}: "
            f"{row['evaluations_per_s']:>7} evaluations/s; acquire p50 {a['p50_ms']} p99 {a['p99_ms']} ms; "
            f"complete+acquire_next p50 {c['p50_ms']} p99 {c['p99_ms']} ms; job wait p50 {w['p50_ms']} "
            f"p99 {w['p99_ms']} ms; answers without a job {row['empty_answers']}, errors {row['errors']}"
        )
    a, t = row["ask"], row["trial"]
    return (
        f"replicas {row['label']}: {row['evaluations_per_s']:>7} trials/s; ask p50 {a['p50_ms']} ms "
        f"p99 {a['p99_ms']} ms; trial (ask+tell) p50 {t['p50_ms']} ms p99 {t['p99_ms']} ms; errors {row['errors']}"
    )


def _cpu_line(row: dict[str, Any]) -> str:
    parts = [f"{k} {v}" for k, v in row["cpu_cores"].items() if v >= 0.01 or k.startswith("machine")]
    waits = ", ".join(f"{k} {v}" for k, v in row["postgres_backends"].items())
    others = ", ".join(f"{k} {v}" for k, v in row["cpu_cores_other_processes"].items() if v >= 0.01)
    return (
        f"    cores: {'; '.join(parts)}\n    other processes' top: {others or 'none'}\n"
        f"    postgres backends (average): {waits or 'none active'}"
    )


def verdicts(rows: list[dict[str, Any]], slots: int) -> dict[str, Any]:
    """Ratios to Optuna (at the same concurrency, and at its best one measured) and whether each
    target of the issue is met by the rows with the most replicas (zero-work rows only)."""
    ours = [r for r in rows if r["system"] == "hposteer" and not r.get("work_s")]
    theirs = [r for r in rows if r["system"] != "hposteer" and r["evaluations_per_s"] > 0]
    same = next((r for r in theirs if r["slots"] == slots), None)
    best = max(theirs, key=lambda r: r["evaluations_per_s"], default=None)
    ratios: dict[str, float] = {}
    targets: dict[str, bool] = {}
    for row in ours:
        if same is not None:
            ratios[f"{row['label']} / {same['label']}"] = round(row["evaluations_per_s"] / same["evaluations_per_s"], 2)
        if best is not None and best is not same:
            ratios[f"{row['label']} / {best['label']}"] = round(row["evaluations_per_s"] / best["evaluations_per_s"], 2)
    most = max((r["replicas"] for r in ours), default=0)
    for row in (r for r in ours if r["replicas"] == most):
        name = row["label"]
        targets[f"{name}: >= {TARGET_EVALUATIONS_PER_S:g} evaluations/s"] = (
            row["evaluations_per_s"] >= TARGET_EVALUATIONS_PER_S
        )
        if same is not None:
            targets[f"{name}: >= {TARGET_RATIO:g}x Optuna's trials/s ({same['label']})"] = (
                row["evaluations_per_s"] >= TARGET_RATIO * same["evaluations_per_s"]
            )
        for key, what in (("acquire", "plain acquire"), ("complete_acquire_next", "complete+acquire_next")):
            p99 = row[key]["p99_ms"]
            targets[f"{name}: {what} p99 <= {TARGET_ACQUIRE_P99_MS:g} ms"] = (
                p99 is not None and p99 <= TARGET_ACQUIRE_P99_MS
            )
    return {"ratios": ratios, "targets": targets}


def _show(row: dict[str, Any]) -> dict[str, Any]:
    print(_line(row), flush=True)
    print(_cpu_line(row), flush=True)
    return row


def run(config: Config | None = None, *, quick: bool = False, admin_url: str | None = None) -> dict[str, Any]:
    """Every configuration one after the other, each on a fresh database (dropped afterwards) with
    fresh replicas; prints a line each, the ratios and the verdicts; returns the results section."""
    config = config or Config.for_run(quick)
    runs = [(count, 1, 0.0) for count in config.replicas]
    if config.spread_tasks > 1 and config.replicas:
        runs.append((max(config.replicas), config.spread_tasks, 0.0))
    if config.paced_work_s > 0 and config.replicas:
        runs.append((max(config.replicas), 1, config.paced_work_s))
    env = {} if config.db_pool_size is None else {"db_pool_size": str(config.db_pool_size)}
    rows = []
    for count, tasks, work_s in runs:
        with (
            postgres_database(f"{config.database_prefix}_hposteer", admin_url) as url,
            running_replicas(count, url, **env) as replicas,
        ):
            rows.append(_show(measure_hposteer(replicas, config, tasks, work_s)))
    if config.optuna:
        for slots in (config.slots, *config.optuna_reference_slots):
            with postgres_database(f"{config.database_prefix}_optuna", admin_url) as url:
                rows.append(_show(measure_optuna(url, config, slots)))
    result = verdicts(rows, config.slots)
    for pair, ratio in result["ratios"].items():
        print(f"replicas ratio {pair}: {ratio}", flush=True)
    for target, met in result["targets"].items():
        print(f"replicas target {target}: {'met' if met else 'NOT met'}", flush=True)
    return {"config": asdict(config), "memory_gib": memory_gib(), "rows": rows, **result}
