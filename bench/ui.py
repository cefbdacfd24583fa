"""(f) The web UI at 100,000 points in one task: how long each page and each JSON endpoint takes.

One task of 100,000 points (bench/ui_data.py: 95 % done, 1 % failed after three attempts, 8 % of
the done ones retried once, 40 running, 3,460 pending; ~108,000 attempts; 10,000 steering runs;
12 pilots at 3 sites) is written into a fresh database, then the real service runs on it
(`python -m hposteer.service serve`, steering in its child process), and a client logged in through the
login form loads, over real HTTP, each page and each endpoint the task page's scripts call,
``LOADS`` times each in turn, without ``If-None-Match`` (every load is answered in full).

Two rounds:

* **idle**: nothing changes while pages load, so after the first load of each URL the service's
  cache (keyed by the task's signature) answers; the first load (cold) is reported apart;
* **live**: a pilot of the benchmark completes 20 points per second through the API while pages
  load, and every load waits for a new completion first, so the task's signature has always moved:
  summaries are computed afresh, except the sampled ones (parallel coordinates, importance,
  steering durations), which a task this big recomputes at most every 10 s by design.

``task page, complete`` is the wall time of the page's HTML followed by everything its scripts
load first, fetched 6 at a time as a browser does.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.harness import _free_port, _stop, _wait_healthy, machine
from bench.ui_data import fill
from hposteer.client.http import ApiClient
from hposteer.service.config import Settings

POINTS = 100_000
LOADS = 30
TARGET_P95_MS = 300.0
RATE = 20.0  # completions per second in the live round


def _stats(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 1),
        "max_ms": round(ordered[-1], 1),
    }


@contextmanager
def _service(data_dir: Path, database_url: str | None) -> Iterator[str]:
    port = _free_port()
    log_path = data_dir / "service.log"
    database = ["--database-url", database_url] if database_url else []
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hposteer.service", "serve", "--data-dir", str(data_dir), *database,
             "--port", str(port), "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(url, process, log_path)
            yield url
        finally:
            _stop(process)


def _login(url: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    nonce = re.search(r'name="nonce" value="([^"]+)"', client.get("/ui/login").text)
    assert nonce is not None
    answer = client.post("/ui/login", data={"token": token, "nonce": nonce.group(1), "next": "/ui/tasks"})
    assert answer.status_code == 303 and "hposteer_session" in client.cookies, answer.text
    return client


def _urls(task_id: int, points: int) -> dict[str, str]:
    last_page = -(-points // 50)
    api = f"/ui/api/tasks/{task_id}"
    return {
        "task list (page)": "/ui/tasks",
        "task page (HTML)": f"/ui/tasks/{task_id}",
        "task live part (HTML fragment)": f"/ui/tasks/{task_id}/live",
        "history (JSON)": f"{api}/history",
        "parallel coordinates (JSON)": f"{api}/parcoords",
        "importance (JSON)": f"{api}/importance",
        "steering runs (JSON)": f"{api}/steering",
        "points, page 1 by number": f"{api}/points",
        "points, last page by number": f"{api}/points?page={last_page}",
        "points, page 1 by loss": f"{api}/points?sort=loss",
        "points, page 1000 by loss": f"{api}/points?sort=loss&page=1000",
        "points, failed only, by loss desc": f"{api}/points?state=failed&sort=loss&order=desc",
        "points, by state, page 30": f"{api}/points?sort=state&page=30",
        "point page (HTML)": f"/ui/tasks/{task_id}/points/{points // 2}",
        "pilots and sites (page)": "/ui/pilots",
    }


def _first_load(task_id: int) -> list[str]:
    api = f"/ui/api/tasks/{task_id}"
    return [f"/ui/tasks/{task_id}/live", f"{api}/history", f"{api}/parcoords", f"{api}/importance", f"{api}/steering",
            f"{api}/points"]  # fmt: skip


def _timed(client: httpx.Client, path: str) -> float:
    began = time.perf_counter()
    response = client.get(path)
    elapsed = (time.perf_counter() - began) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:300]}")
    return elapsed


def _round(client: httpx.Client, task_id: int, points: int, loads: int, pilot: _Pilot | None) -> dict[str, Any]:
    """Each URL ``loads`` times; with a pilot, each load waits for a new completion first, so the
    task's signature has moved and the service cannot answer from the summary it computed before."""

    def load(path: str) -> float:
        if pilot is not None:
            pilot.wait_for_completion()
        return _timed(client, path)

    rows: dict[str, Any] = {}
    for label, path in _urls(task_id, points).items():
        first = load(path)
        rows[label] = {"first_ms": round(first, 1), **_stats([load(path) for _ in range(loads)])}
    cookies = dict(client.cookies)
    with ThreadPoolExecutor(6) as pool:
        clients = [httpx.Client(base_url=str(client.base_url), cookies=cookies, timeout=30) for _ in range(6)]
        try:
            complete = []
            for _ in range(loads):
                if pilot is not None:
                    pilot.wait_for_completion()
                began = time.perf_counter()
                _timed(client, f"/ui/tasks/{task_id}")
                list(pool.map(_timed, clients, _first_load(task_id)))
                complete.append((time.perf_counter() - began) * 1000)
        finally:
            for c in clients:
                c.close()
    rows["task page, complete (HTML + 6 requests, 6 at a time)"] = _stats(complete)
    return rows


