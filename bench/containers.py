"""(d) What real Docker containers cost: steering containers, and pilots with ``--runtime docker``.

1. **Iteration latency with a steering container**: as bench/latency.py (one task,
   nPointsPerIteration=1, nParallelEvaluation=1, from `complete` returning to `acquire` handing out
   the next point), but the task is steered by ``hposteer/steering-nevergrad`` running
   ``hpogrid generate`` once per iteration (src/hposteer/service/steering/containers/runner.py): warm (the
   default: one container per segment, a ``docker exec`` per run, nevergrad imported once by the
   image's steering server) and cold (``steering_container_warm=0``: a fresh container per run,
   as iDDS does). ``first_point_ms`` is the first iteration, whose container starts cold. The line is
   wrapped in ``/bin/sh -c`` because a bare ``hpogrid generate`` line runs the builtin library
   even with a steering container (docs/steering.md); the task's optimiser must read ``container``.
2. **Per-evaluation overhead of the pilot's runtime**, ``docker`` against ``local``:

   a. *start*: ``make_runtime(NAME).start(...)`` driven directly with a tiny payload that stamps
      ``time.time()`` when its shell starts and once it has read ``input.json``, then writes
      ``output.json`` and stamps its exit; measured from the moment ``start`` is called. The
      same stamps give the time from the payload's exit to ``Payload.wait`` returning.
   b. *report*: a real pilot (``hposteer pilot --runtime NAME``) against the service; the payload
      writes ``output.json`` with ``loss = time.time()`` as its last act, and the attempt's
      ``ended_at`` (database time, same host) marks the `complete` being accepted.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import Service, running_service
from hposteer.client.http import ApiClient

STEERING_IMAGE = "hposteer/steering-nevergrad"
EVALUATION_IMAGE = "hposteer/evaluation-sklearn-digits"
STEERING_EXEC = (
    "/bin/sh -c 'hpogrid generate --n_point %NUM_POINTS --max_point %MAX_POINTS --infile %IN --outfile %OUT "
    "-l nevergrad'"
)
SPACE = {
    "x1": {"method": "uniform", "dimension": {"low": -5, "high": 5}},
    "x2": {"method": "uniform", "dimension": {"low": -5, "high": 5}},
    "lr": {"method": "loguniform", "dimension": {"low": 1e-5, "high": 1e-1}},
    "depth": {"method": "uniformint", "dimension": {"low": 1, "high": 12}},
    "act": {"method": "categorical", "dimension": {"categories": ["relu", "tanh", "gelu"]}},
}
TARGET_ITERATION_S = 2.0
POLL_S = 0.005  # acquire polling; coarser than latency.py's 0.5 ms so that 2 cores are left to docker

# The payload: /usr/bin/python3 in both runtimes (the host's and the image's Debian bookworm 3.11), so
# the interpreter's start costs the same on both sides and only the runtime differs.
_STAMP_PY = (
    "import json, time; json.load(open('input.json')); r = time.time(); "
    "json.dump({'loss': 0.0}, open('output.json', 'w')); "
    "open('t_read', 'w').write(repr(r)); open('t_exit', 'w').write(repr(time.time()))"
)
START_PAYLOAD = f"date +%s.%N > t_shell; /usr/bin/python3 -c {shlex.quote(_STAMP_PY)}"
_REPORT_PY = (
    "import json, time; json.load(open('input.json')); json.dump({'loss': time.time()}, open('output.json', 'w'))"
)
REPORT_PAYLOAD = f"/usr/bin/python3 -c {shlex.quote(_REPORT_PY)}"


def _stats(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
        "max_ms": round(ordered[-1], 1),
    }


# -- 1. steering container --------------------------------------------------------------------


def _acquire(api: ApiClient, pilot_id: int, deadline_s: float = 120.0) -> tuple[dict[str, Any], float]:
    give_up = time.monotonic() + deadline_s
    while True:
        job = api.acquire(pilot_id, "0")["job"]
        if job is not None:
            return dict(job), time.perf_counter()
        if time.monotonic() > give_up:
            raise RuntimeError(f"no point to acquire within {deadline_s:g} s: did the steering container fail?")
        time.sleep(POLL_S)


def steering_latency(service: Service, warmup: int, samples: int) -> dict[str, Any]:
    """Iterations timed from `complete` returning to the next point being acquirable."""
    site = "CONTAINERSTEER"
    with (
        ApiClient(service.url, service.user_token) as user,
        ApiClient(service.url, service.pilot_token) as pilot,
    ):
        task = user.submit_task(
            {
                "name": "bench.containers.steering",
                "evaluation_exec": "true",
                "search_space": SPACE,
                "steering_container": STEERING_IMAGE,
                "steering_exec": STEERING_EXEC,
                "max_points": warmup + samples + 1,
                "n_points_per_iteration": 1,
                "n_parallel_evaluation": 1,
                "seed": 1,
                "site": site,
            }
        )
        if task["optimizer"] != "container":
            raise RuntimeError(f"the task is steered by {task['optimizer']!r}, not by its container")
        pilot_id = pilot.register_pilot({"name": "bench", "site": site, "slots": [{"name": "0", "gpus": []}]})[
            "pilot_id"
        ]
        first_started = time.perf_counter()
        job, claimable = _acquire(pilot, pilot_id)
        first_ms = (claimable - first_started) * 1000
        latencies: list[float] = []
        for i in range(warmup + samples):
            loss = float((job["params"]["x1"] - 1) ** 2 + (job["params"]["x2"] + 2) ** 2)
            pilot.complete(job["attempt_id"], {"lease_token": job["lease_token"], "outcome": "success", "loss": loss})
            reported = time.perf_counter()
            job, claimable = _acquire(pilot, pilot_id)
            if i >= warmup:
                latencies.append((claimable - reported) * 1000)
        user.kill_task(task["id"])
    row: dict[str, Any] = {
        "image": STEERING_IMAGE,
        "steering_exec": STEERING_EXEC,
        "warmup": warmup,
        "samples": samples,
        **_stats(latencies),
        "first_point_ms": round(first_ms, 1),
        "target_s": TARGET_ITERATION_S,
    }
    row["target_met"] = row["p95_ms"] < TARGET_ITERATION_S * 1000
    return row


def steering_breakdown(samples: int) -> dict[str, Any]:
    """Where an iteration goes: a bare container of the steering image, and one importing nevergrad.

    Run through the Docker SDK with the runner's CPU limit and no network, created, started,
    waited for and removed as src/hposteer/service/steering/containers/runner.py does (without its hardening).
    """
    import docker

    client = docker.from_env()
    rows: dict[str, Any] = {}
    try:
        for label, argv in (
            ("container_true", ["true"]),
            ("container_import_nevergrad", ["python", "-c", "import nevergrad"]),
        ):
            times: list[float] = []
            for _ in range(samples + 1):  # the first one is a warm-up
                started = time.perf_counter()
                container = client.containers.create(
                    STEERING_IMAGE, argv, network_mode="none", nano_cpus=int(1e9), detach=True
                )
                try:
                    container.start()
                    code = container.wait(timeout=120)["StatusCode"]
                finally:
                    container.remove(force=True)
                if code != 0:
                    raise RuntimeError(f"{STEERING_IMAGE} {argv}: exit code {code}")
                times.append((time.perf_counter() - started) * 1000)
            rows[label] = _stats(times[1:])
    finally:
        client.close()
    return rows


# -- 2a. runtime start ------------------------------------------------------------------------


def _stamp(path: Path) -> float:
    return float(path.read_text().strip())


def start_overhead(runtime_name: str, warmup: int, samples: int) -> dict[str, Any]:
    """From `Runtime.start` being called to the payload's shell starting and to its reading input.json."""
    from hposteer.client.pilot.runtimes.base import RuntimeOptions
    from hposteer.client.pilot.runtimes.registry import make_runtime

    runtime = make_runtime(runtime_name, RuntimeOptions(pilot_name=f"bench-containers-{os.getpid()}", log=print))
    shell_ms: list[float] = []
    read_ms: list[float] = []
    start_call_ms: list[float] = []
    exit_seen_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hposteer-bench-rt-") as tmp:
        for i in range(warmup + samples):
            workdir = Path(tmp) / f"run{i}"
            workdir.mkdir()
            (workdir / "input.json").write_text(json.dumps({"x": i}))
            called = time.time()
            payload = runtime.start(
                START_PAYLOAD,
                workdir,
                {"HPOSTEER_BENCH": "1"},
                workdir / "payload.log",
                image=EVALUATION_IMAGE,
                attempt_id=i,
            )
            returned = time.time()
            code = payload.wait(120.0)
            seen = time.time()
            if code != 0:
                log = (workdir / "payload.log").read_text(errors="replace")
                raise RuntimeError(f"runtime {runtime_name}: the payload exited with {code}: {log[-2000:]}")
            if i < warmup:
                continue
            shell_ms.append((_stamp(workdir / "t_shell") - called) * 1000)
            read_ms.append((_stamp(workdir / "t_read") - called) * 1000)
            start_call_ms.append((returned - called) * 1000)
            exit_seen_ms.append((seen - _stamp(workdir / "t_exit")) * 1000)
    return {
        "runtime": runtime_name,
        "image": EVALUATION_IMAGE if runtime_name != "local" else None,
        "samples": samples,
        "to_input_read": _stats(read_ms),
        "to_shell": _stats(shell_ms),
        "start_call": _stats(start_call_ms),
        "exit_to_wait_returned": _stats(exit_seen_ms),
    }


