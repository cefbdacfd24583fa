"""The chaos soak (docs/reliability.md#the-chaos-soak-make-soak): tasks of several users evaluated by pilot processes
while pilots and the service are SIGKILLed on a seeded schedule; then a drain and the checks
of tests/support/invariants.py plus the soak's own (time to pending after each pilot kill, the
drain bound).
"""

from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from bench.soak import fake_eval
from bench.soak.supervisor import PilotProcess, ServiceProcess, Timeline, Timings, free_port, submit_phpo
from tests.support import invariants
from tests.support.invariants import Outage, Verdict

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Profile:
    seconds: float = 180.0  # of faults
    users: int = 2
    tasks_per_user: int = 2
    points_per_task: int = 100
    pilots: int = 4
    slots: int = 3
    pilot_kill_every_s: float = 5.0  # ± pilot_kill_jitter_s
    pilot_kill_jitter_s: float = 2.0
    respawn_after_s: float = 1.0
    service_kill_every_s: float = 30.0  # 0: never
    service_down_s: tuple[float, float] = (0.5, 2.0)
    refill: bool = True  # a user whose task ended submits another while faults go on
    checkpoints: bool = True  # tasks save ckpt/ every 0.6 s (--checkPointInterval 0.01)
    db: str = "sqlite"  # or postgresql (a fresh database on 127.0.0.1:5432, dropped afterwards)
    seed: int = 0
    timings: Timings = field(default_factory=Timings)
    drain_timeout_s: float = 120.0
    steering_time_s: float = 10.0  # the steering term of the drain bound
    slack_s: float = 0.5  # for process scheduling on a loaded 2-core machine

    @property
    def drain_bound_s(self) -> float:
        """The drain bound (docs/reliability.md): 3 x (lease TTL + reaper + max evaluation) + steering time."""
        t = self.timings
        return 3 * (t.lease_ttl_s + t.reaper_interval_s + fake_eval.SLEEP_S[1]) + self.steering_time_s


SHORT = Profile(
    seconds=20.0, users=1, tasks_per_user=2, points_per_task=30, pilots=2, slots=2, pilot_kill_every_s=4.0,
    pilot_kill_jitter_s=1.0, service_kill_every_s=9.0, service_down_s=(0.3, 0.8), refill=False,
)  # fmt: skip


@dataclass
class Outcome:
    ok: bool
    report: invariants.Report
    figures: dict[str, Any]
    run_dir: Path

    def text(self) -> str:
        lines = [f"{k}: {json.dumps(v) if isinstance(v, dict | list) else v}" for k, v in self.figures.items()]
        return "\n".join([*lines, self.report.describe()])


