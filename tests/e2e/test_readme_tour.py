"""README's five-minute tour, followed literally, each terminal a shell of its own.

Every ``# terminal N`` block of the tour runs in a fresh ``bash`` whose environment has no
``HPOSTEER_*`` variable and no virtual environment on its PATH, so a step that relies on an
``export`` or a ``source`` made in another terminal fails here as it would for a reader. The tour
runs in a scratch folder laid out like the repository (``.venv`` and ``examples/``); the only
change to its text is the port (8750, which another test or a reader's own tour may hold).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
TOUR_PORT = "8750"


def tour_terminals() -> list[str]:
    """The shell blocks of README's tour, in order, each one terminal."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Five-minute tour", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```\n(.*?)^```", section, flags=re.S | re.M)
    terminals = [block for block in blocks if block.startswith("# terminal")]
    assert len(terminals) >= 3, f"README's tour has {len(terminals)} '# terminal' blocks"
    return terminals


def reader_environment() -> dict[str, str]:
    """A new terminal's environment: nothing of hposteer, no virtual environment active."""
    venv_bins = {str(Path(sys.prefix) / "bin"), str(ROOT / ".venv/bin")}
    path = [part for part in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if part not in venv_bins]
    keep = {"HOME", "LANG", "LC_ALL", "TMPDIR", "USER"}
    env = {key: value for key, value in os.environ.items() if key in keep}
    env["PATH"] = os.pathsep.join(path)
    return env


def scratch_repository(tmp_path: Path) -> Path:
    """A folder laid out like the repository for the tour: the test's venv as .venv, the example."""
    repo = tmp_path / "repo"
    (repo / "examples").mkdir(parents=True)
    (repo / ".venv").symlink_to(sys.prefix)
    shutil.copytree(ROOT / "examples/sklearn-digits", repo / "examples/sklearn-digits")
    return repo


def start_terminal(script: str, repo: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["bash", "-e", "-c", script], cwd=repo, env=reader_environment(),
        stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def stop_terminal(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until(what: str, check: object, process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not callable(check) or not check():
        assert process.poll() is None, f"{what}: the terminal exited ({process.returncode}):\n{log.read_text()}"
        assert time.monotonic() < deadline, f"{what} within {timeout_s} s:\n{log.read_text()}"
        time.sleep(0.2)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_no_token_is_typed_on_a_command_line() -> None:
    """`ps` shows every process's arguments to every user: the tour passes tokens in files."""
    for terminal in tour_terminals():
        for line in terminal.splitlines():
            if line.startswith("#"):
                continue
            assert not re.search(r"--token(\s|=)|HPOSTEER_TOKEN=|\$\(hposteer token", line), line


def test_the_tour_works_in_separate_terminals(tmp_path: Path) -> None:
    port = str(free_port())
    server, pilot, submit = (script.replace(TOUR_PORT, port) for script in tour_terminals()[:3])
    repo = scratch_repository(tmp_path)
    example_files = {path.name for path in (repo / "examples/sklearn-digits").rglob("*")}
    logs = {name: tmp_path / f"{name}.log" for name in ("server", "pilot", "submit")}
    running: list[subprocess.Popen[bytes]] = []
    try:
        running.append(start_terminal(server, repo, logs["server"]))
        wait_until("the service answers", lambda: _healthy(f"http://127.0.0.1:{port}"), running[0], logs["server"], 60)
        running.append(start_terminal(pilot, repo, logs["pilot"]))
        tokens = [repo / "me.token", repo / "pilot.token"]
        wait_until(
            "terminal 2 wrote both token files", lambda: all(t.exists() for t in tokens), running[1], logs["pilot"], 60
        )
        for token in tokens:
            assert stat.S_IMODE(token.stat().st_mode) == 0o600, f"{token.name} is readable by others"
        with logs["submit"].open("wb") as out:
            result = subprocess.run(
                ["bash", "-e", "-c", submit], cwd=repo, env=reader_environment(),
                stdout=out, stderr=subprocess.STDOUT, timeout=400, check=False,
            )  # fmt: skip
        output = logs["submit"].read_text()
        assert result.returncode == 0, f"terminal 3 exited {result.returncode}:\n{output}\n{logs['pilot'].read_text()}"
        assert re.search(r"\bdone\b", output), output
        assert running[1].poll() is None, f"the pilot exited:\n{logs['pilot'].read_text()}"
    finally:
        for process in reversed(running):
            stop_terminal(process)

    made = sorted(str(path.relative_to(repo)) + ("/" if path.is_dir() else "") for path in repo.iterdir())
    made = [name for name in made if name not in {".venv", "examples/"}]
    example = repo / "examples/sklearn-digits"
    made += [str(path.relative_to(repo)) for path in example.rglob("*") if path.name not in example_files]
    assert {"hposteer-data/", "hposteer-pilot/", "me.token", "pilot.token"} <= set(made), made
    for name in made:
        ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", "-q", name], check=False)
        assert ignored.returncode == 0, f"the tour leaves {name} in the repository, and .gitignore does not cover it"
