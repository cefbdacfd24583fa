"""The steering loop: wakes on completions (and every ``steering_poll_s``) and steers segments.

Each segment is steered by at most one thread at a time; a segment that is notified while its
run is under way is run again right after, and one whose run failed waits for the next scan.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from hposteer.service.operations.context import Services
from hposteer.service.operations.history import HistoryCache
from hposteer.service.operations.steer import (
    ContainerSteering,
    SegmentRunner,
    SteerResult,
    default_containers,
    segments_needing_steering,
    steer_segment,
)
from hposteer.service.store.database import StoreBusy

log = logging.getLogger("hposteer.steering")

Event = tuple[str, int]  # ("steer", segment id) | ("done", segment id) | ("stop", 0)


class SteeringLoop:
    def __init__(
        self,
        services: Services,
        runner: SegmentRunner,
        *,
        threads: int,
        poll_s: float,
        containers: ContainerSteering | None = None,
    ):
        self.services = services
        self.runner = runner
        self.containers = containers or default_containers(services)  # warm containers live as long as the loop
        self.poll_s = poll_s
        self._events: queue.Queue[Event] = queue.Queue()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="steer")
        self._in_flight: set[int] = set()
        self._dirty: set[int] = set()
        self._cooldown: dict[int, float] = {}
        self._histories = HistoryCache()
        self.runs = 0

    def notify(self, segment_ids: Iterable[int]) -> None:
        for segment_id in segment_ids:
            self._events.put(("steer", segment_id))

    def stop(self) -> None:
        self._events.put(("stop", 0))

    def run(self) -> None:
        """Serve until stop(); returns after running steering runs have finished."""
        next_scan = 0.0
        self._pool.submit(self._sweep_containers)
        try:
            while True:
                timeout = max(0.0, next_scan - time.monotonic())
                events = self._next_events(timeout)
                if any(kind == "stop" for kind, _ in events):
                    return
                wanted: set[int] = set()
                for kind, segment_id in events:
                    if kind == "done":
                        self._in_flight.discard(segment_id)
                        if segment_id in self._dirty:
                            self._dirty.discard(segment_id)
                            wanted.add(segment_id)
                    else:
                        wanted.add(segment_id)
                if time.monotonic() >= next_scan:
                    wanted |= self._scan()
                    next_scan = time.monotonic() + self.poll_s
                for segment_id in wanted:
                    self._submit(segment_id)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._close_containers()

    def _sweep_containers(self) -> None:
        try:
            self.containers.sweep()
        except Exception:
            log.exception("removing the warm steering containers of a killed service failed")

    def _close_containers(self) -> None:
        try:
            self.containers.close()
        except Exception:
            log.exception("removing the warm steering containers failed")

    def _next_events(self, timeout: float) -> list[Event]:
        try:
            events = [self._events.get(timeout=timeout) if timeout > 0 else self._events.get_nowait()]
        except queue.Empty:
            return []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def _scan(self) -> set[int]:
        try:
            scan = segments_needing_steering(self.services)
        except StoreBusy as exc:
            log.warning("steering scan skipped, database busy: %s", exc)
            return set()
        except Exception:
            log.exception("steering scan failed")
            return set()
        self.runner.retain(scan.active | self._in_flight)
        try:
            self.containers.retain(scan.active | self._in_flight)
        except Exception:
            log.exception("removing ended segments' warm steering containers failed")
        self._histories.retain(scan.active | self._in_flight)
        now = time.monotonic()
        self._cooldown = {k: v for k, v in self._cooldown.items() if v > now}
        return set(scan.wanted)

    def _submit(self, segment_id: int) -> None:
        if segment_id in self._in_flight:
            self._dirty.add(segment_id)
            return
        if self._cooldown.get(segment_id, 0.0) > time.monotonic():
            return
        self._in_flight.add(segment_id)
        future = self._pool.submit(self._steer, segment_id)

        def done(_: Future[SteerResult | None]) -> None:
            self._events.put(("done", segment_id))

        future.add_done_callback(done)

    def _steer(self, segment_id: int) -> SteerResult | None:
        try:
            result = steer_segment(self.services, self.runner, segment_id, self._histories, self.containers)
        except StoreBusy as exc:
            log.warning("steering of segment %d postponed, database busy: %s", segment_id, exc)
            self._cooldown[segment_id] = time.monotonic() + self.poll_s
            return None
        except Exception:
            log.exception("steering of segment %d crashed", segment_id)
            self._cooldown[segment_id] = time.monotonic() + self.poll_s
            return None
        self.runs += 1
        if result.outcome == "failed":
            log.warning("steering of segment %d failed: %s", segment_id, result.message)
            self._cooldown[segment_id] = time.monotonic() + self.poll_s
        elif result.produced:
            log.debug("segment %d: %d new points", segment_id, result.produced)
        return result


def run_in_thread(loop: SteeringLoop) -> threading.Thread:
    thread = threading.Thread(target=loop.run, name="steering-loop", daemon=True)
    thread.start()
    return thread