@contextmanager
def _database(db: str) -> Iterator[str | None]:
    if db == "sqlite":
        yield None
        return
    from sqlalchemy import create_engine, text

    name = f"hposteer_soak_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Soak:
    def __init__(self, profile: Profile, run_dir: Path, database_url: str | None, log: Any = print):
        self.p, self.dir, self.say = profile, run_dir, log
        self.rng = random.Random(profile.seed)
        self.timeline = Timeline(run_dir / "timeline.jsonl")
        self.service = ServiceProcess(
            run_dir / "data", free_port(), profile.timings, database_url=database_url, log=run_dir / "service.log"
        )
        self.database_url = database_url
        self.users: dict[str, str] = {}
        self.tasks: dict[int, str] = {}  # task id -> owner
        self.pilots: list[PilotProcess | None] = [None] * profile.pilots
        self.generation = [0] * profile.pilots
        self.respawn_at: dict[int, float] = {}
        self.outages: list[Outage] = []
        self.pilot_kills: dict[str, float] = {}  # pilot name -> time of its SIGKILL

    # -- processes --------------------------------------------------------------------------------

    def start_pilot(self, index: int) -> None:
        self.generation[index] += 1
        name = f"soak-p{index}-g{self.generation[index]}"
        pilot = PilotProcess(
            name, self.service.url, self.pilot_token, self.dir / "pilots" / f"p{index}", self.dir / f"{name}.log",
            slots=self.p.slots, extra_env={"SOAK_SEED": str(self.p.seed)},
        )  # fmt: skip
        pilot.start()
        self.pilots[index] = pilot
        self.timeline.record("pilot_start", name=name, pid=pilot.pid)

    def kill_pilot(self, index: int) -> None:
        pilot = self.pilots[index]
        assert pilot is not None
        pilot.kill(payloads=True)
        self.pilot_kills[pilot.name] = self.timeline.record("pilot_kill", name=pilot.name).t
        self.pilots[index] = None

    def kill_service(self) -> None:
        down = self.rng.uniform(*self.p.service_down_s)
        killed = self.timeline.record("service_kill", down_s=round(down, 2)).t
        self.service.kill()
        time.sleep(down)
        self.service.start()
        self.outages.append(Outage(killed, self.timeline.record("service_ready").t))

    # -- tasks ------------------------------------------------------------------------------------

    def submit(self, owner: str) -> int:
        project = self.dir / "projects" / f"{owner}-{len(self.tasks)}"
        project.mkdir(parents=True)
        shutil.copy(Path(fake_eval.__file__), project / "eval.py")
        (project / "space.json").write_text(json.dumps(fake_eval.SPACE))
        n = self.p.points_per_task
        config: dict[str, Any] = {
            "outDS": f"user.{owner}.soak.{len(self.tasks)}", "evaluationExec": "python3 eval.py",
            "searchSpaceFile": "space.json", "optimizer": "random", "seed": self.rng.randrange(2**31),
            "maxPoints": n, "nPointsPerIteration": 10, "minUnevaluatedPoints": 5, "nParallelEvaluation": 6,
            "maxEvaluationJobs": 3 * n,
        }  # fmt: skip
        if self.p.checkpoints:
            config.update(checkPointToSave="ckpt", checkPointInterval=0.01)
        for attempt in range(5):
            try:
                task_id = submit_phpo(project, self.service.url, self.users[owner], config)
                break
            except RuntimeError as exc:  # the service was down: try again
                self.say(f"submission failed ({exc}); again")
                time.sleep(1 + attempt)
        else:
            raise RuntimeError("could not submit a task")
        self.tasks[task_id] = owner
        self.timeline.record("task_submitted", task_id=task_id, owner=owner)
        return task_id

    def running_tasks(self) -> dict[int, str] | None:
        """Tasks still running, or None if the service did not answer."""
        states: dict[int, str] = {}
        try:
            for owner, token in self.users.items():
                headers = {"Authorization": f"Bearer {token}"}
                answer = httpx.get(self.service.url + "/api/v1/tasks?limit=1000", headers=headers, timeout=5)
                answer.raise_for_status()
                states.update({t["id"]: owner for t in answer.json()["tasks"] if t["state"] == "running"})
        except httpx.HTTPError:
            return None
        return {t: o for t, o in states.items() if t in self.tasks}

    # -- the run ----------------------------------------------------------------------------------

    def run(self) -> Outcome:
        p = self.p
        self.say(f"soak: seed {p.seed}, {p.db}, {p.seconds:g} s of faults, run dir {self.dir}")
        self.service.start()
        self.pilot_token = self.service.token("pilot", "soak-site")
        for u in range(p.users):
            owner = f"user{u}"
            self.users[owner] = self.service.token("user", owner)
        for owner in self.users:
            for _ in range(p.tasks_per_user):
                self.submit(owner)
        for i in range(p.pilots):
            self.start_pilot(i)
        self._faults()
        faults = ("pilot_kill", "service_kill", "service_ready")
        last_fault = max((e.t for e in self.timeline.events if e.kind in faults), default=time.time())
        for index in list(self.respawn_at):
            del self.respawn_at[index]
            self.start_pilot(index)
        self.timeline.record("drain_start")
        drain_started = time.monotonic()
        drained = self._drain()
        drain_s = time.monotonic() - drain_started
        self.timeline.record("drain_end", drained=drained, seconds=round(drain_s, 2))
        for pilot in self.pilots:
            if pilot is not None:
                pilot.stop(timeout_s=10)
        self.service.stop()
        return self._check(last_fault, drained, drain_s)

    def _faults(self) -> None:
        """The fault schedule, for ``seconds``: pilot kills (respawned), service kills, refills."""
        p = self.p
        started = time.monotonic()
        end = started + p.seconds
        next_pilot_kill = started + self._pilot_gap()
        next_service_kill = started + p.service_kill_every_s * self.rng.uniform(0.8, 1.2)
        next_refill = started + 2.0
        while time.monotonic() < end:
            now = time.monotonic()
            for index, due in list(self.respawn_at.items()):
                if now >= due:
                    del self.respawn_at[index]
                    self.start_pilot(index)
            if now >= next_pilot_kill:
                self._kill_a_pilot()
                next_pilot_kill = time.monotonic() + self._pilot_gap()
            if p.service_kill_every_s and now >= next_service_kill:
                self.kill_service()
                next_service_kill = time.monotonic() + p.service_kill_every_s * self.rng.uniform(0.8, 1.2)
            if p.refill and now >= next_refill and end - now > 30:
                self._refill()
                next_refill = time.monotonic() + 2.0
            time.sleep(0.05)

    def _kill_a_pilot(self) -> None:
        alive = [i for i, pilot in enumerate(self.pilots) if pilot is not None]
        if alive:
            index = self.rng.choice(alive)
            self.kill_pilot(index)
            self.respawn_at[index] = time.monotonic() + self.p.respawn_after_s

    def _pilot_gap(self) -> float:
        return max(0.5, self.rng.uniform(-1, 1) * self.p.pilot_kill_jitter_s + self.p.pilot_kill_every_s)

    def _refill(self) -> None:
        running = self.running_tasks()
        if running is None:
            return
        for owner in self.users:
            mine = sum(1 for o in running.values() if o == owner)
            for _ in range(self.p.tasks_per_user - mine):
                self.submit(owner)

    def _drain(self) -> bool:
        deadline = time.monotonic() + self.p.drain_timeout_s
        while time.monotonic() < deadline:
            if self.running_tasks() == {}:
                return True
            time.sleep(0.2)
        return False

    # -- checks -----------------------------------------------------------------------------------

    def _check(self, last_fault: float, drained: bool, drain_s: float) -> Outcome:
        p, t = self.p, self.p.timings
        snap = invariants.read(self.database_url or self.service.data_dir)
        report = invariants.check(
            snap, task_ids=list(self.tasks), expected_loss=fake_eval.loss_of,
            always_fails=lambda params: fake_eval.always_fails(params, p.seed),
            lease_ttl_s=t.lease_ttl_s, reaper_interval_s=t.reaper_interval_s, outages=self.outages, slack_s=p.slack_s,
        )  # fmt: skip
        report.verdicts.append(Verdict(f"drain within {p.drain_timeout_s:g} s", drained, 1, [] if drained else
                                       [f"tasks still running after {p.drain_timeout_s:g} s"]))  # fmt: skip
        report.verdicts.append(self._drain_bound(snap, last_fault))
        kills, worst = self._time_to_pending(snap)
        report.verdicts.append(kills)
        report.verdicts.append(log_verdict(self.dir))
        points = [q for q in snap.points if q["task_id"] in self.tasks]
        figures: dict[str, Any] = {
            "seed": p.seed,
            "database": p.db,
            "fault_seconds": p.seconds,
            "tasks": len(self.tasks),
            "points": len(points),
            "points_by_state": report.figures["points_by_state"],
            "attempts": report.figures["attempts"],
            "attempts_by_state": report.figures["attempts_by_state"],
            "failures_by_class": report.figures["failures_by_class"],
            "always_failing_points": sum(fake_eval.always_fails(q["params"], p.seed) for q in points),
            "pilot_kills": len(self.timeline.of("pilot_kill")),
            "service_kills": len(self.timeline.of("service_kill")),
            "max_time_to_pending_after_pilot_kill_s": None if worst is None else round(worst, 2),
            "r6_bound_s": t.lease_ttl_s + t.reaper_interval_s,
            "max_expiry_after_last_contact_s": _round(report.figures["max_expiry_after_last_contact_s"]),
            "drain_s": round(drain_s, 1),
            "drain_bound_s": round(p.drain_bound_s, 2),
            "invariants": report.summary(),
        }
        return Outcome(report.ok, report, figures, self.dir)

    def _drain_bound(self, snap: invariants.Snapshot, last_fault: float) -> Verdict:
        """Points that existed at the last fault are terminal within the drain bound."""
        bound = self.p.drain_bound_s
        v = Verdict(f"points of the last fault terminal within {bound:g} s", True, 0)
        for q in snap.points:
            if q["task_id"] not in self.tasks or q["created_at"] > last_fault:
                continue
            v.checked += 1
            finished = q["finished_at"]
            if finished is None or finished - last_fault > bound:
                late = "never" if finished is None else f"{finished - last_fault:.1f} s after the last fault"
                v.problems.append(f"task {q['task_id']} point {q['number']} terminal {late}")
        v.ok = not v.problems
        return v

    def _time_to_pending(self, snap: invariants.Snapshot) -> tuple[Verdict, float | None]:
        """After each pilot SIGKILL, its attempts were expired (point back to pending) within TTL + reaper."""
        t = self.p.timings
        bound = t.lease_ttl_s + t.reaper_interval_s + self.p.slack_s
        names = {row["id"]: row["name"] for row in snap.pilots}
        v = Verdict("R6 time to pending after each pilot SIGKILL", True, 0)
        worst: float | None = None
        for a in snap.attempts:
            name = names.get(a["pilot_id"])
            killed = self.pilot_kills.get(name or "")
            if killed is None or a["task_id"] not in self.tasks or a["state"] != "expired":
                continue
            if a["started_at"] > killed or a["ended_at"] < killed:
                continue  # not running when its pilot was killed
            if any(o.start <= a["ended_at"] and killed <= o.end for o in self.outages):
                continue  # the service was down in that window: no reaper ran
            v.checked += 1
            delay = float(a["ended_at"]) - killed
            worst = delay if worst is None else max(worst, delay)
            if delay > bound:
                v.problems.append(f"attempt {a['id']} of {name}: pending {delay:.2f} s after the kill (> {bound:g})")
        v.ok = not v.problems
        return v, worst


