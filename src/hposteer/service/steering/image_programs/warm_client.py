"""``hpogrid`` in a warm steering container: hand the run to the steering server, exit with its status.

Run by file path with ``python -I -S`` (no site, no package import: standard library only), so
it starts in milliseconds. When no server answers within ``WAIT_S`` (it is still importing, or
it died), the run falls back to the ordinary one-shot program, so a run never depends on the
server being healthy: only its speed does. Protocol: src/hposteer/service/steering/image_programs/prefork_server.py.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

SOCKET_ENV = "HPOSTEER_STEERING_SOCKET"
WAIT_S = 30.0
FALLBACK = ("-m", "hposteer.service.steering.image_programs.hpogrid_generate")


def _connect(path: str, wait_s: float) -> socket.socket | None:
    deadline = time.monotonic() + wait_s
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)


def _fallback(args: list[str], why: str) -> None:
    print(f"hpogrid: {why}; running without the steering server", file=sys.stderr, flush=True)
    python = os.path.join(os.path.dirname(sys.executable), "python")
    os.execv(python, [python, *FALLBACK, *args])


def main(args: list[str]) -> int:
    path = os.environ.get(SOCKET_ENV, "")
    sock = _connect(path, WAIT_S) if path else None
    if sock is None:
        _fallback(args, f"no steering server answers on {path or '(no socket set)'}")
        return 1  # not reached
    request = {"argv": ["hpogrid", *args], "cwd": os.getcwd(), "env": dict(os.environ)}
    with sock:
        socket.send_fds(sock, [json.dumps(request).encode()], [0, 1, 2])
        reply = sock.recv(65536)
    if not reply:
        _fallback(args, "the steering server closed the connection")
    answer = json.loads(reply.decode())
    if "error" in answer:
        print(f"hpogrid: the steering server refused the run: {answer['error']}", file=sys.stderr)
        return 2
    return int(answer["exit"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