class _Pilot(threading.Thread):
    """Completes points through the API at ``rate`` per second (one slot, as a pilot would)."""

    def __init__(self, url: str, token: str, rate: float):
        super().__init__(daemon=True, name="bench-ui-pilot")
        self.api = ApiClient(url, token)
        self.rate = rate
        self.stop = threading.Event()
        self.completed = 0
        self._done = threading.Condition()
        self._seen = 0

    def wait_for_completion(self) -> None:
        """Until the pilot completed a point since the last call (or 5 s passed)."""
        with self._done:
            self._done.wait_for(lambda: self.completed > self._seen or self.stop.is_set(), timeout=5)
            self._seen = self.completed

    def run(self) -> None:
        pilot_id = self.api.register_pilot({"name": "bench-live", "site": "SITE-A", "hostname": "bench",
                                            "slots": [{"name": "0", "gpus": []}]})["pilot_id"]  # fmt: skip
        while not self.stop.is_set():
            began = time.monotonic()
            job = self.api.acquire(pilot_id, "0")["job"]
            if job is not None:
                x = job["params"]["x"]
                report = {"lease_token": job["lease_token"], "outcome": "success", "loss": 0.1 + (x - 0.3) ** 2 / 4,
                          "exit_code": 0, "duration_s": 1.0, "log_tail": "ok\n"}  # fmt: skip
                self.api.complete(job["attempt_id"], report)
                with self._done:
                    self.completed += 1
                    self._done.notify_all()
            self.stop.wait(max(0.0, 1 / self.rate - (time.monotonic() - began)))
        self.api.close()


def measure(backend: str, points: int, loads: int, database_url: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hposteer-bench-ui-") as tmp:
        data_dir = Path(tmp)
        settings = Settings(data_dir=data_dir, database_url=database_url)
        began = time.perf_counter()
        filled = fill(settings, points)
        fill_s = time.perf_counter() - began
        print(f"ui {backend}: {points:,} points, {filled.attempts:,} attempts written in {fill_s:.1f} s", flush=True)
        with _service(data_dir, database_url) as url, closing(_login(url, filled.user_token)) as client:
            idle = _round(client, filled.task_id, points, loads, None)
            pilot = _Pilot(url, filled.pilot_token, rate=RATE)
            pilot.start()
            try:
                live = _round(client, filled.task_id, points, loads, pilot)
            finally:
                pilot.stop.set()
                pilot.join(timeout=30)
    for name, rows in (("idle", idle), ("live", live)):
        for label, row in rows.items():
            print(
                f"ui {backend} {name:<4} {label:<52} p50 {row['p50_ms']:>7} ms  p95 {row['p95_ms']:>7} ms", flush=True
            )
    worst = max(row["p95_ms"] for rows in (idle, live) for row in rows.values())
    return {
        "backend": backend,
        "points": points,
        "attempts": filled.attempts,
        "steering_runs": filled.steering_runs,
        "loads_per_url": loads,
        "fill_s": round(fill_s, 1),
        "live_completions": pilot.completed,
        "idle": idle,
        "live": live,
        "worst_p95_ms": worst,
        "target_p95_ms": TARGET_P95_MS,
        "target_met": worst < TARGET_P95_MS,
    }


def run(quick: bool) -> dict[str, Any]:
    """SQLite (the embedded default), then PostgreSQL when one answers (bench.harness)."""
    from bench.harness import postgres_database, postgres_unavailable

    points, loads = (20_000, 8) if quick else (POINTS, LOADS)
    results: dict[str, Any] = {"machine": machine(), "sqlite": measure("sqlite", points, loads)}
    reason = postgres_unavailable()
    if reason is None:
        with postgres_database("hposteer_bench_ui") as url:
            results["postgresql"] = measure("postgresql", points, loads, url)
    else:
        print(f"ui postgresql: skipped ({reason})", flush=True)
        results["postgresql"] = {"skipped": reason}
    return results


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
