"""`make demo`'s command, `hposteer demo`, run as a reader runs it: the 24-point search finishes,
and no token is ever on a process's command line (where `ps` shows it) or printed."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _command_lines() -> list[str]:
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue  # the process ended
    return lines


def test_the_demo_finishes_and_keeps_its_tokens_off_command_lines(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "hposteer.client.cli", "demo", "--data-dir", str(data_dir)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    tokens: list[str] = []
    seen_on_a_command_line: list[str] = []
    deadline = time.monotonic() + 300
    while demo.poll() is None:
        assert time.monotonic() < deadline, f"the demo did not end within 300 s:\n{log.read_text()}"
        if len(tokens) < 2:
            tokens = [p.read_text().strip() for p in sorted(data_dir.glob("*.token")) if p.read_text().strip()]
        seen_on_a_command_line += [line for line in _command_lines() for token in tokens if token in line]
        time.sleep(0.1)
    output = log.read_text()
    assert demo.returncode == 0, output
    assert "finished" in output and "24 done, 0 failed" in output, output
    assert len(tokens) == 2, sorted(data_dir.iterdir())
    assert not seen_on_a_command_line, seen_on_a_command_line
    assert not any(token in output for token in tokens), "the demo printed a token"
    for path in data_dir.glob("*.token"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert f"HPOSTEER_TOKEN_FILE={data_dir / 'user.token'}" in output
