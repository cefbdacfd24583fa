"""Pilot parts for real: slot specs, output.json rules, hostile archives, the local runtime."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from client.pilot.extract import UnsafeArchive, safe_extract
from client.pilot.output import read_result
from client.pilot.runtime import LOG_TAIL_BYTES, RuntimeStartError, log_tail, make_runtime
from client.pilot.slots import Slot, SlotSpecError, cpu_slots, parse_workers

# -- slots -----------------------------------------------------------------------------------------


def test_clara_style_slot_specs() -> None:
    assert parse_workers("0:1") == [Slot("0", ("0",)), Slot("1", ("1",))]
    assert parse_workers("0,1:2,3") == [Slot("0", ("0", "1")), Slot("1", ("2", "3"))]
    assert parse_workers(" 4 ")[0].cuda_visible_devices == "4"
    assert cpu_slots(2) == [Slot("0", ()), Slot("1", ())]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("0::1", "slot 1 has an empty GPU list"),
        ("0,:1", "slot 0 has an empty GPU list"),
        ("a:1", "GPU id 'a' of slot 0"),
        ("0,1:1,2", "GPU 1 is given to slot 0 and slot 1"),
    ],
)
def test_bad_slot_specs(spec: str, message: str) -> None:
    with pytest.raises(SlotSpecError, match=message):
        parse_workers(spec)
    with pytest.raises(SlotSpecError, match="1 or more"):
        cpu_slots(0)


# -- output.json -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "exit_code", "outcome", "failure_class", "loss", "message"),
    [
        ({"status": 0, "loss": 0.25, "message": "ok"}, 0, "success", None, 0.25, "ok"),
        ({"loss": 3}, 0, "success", None, 3.0, ""),
        ({"loss": "1.5e-2"}, 0, "success", None, 0.015, ""),
        ({"status": 1, "message": "CUDA OOM"}, 0, "failure", "payload_error", None, "status 1: CUDA OOM"),
        ({"status": 0, "loss": 0.1}, 3, "failure", "payload_error", None, "exited with code 3"),
        ({"status": 0}, 0, "failure", "invalid_output", None, 'has no "loss"'),
        ({"loss": "NaN"}, 0, "failure", "invalid_output", None, "not finite"),
        ({"loss": [1, 2]}, 0, "failure", "invalid_output", None, "must be a number"),
        ({"loss": True}, 0, "failure", "invalid_output", None, "must be a number"),
        ({"loss": "low"}, 0, "failure", "invalid_output", None, "is not a number"),
        ([1, 2], 0, "failure", "invalid_output", None, "must hold a JSON object"),
        ("{not json", 0, "failure", "invalid_output", None, "not valid JSON: Expecting property name"),
        (None, 0, "failure", "missing_output", None, "wrote no output.json"),
    ],
)
def test_output_json_rules(
    tmp_path: Path,
    content: Any,
    exit_code: int,
    outcome: str,
    failure_class: str | None,
    loss: float | None,
    message: str,
) -> None:
    path = tmp_path / "output.json"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_text(json.dumps(content))
    result = read_result(path, exit_code)
    assert (result.outcome, result.failure_class, result.loss) == (outcome, failure_class, loss)
    assert message in result.message


# -- hostile archives ------------------------------------------------------------------------------


def _archive(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    data = data or {}
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            payload = data.get(member.name, b"")
            if member.isfile():
                member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload) if member.isfile() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, **attrs: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([_member("../../x")], "escapes the directory"),
        ([_member("/etc/passwd")], "absolute member path"),
        ([_member("a/../../x")], "escapes the directory"),
        ([_member("link", tarfile.SYMTYPE, linkname="/")], "symlink points outside"),
        ([_member("link", tarfile.SYMTYPE, linkname="../../etc"), _member("link/passwd")], "symlink points outside"),
        ([_member("hard", tarfile.LNKTYPE, linkname="/etc/passwd")], "hard link"),
        ([_member("dev", tarfile.CHRTYPE)], "device, FIFO"),
        ([_member("fifo", tarfile.FIFOTYPE)], "device, FIFO"),
        ([_member("suid", mode=0o4755)], "setuid"),
        ([_member("x" * 5000)], "longer than 4096 bytes"),
    ],
)
def test_hostile_archives_are_refused_and_write_nothing(
    tmp_path: Path, members: list[tarfile.TarInfo], message: str
) -> None:
    archive = _archive(tmp_path / "evil.tar.gz", members)
    dest = tmp_path / "work"
    with pytest.raises(UnsafeArchive, match=message):
        safe_extract(archive, dest)
    assert not dest.exists() or not any(dest.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz"] + (["work"] if dest.exists() else [])


def test_non_gzip_and_truncated_archives_are_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        tar.addfile(_member("a"), io.BytesIO(b""))
    with pytest.raises(UnsafeArchive, match="magic bytes"):
        safe_extract(plain, tmp_path / "w1")
    good = _archive(tmp_path / "good.tar.gz", [_member("a.py")], {"a.py": os.urandom(100_000)})
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(good.read_bytes()[:50_000])
    with pytest.raises(UnsafeArchive, match=r"not a readable tar\.gz"):
        safe_extract(truncated, tmp_path / "w2")


def test_a_good_archive_extracts_byte_identical(tmp_path: Path) -> None:
    files = {"train.py": b"print('hi')\n", "conf/space.json": b'{"x": 1}', "run.sh": b"#!/bin/sh\n"}
    members = [_member("conf", tarfile.DIRTYPE, mode=0o755)] + [_member(name) for name in files]
    members.append(_member("conf/alias.json", tarfile.SYMTYPE, linkname="space.json"))
    archive = _archive(tmp_path / "ok.tar.gz", members, files)
    dest = tmp_path / "work"
    assert safe_extract(archive, dest) == 3
    for name, data in files.items():
        assert (dest / name).read_bytes() == data
    assert (dest / "conf" / "alias.json").read_bytes() == files["conf/space.json"]


# -- the local runtime -----------------------------------------------------------------------------


def test_local_runtime_runs_in_the_workdir_with_the_environment(tmp_path: Path) -> None:
    runtime = make_runtime("local")
    (tmp_path / "input.json").write_text('{"x": 1}')
    env = {"PATH": os.environ["PATH"], "CUDA_VISIBLE_DEVICES": "3"}
    command = 'cat input.json; echo " gpu=$CUDA_VISIBLE_DEVICES pwd=$(pwd)"; exit 7'
    payload = runtime.start(command, tmp_path, env, tmp_path / "log")
    assert payload.wait(10) == 7
    assert log_tail(tmp_path / "log") == f'{{"x": 1}} gpu=3 pwd={tmp_path}\n'


def test_log_tail_keeps_the_last_64_kib(tmp_path: Path) -> None:
    runtime = make_runtime("local")
    command = "head -c 200000 /dev/zero | tr '\\0' a; echo END"
    payload = runtime.start(command, tmp_path, dict(os.environ), tmp_path / "log")
    assert payload.wait(10) == 0
    tail = log_tail(tmp_path / "log")
    assert len(tail.encode()) == LOG_TAIL_BYTES and tail.endswith("aEND\n")


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_terminate_stops_the_whole_process_group(tmp_path: Path) -> None:
    runtime = make_runtime("local")
    script = "sleep 300 & echo $! > child.pid; wait"
    payload = runtime.start(script, tmp_path, dict(os.environ), tmp_path / "log")
    deadline = time.monotonic() + 5
    while not (tmp_path / "child.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int((tmp_path / "child.pid").read_text())
    assert payload.poll() is None
    payload.terminate(grace_s=2)
    time.sleep(0.2)
    assert not _alive(child), "the payload's own child was stopped too"


def test_unknown_runtime_lists_the_known_ones() -> None:
    with pytest.raises(RuntimeStartError, match="unknown runtime 'docker'; available: local"):
        make_runtime("docker")
