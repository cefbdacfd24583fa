"""A connection reset mid-call (a service SIGKILLed while it answers) becomes ServerUnreachable:
repeated for calls that are safe to repeat (idempotency keys, heartbeats), never for the others."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from hposteer.client.http import ApiClient, RetryPolicy, ServerUnreachable


@pytest.fixture
def resetting_server() -> Iterator[tuple[str, list[int]]]:
    """Reads each request, then resets the connection (what the kernel does for a killed server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    seen = [0]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.recv(65536)
            seen[0] += 1
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", seen
    server.close()


def test_a_reset_is_retried_for_safe_calls_then_reported_as_unreachable(
    resetting_server: tuple[str, list[int]],
) -> None:
    url, seen = resetting_server
    with ApiClient(url, "t", retry=RetryPolicy(attempts=3, first_delay_s=0.01)) as api:
        with pytest.raises(ServerUnreachable, match="the connection broke"):
            api.heartbeat(1, "lease")
        assert seen[0] == 3, "a heartbeat is safe to repeat"
        with pytest.raises(ServerUnreachable):
            api.complete(1, {"lease_token": "lease", "outcome": "success", "loss": 1.0}, request_key="k" * 12)
        assert seen[0] == 6, "a completion with an idempotency key is safe to repeat"


def test_a_reset_is_not_repeated_for_calls_that_are_not_safe_to_repeat(
    resetting_server: tuple[str, list[int]],
) -> None:
    url, seen = resetting_server
    with ApiClient(url, "t", retry=RetryPolicy(attempts=3, first_delay_s=0.01)) as api:
        with pytest.raises(ServerUnreachable, match="the connection broke"):
            api.submit_task({"name": "x"})
    assert seen[0] == 1, "a submission is sent once: the server may have stored it"