_THREAD = re.compile(r"^Exception in thread ([A-Za-z_]+)")
# "httpx.ReadError: ...", "starlette.requests.ClientDisconnect", "ValueError: ..."
_EXCEPTION = re.compile(r"^((?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*|[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt))(?::|$)")
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d ")


def unhandled_exceptions(text: str) -> list[str]:
    """Each traceback printed to a process's output: "<thread> died: <last exception type>"."""
    found: list[str] = []
    where: str | None = None
    exception = "?"
    for line in [*text.splitlines(), "0000-00-00 end"]:
        thread = _THREAD.match(line)
        if thread or (where is None and line.startswith("Traceback (most recent call last)")):
            if where is not None:
                found.append(f"{where}: {exception}")
            where, exception = (f"thread {thread.group(1)}" if thread else "main"), "?"
        elif where is not None:
            match = _EXCEPTION.match(line)
            if match:
                exception = match.group(1)
            elif _LOG_LINE.match(line):
                found.append(f"{where}: {exception}")
                where = None
    return found


def log_verdict(run_dir: Path) -> Verdict:
    """docs/reliability.md: no unhandled exception in the service's or any pilot's output, no 500."""
    v = Verdict("no unhandled exception or 500 in the logs", True, 0)
    seen: dict[str, int] = {}
    for path in sorted(run_dir.glob("*.log")):
        v.checked += 1
        text = path.read_text(errors="replace")
        kind = "service" if path.name == "service.log" else "pilot"
        for what in unhandled_exceptions(text):
            seen[f"{kind} {what}"] = seen.get(f"{kind} {what}", 0) + 1
        if kind == "service" and re.search(r'" 500\b', text):
            seen["service answered 500"] = seen.get("service answered 500", 0) + 1
    v.problems = [f"{what} (x{n})" for what, n in sorted(seen.items())]
    v.ok = not v.problems
    return v


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def run_soak(profile: Profile, run_dir: Path | None = None, log: Any = print) -> Outcome:
    """Run one soak; the run directory (logs, timeline, SQLite) is kept when ``run_dir`` is given."""
    keep = run_dir is not None
    directory = run_dir or Path(tempfile.mkdtemp(prefix="hposteer-soak-"))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "profile.json").write_text(json.dumps(asdict(profile), indent=2))
    soak: Soak | None = None
    try:
        with _database(profile.db) as url:
            soak = Soak(profile, directory, url, log)
            try:
                outcome = soak.run()
            finally:
                for pilot in soak.pilots:
                    if pilot is not None and pilot.alive():
                        pilot.kill(payloads=True)
                if soak.service.alive():
                    soak.service.kill()
    except BaseException:
        log(f"soak aborted; logs kept in {directory}")
        raise
    if outcome.ok and not keep:
        shutil.rmtree(directory, ignore_errors=True)
    return outcome


__all__ = ["SHORT", "Outcome", "Profile", "replace", "run_soak"]