# -- 2b. payload exit to the loss being recorded ----------------------------------------------


def report_overhead(service: Service, runtime_name: str, warmup: int, samples: int) -> dict[str, Any]:
    """A real pilot: from the payload writing output.json (the loss is that moment) to the attempt's ``ended_at``."""
    site = f"CONTAINERS{runtime_name.upper()}"
    total = warmup + samples
    with (
        tempfile.TemporaryDirectory(prefix="hposteer-bench-pilot-") as tmp,
        ApiClient(service.url, service.user_token) as user,
    ):
        task = user.submit_task(
            {
                "name": f"bench.containers.report.{runtime_name}",
                "evaluation_exec": REPORT_PAYLOAD,
                "evaluation_container": EVALUATION_IMAGE,
                "search_space": SPACE,
                "optimizer": "random",
                "max_points": total,
                "n_points_per_iteration": total,
                "n_parallel_evaluation": 1,
                "seed": 1,
                "site": site,
            }
        )
        log = (Path(tmp) / "pilot.log").open("wb")
        pilot = subprocess.Popen(
            [sys.executable, "-m", "hposteer.client.cli", "pilot", "--server", service.url,
             "--token", service.pilot_token, "--site", site, "--slots", "1", "--runtime", runtime_name,
             "--workdir", str(Path(tmp) / "work"), "--name", f"bench-{runtime_name}-{os.getpid()}",
             "--exit-when-idle", "30"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60 + 10 * total
            while True:
                progress = user.get_task(task["id"])["progress"]
                if progress["done"] + progress["failed"] >= total:
                    break
                if pilot.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pilot {runtime_name}: {(Path(tmp) / 'pilot.log').read_text()[-3000:]}")
                time.sleep(0.5)
        finally:
            pilot.terminate()
            pilot.wait(timeout=60)
            log.close()
        if progress["failed"]:
            raise RuntimeError(f"pilot {runtime_name}: {progress['failed']} points failed")
        points = sorted(user.list_points(task["id"], limit=total)["points"], key=lambda p: p["id"])
        delays: list[float] = []
        for point in points[warmup:]:
            detail = user.get_point(task["id"], point["id"])
            attempt = detail["attempts"][-1]
            delays.append((attempt["ended_at"] - detail["loss"]) * 1000)
    return {"runtime": runtime_name, "samples": samples, **_stats(delays)}


def unavailable() -> str | None:
    """Why these measurements cannot run here (no Docker engine, an image missing), or None."""
    try:
        import docker
        import docker.errors

        client = docker.from_env()
    except Exception as exc:  # the SDK missing, or no engine to talk to
        return f"no Docker engine: {exc}"
    try:
        for image in (STEERING_IMAGE, EVALUATION_IMAGE):
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                return f"image {image} is not on this machine (make images)"
    except docker.errors.DockerException as exc:
        return f"the Docker engine does not answer: {exc}"
    finally:
        client.close()
    return None


# -- all of it --------------------------------------------------------------------------------


def run(quick: bool) -> dict[str, Any]:
    """Every measurement of this file, printed as it comes; the section of bench/results/*.json."""
    steer_warmup, steer_samples = (1, 5) if quick else (3, 20)
    rt_warmup, rt_samples = (1, 5) if quick else (2, 30)
    with running_service() as service:
        steering = steering_latency(service, steer_warmup, steer_samples)
    with running_service(steering_container_warm="0") as service:
        steering["cold"] = steering_latency(service, steer_warmup, steer_samples)
    steering["breakdown"] = steering_breakdown(3 if quick else 10)
    for mode, row in (("warm", steering), ("cold", steering["cold"])):
        print(
            f"containers steering {STEERING_IMAGE} {mode}: p50 {row['p50_ms']} ms  p95 {row['p95_ms']} ms  "
            f"max {row['max_ms']} ms  first point {row['first_point_ms']} ms  ({steer_samples} iterations; "
            f"target < {TARGET_ITERATION_S:g} s {'met' if row['target_met'] else 'NOT met'})",
            flush=True,
        )
    parts = steering["breakdown"]
    print(
        f"containers steering breakdown: bare container p50 {parts['container_true']['p50_ms']} ms, "
        f"container importing nevergrad p50 {parts['container_import_nevergrad']['p50_ms']} ms",
        flush=True,
    )
    start_rows = []
    for name in ("local", "docker"):
        row = start_overhead(name, rt_warmup, rt_samples)
        print(
            f"containers start   {name:<6}: start -> input read p50 {row['to_input_read']['p50_ms']} ms  "
            f"p95 {row['to_input_read']['p95_ms']} ms  (shell p50 {row['to_shell']['p50_ms']} ms; "
            f"exit -> wait p50 {row['exit_to_wait_returned']['p50_ms']} ms)",
            flush=True,
        )
        start_rows.append(row)
    report_rows = []
    for name in ("local", "docker"):
        with running_service() as service:
            row = report_overhead(service, name, rt_warmup, rt_samples)
        print(
            f"containers report  {name:<6}: output.json -> complete accepted p50 {row['p50_ms']} ms  "
            f"p95 {row['p95_ms']} ms  max {row['max_ms']} ms",
            flush=True,
        )
        report_rows.append(row)
    return {"steering": steering, "start": start_rows, "report": report_rows}
