"""`hposteer demo` (what `make demo` runs): the whole loop on one machine, with real processes.

1. the steering service on SQLite in a local data directory (`python -m hposteer.service serve`),
2. a user and a pilot token,
3. a local pilot with two slots (`hposteer pilot`),
4. the example task submitted with `phpo --loadJson` from its own directory,
5. a live progress bar until the task ends, then the best point and where to look next.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from hposteer.client.http import ApiClient, ServerUnreachable
from hposteer.client.task_view import format_task, wait_for_task

# a checkout: src/hposteer/client/demo.py -> <repository>/examples
REPO_EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


class DemoError(RuntimeError):
    pass


def _example_dir(name: str) -> Path:
    path = Path(name)
    if not path.is_dir():
        path = REPO_EXAMPLES / name
    if not (path / "phpo.json").is_file():
        raise DemoError(f"no example {name!r}: expected {path}/phpo.json (examples live in {REPO_EXAMPLES})")
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Payloads of the local runtime find this environment's python3 (with scikit-learn) first.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("HPOSTEER_DATABASE_URL", None)
    return env


def _create_token(data_dir: Path, role: str, owner: str) -> Path:
    """A new token in data_dir/ROLE.token (mode 0600): no token is ever on a command line or printed."""
    path = data_dir / f"{role}.token"
    result = subprocess.run(
        [sys.executable, "-m", "hposteer.service", "token", "create", "--data-dir", str(data_dir),
         "--role", role, "--owner", owner, "--label", "demo", "--output", str(path), "--force"],
        capture_output=True, text=True, env=_env(), check=False,
    )  # fmt: skip
    if result.returncode != 0 or not path.is_file():
        raise DemoError(f"could not create a {role} token: {result.stderr.strip()}")
    return path


def _wait_healthy(url: str, service: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    with ApiClient(url, None, timeout_s=2) as api:
        api.retry.attempts = 1
        while time.monotonic() < deadline:
            if service.poll() is not None:
                raise DemoError(f"the service exited with code {service.returncode}; see {log}")
            try:
                api.health()
                return
            except ServerUnreachable:
                time.sleep(0.2)
    raise DemoError(f"the service did not answer within 60 s; see {log}")


def _start(argv: list[str], log: IO[bytes], **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True, **kw)


def _stop(process: subprocess.Popen[bytes] | None, grace_s: float = 20) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _submit(example: Path, url: str, token_file: Path, log: IO[bytes]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "result.json"
        result = subprocess.run(
            [sys.executable, "-m", "hposteer.client.phpo", "--loadJson", "phpo.json", "--server", url,
             "--tokenFile", str(token_file), "--dumpJson", str(dump)],
            cwd=example, stdout=log, stderr=subprocess.STDOUT, env=_env(), check=False,
        )  # fmt: skip
        if result.returncode != 0 or not dump.is_file():
            raise DemoError(f"phpo failed (exit {result.returncode}); see its output in {log.name}")
        task_id = json.loads(dump.read_text()).get("jediTaskID")
    if not isinstance(task_id, int):
        raise DemoError(f"phpo did not report a task id; see {log.name}")
    return task_id


def run_demo(args: argparse.Namespace) -> int:
    example = _example_dir(args.example)
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = args.port or _free_port()
    url = f"http://127.0.0.1:{port}"
    service_log, pilot_log = data_dir / "service.log", data_dir / "pilot.log"
    service = pilot = None
    print(f"hposteer demo: example {example.name}, data in {data_dir}")
    with service_log.open("ab") as slog, pilot_log.open("ab") as plog:
        try:
            service = _start(
                [sys.executable, "-m", "hposteer.service", "serve", "--data-dir", str(data_dir), "--port", str(port)],
                slog,
            )
            _wait_healthy(url, service, service_log)
            print(f"  service   {url} (SQLite in {data_dir}; log {service_log})")
            user_token = _create_token(data_dir, "user", "demo")
            pilot_token = _create_token(data_dir, "pilot", "demo-site")
            print(f"  tokens    {user_token} (user), {pilot_token} (pilot): files of mode 0600")
            pilot = _start(
                [sys.executable, "-m", "hposteer.client.cli", "pilot", "--server", url,
                 "--token-file", str(pilot_token), "--site", "LOCAL", "--slots", str(args.slots),
                 "--workdir", str(data_dir / "pilot")],
                plog,
            )  # fmt: skip
            print(f"  pilot     {args.slots} slots, local runtime (log {pilot_log})")
            task_id = _submit(example, url, user_token, slog)
            print(f"  submitted task {task_id} with phpo --loadJson {example / 'phpo.json'}\n")
            with ApiClient(url, user_token.read_text().strip()) as api:
                state = wait_for_task(api, task_id, interval_s=0.5)
                task = api.get_task(task_id)
            print()
            print(format_task(task))
            _where_next(task_id, url, user_token, data_dir)
            return 0 if state == "finished" else 1
        except DemoError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            _stop(pilot)
            _stop(service)


def _where_next(task_id: int, url: str, token_file: Path, data_dir: Path) -> None:
    print(
        f"""
Where to look next:
  every point and attempt:  HPOSTEER_SERVER={url} HPOSTEER_TOKEN_FILE={token_file} hposteer task show {task_id} --points
                            (the demo's service has stopped; restart it with
                             hposteer serve --data-dir {data_dir} --port {url.rsplit(":", 1)[1]})
  in the web UI:            {url}/ui/login with the token in {token_file.name}, once the service runs again (docs/ui.md)
  evaluation directories:   {data_dir / "pilot"}
  logs:                     {data_dir / "service.log"}, {data_dir / "pilot.log"}
  your own search:          docs/getting-started.md, docs/phpo.md, docs/search-space.md"""
    )
