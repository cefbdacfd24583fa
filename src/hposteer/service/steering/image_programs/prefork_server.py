"""The steering server of a warm steering container: libraries imported once, one fork per run.

Why: in a fresh container, ``hpogrid generate`` spends 1.6-1.8 s importing nevergrad (scipy.stats
alone takes a second) for a run whose own work takes milliseconds. A warm container
(src/hposteer/service/steering/containers/warm_pool.py) runs this server as its main process instead; each
steering run is then a ``docker exec`` of the task's own command, in which the image's
``hpogrid`` finds ``HPOSTEER_STEERING_SOCKET`` and becomes the small client
(``warm_client.py``). The client passes its argv, cwd, environment and its three standard
streams (SCM_RIGHTS) over a SOCK_SEQPACKET unix socket; the server forks, the child takes the
client's streams, directory and environment and runs ``hpogrid_generate.main``, and the exit
status goes back to the client, which exits with it. The runs share nothing but the imports:
each child starts from the server's untouched memory (with fresh random seeds), as a new
process would.

    python -m hposteer.service.steering.image_programs.prefork_server --socket /tmp/hposteer-steering.sock
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import sys
import traceback
from importlib.util import find_spec
from typing import Any

from hposteer.core.space_json import parse_search_space
from hposteer.service.core.optimizer_spec import spec_from_hpogrid_options
from hposteer.service.steering.image_programs import hpogrid_generate
from hposteer.service.steering.optimizers.warm import generate

MAX_REQUEST_BYTES = 256 * 1024
# hpogrid library name -> the module whose import is the cost; warmed when the image has it.
PRELOAD = {"nevergrad": "nevergrad", "skopt": "skopt", "optuna": "optuna"}
_WARM_SPACE = {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}}


def preload() -> list[str]:
    """Import each library the image has and ask it for points once (lazy imports included)."""
    warmed = []
    space = parse_search_space(_WARM_SPACE)
    for library, module in PRELOAD.items():
        if find_spec(module) is None:
            continue
        spec = spec_from_hpogrid_options({"lib": library}, f"-l {library}")
        try:
            generate(spec, space, [], 2, 0, budget=4, parallelism=1)
        except Exception as exc:  # a broken library still fails in its run, with its own message
            print(f"hposteer steering server: warming {library} failed: {exc}", file=sys.stderr, flush=True)
            continue
        warmed.append(library)
    return warmed


def decode_request(data: bytes) -> tuple[list[str], str, dict[str, str]]:
    """argv, cwd and environment of one run; ValueError if the client sent anything else."""
    request = json.loads(data.decode("utf-8"))
    if not isinstance(request, dict):
        raise ValueError("a request is a JSON object")
    argv, cwd, env = request.get("argv"), request.get("cwd"), request.get("env")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise ValueError("argv must be a non-empty list of strings")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise ValueError("cwd must be an absolute path")
    if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        raise ValueError("env must map strings to strings")
    return argv, cwd, env


def _child(argv: list[str], cwd: str, env: dict[str, str], fds: list[int]) -> int:
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
    for fd in fds:
        os.close(fd)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = list(argv)
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    try:
        return hpogrid_generate.main(argv[1:])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 1


def serve_one(conn: socket.socket, number: int) -> None:
    """One run: read the request, fork, wait, answer with the exit status (and log it)."""
    data, fds, _flags, _addr = socket.recv_fds(conn, MAX_REQUEST_BYTES, 3)
    try:
        if len(fds) != 3:
            raise ValueError(f"a request carries 3 file descriptors, got {len(fds)}")
        argv, cwd, env = decode_request(data)
    except ValueError as exc:
        for fd in fds:
            os.close(fd)
        conn.sendall(json.dumps({"error": str(exc)}).encode())
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            conn.close()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            code = _child(argv, cwd, env, fds)
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    for fd in fds:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    code = code if code >= 0 else 128 - code
    print(f"hposteer steering server: run {number} (pid {pid}) exited with {code}", flush=True)
    conn.sendall(json.dumps({"exit": code}).encode())


def serve(path: str) -> None:
    """Accept runs one at a time (one container serves one segment, whose runs never overlap)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    partial = path + ".partial"  # bound, then renamed: a client never sees a socket not yet listening
    with contextlib.suppress(FileNotFoundError):
        os.unlink(partial)
    listener.bind(partial)
    listener.listen(8)
    os.rename(partial, path)
    number = 0
    while True:
        conn, _ = listener.accept()
        number += 1
        with conn:
            try:
                serve_one(conn, number)
            except OSError as exc:  # the client went away; the next run is not affected
                print(f"hposteer steering server: a run was cut off: {exc}", file=sys.stderr, flush=True)
        _reap_orphans()


def _reap_orphans() -> None:
    """As the container's first process, the server inherits whatever a run left running."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hposteer-steering-server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True, help="path of the unix socket to serve on")
    args: Any = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    warmed = preload()
    print(f"hposteer steering server: ready on {args.socket} ({', '.join(warmed) or 'no library'} warmed)", flush=True)
    serve(args.socket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
