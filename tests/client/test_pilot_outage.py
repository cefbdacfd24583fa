"""A pilot whose service goes away for a while: an outage is not idleness.

The pilot talks to the live service through a TCP forwarder on loopback that can be switched off
(connections refused, as when a service is restarted) and on again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hposteer.client.http import ApiClient
from hposteer.client.pilot import agent
from hposteer.client.pilot.agent import Pilot, PilotConfig
from hposteer.client.pilot.runtimes.registry import make_runtime
from hposteer.client.pilot.slots import cpu_slots
from hposteer.client.wire import Registration
from tests.conftest import LiveService
from tests.support.pilots import GOOD, new_site, points, submit, upload


class Forwarder:
    """Forwards 127.0.0.1:<port> to the service; ``off()`` closes the listener (connections refused)
    and every open connection, ``on()`` listens again on the same port."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def on(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def off(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                if self._listener is not listener:  # turned off while this connection was being set up
                    for sock in (client, server):
                        sock.close()
                    return
                self._open.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def forwarding(service: LiveService) -> Iterator[Forwarder]:
    forwarder = Forwarder(int(service.url.rsplit(":", 1)[1]))
    forwarder.on()
    try:
        yield forwarder
    finally:
        forwarder.off()


def start(pilot: Pilot) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(pilot.run()), daemon=True)
    thread.start()
    return thread, codes


def wait_until(condition: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_service_outage_longer_than_the_idle_limit_does_not_end_the_pilot(
    live_service: LiveService, tmp_path: Path
) -> None:
    site = new_site()
    with forwarding(live_service) as forwarder, ApiClient(forwarder.url, live_service.pilot_token) as api:
        config = PilotConfig(
            name="outage", site=site, slots=cpu_slots(2), runtime=make_runtime("local"), workdir=tmp_path,
            exit_when_idle_s=1.0,
        )  # fmt: skip
        register = api.register_pilot

        def register_then_outage(registration: dict[str, Any]) -> Registration:
            # The service "restarts" the moment the pilot is registered, before its first poll: a test thread
            # that turned the forwarder off later could lose the race to the 1 s idle limit on a loaded machine.
            answer = register(registration)
            forwarder.off()
            return answer

        api.register_pilot = register_then_outage  # type: ignore[method-assign]
        pilot = Pilot(api, config)
        thread, codes = start(pilot)
        wait_until(lambda: pilot.pilot_id != 0)
        time.sleep(5.0)  # 5 s without an answer, five times the idle limit
        assert thread.is_alive(), "an unreachable server is an outage, not idleness"
        with ApiClient(live_service.url, live_service.user_token) as user:
            # All four points at once, steered before the service "returns": under load a steering run may
            # take longer than the 1 s idle limit, and a pilot idle for 1 s after the outage rightly exits.
            sandbox = upload(user, {"eval.py": GOOD})
            task_id = submit(user, site, sandbox, max_points=4, n_points_per_iteration=4)
            wait_until(lambda: len(points(user, task_id)) == 4)
            forwarder.on()
            thread.join(timeout=60)
            assert codes == [0], "back in service, the pilot takes the work, then exits once idle"
            done = [p for p in points(user, task_id) if p["state"] == "done"]
    assert len(done) == 4 and pilot.evaluated == 4


def test_a_pilot_gives_up_on_a_server_gone_for_longer_than_the_grace(
    live_service: LiveService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent, "OUTAGE_GRACE_S", 2.0)
    with forwarding(live_service) as forwarder, ApiClient(forwarder.url, live_service.pilot_token) as api:
        config = PilotConfig(
            name="outage", site=new_site(), slots=cpu_slots(1), runtime=make_runtime("local"), workdir=tmp_path,
            exit_when_idle_s=0.5,
        )  # fmt: skip
        pilot = Pilot(api, config)
        thread, codes = start(pilot)
        wait_until(lambda: pilot.pilot_id != 0)
        forwarder.off()
        began = time.monotonic()
        thread.join(timeout=30)
        took = time.monotonic() - began
    assert codes == [1], "a server that never comes back is an error, not the end of the work"
    assert 2.0 <= took < 12.0  # the grace, plus at most one acquire's own retries (about 3 s)
