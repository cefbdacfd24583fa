"""Where the steering loop runs: a child process (default) or a thread of the service.

In a child process the optimisers never compete with request handling for the GIL, so
a scikit-optimize GP that computes for 18 s does not slow acquire/heartbeat/complete;
the service hands segment ids over through a multiprocessing queue right after each
commit. The thread host is for embedded use and tests.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Iterable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Protocol

from hposteer.service.config import Settings
from hposteer.service.core.events import EventSink, Meters
from hposteer.service.events.forward import PipeSink, start_relay
from hposteer.service.operations.context import NoTrigger, Services, build_services
from hposteer.service.workers.runner import make_segment_runner
from hposteer.service.workers.steering_loop import SteeringLoop, run_in_thread

log = logging.getLogger("hposteer.steering")


class SteeringHost(Protocol):
    def notify(self, segment_ids: Iterable[int]) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class ThreadSteeringHost:
    def __init__(self, services_for_loop: Services, settings: Settings):
        self._runner = make_segment_runner()
        self.loop = SteeringLoop(
            services_for_loop,
            self._runner,
            threads=settings.steering_threads,
            poll_s=settings.steering_poll_s,
        )
        self._thread: threading.Thread | None = None

    def notify(self, segment_ids: Iterable[int]) -> None:
        self.loop.notify(segment_ids)

    def start(self) -> None:
        self._thread = run_in_thread(self.loop)

    def stop(self) -> None:
        self.loop.stop()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._runner.close()


def _child_main(
    settings_json: str, inbox: Connection, parent_pid: int, events: Connection | None = None, listening: bool = False
) -> None:
    settings = Settings.model_validate_json(settings_json)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s steering %(levelname)s %(message)s")
    services = build_services(settings, NoTrigger())
    if events is not None:  # the service process's handlers and meters get the child's events (events.forward)
        services.events = services.meters = PipeSink(events, listening)
    runner = make_segment_runner()
    loop = SteeringLoop(services, runner, threads=settings.steering_threads, poll_s=settings.steering_poll_s)

    def forward() -> None:
        while True:
            try:
                ready = inbox.poll(1.0)
                item = inbox.recv() if ready else ()
            except (EOFError, OSError):  # the service closed its end
                item = None
            if item is None or (not ready and os.getppid() != parent_pid):
                loop.stop()
                return
            loop.notify(item)

    threading.Thread(target=forward, name="steering-inbox", daemon=True).start()
    try:
        loop.run()
    finally:
        runner.close()
        services.db.dispose()


class ProcessSteeringHost:
    def __init__(self, settings: Settings, events: EventSink | None = None, meters: Meters | None = None):
        self._settings = settings
        self._telemetry = (events, meters) if events is not None and meters is not None else None
        self._relay: threading.Thread | None = None
        self._ctx = multiprocessing.get_context("spawn")
        # A pipe, not a multiprocessing.Queue: a send is one write(2) on the request thread,
        # where a Queue would wake its feeder thread for every completion.
        self._inbox, self._outbox = self._ctx.Pipe(duplex=False)
        self._send_lock = threading.Lock()
        self._process: BaseProcess | None = None

    def notify(self, segment_ids: Iterable[int]) -> None:
        ids = list(segment_ids)
        if ids:
            self._send(ids)

    def _send(self, item: list[int] | None) -> None:
        with self._send_lock:
            try:
                self._outbox.send(item)
            except (BrokenPipeError, OSError):
                log.warning("the steering process is gone; %s not delivered", item)

    def start(self) -> None:
        relay_in = relay_out = None
        if self._telemetry is not None:
            relay_in, relay_out = self._ctx.Pipe(duplex=False)
        # The child relays its events rather than running handlers of its own.
        child_settings = self._settings.model_copy(update={"event_handlers": []})
        listening = self._telemetry is not None and self._telemetry[0].listening
        self._process = self._ctx.Process(
            target=_child_main,
            args=(child_settings.model_dump_json(), self._inbox, os.getpid(), relay_out, listening),
            name="hposteer-steering",
            daemon=True,
        )
        self._process.start()
        if self._telemetry is not None and relay_in is not None and relay_out is not None:
            relay_out.close()  # the child holds the write end now; its exit ends the relay thread
            self._relay = start_relay(relay_in, *self._telemetry)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def stop(self) -> None:
        if self._process is None:
            return
        self._send(None)
        self._process.join(timeout=30)
        if self._process.is_alive():
            log.warning("steering process did not stop in 30 s; terminating it")
            self._process.terminate()
            self._process.join(timeout=5)
        self._outbox.close()
        self._inbox.close()
        if self._relay is not None:  # the child's last events reach the bus before the service's shutdown
            self._relay.join(timeout=5)
