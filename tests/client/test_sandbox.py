"""The phpo sandbox: what PanDA packs, minus what must never travel, byte-for-byte reproducible."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from hposteer.client import sandbox as sandbox_module
from hposteer.client.sandbox import SandboxTooLarge, build, collect


def make_project(root: Path) -> None:
    files = {
        "train.py": "print('train')\n",
        "space.json": "{}",
        "run.sh": "#!/bin/sh\necho run\n",
        "conf/model.yaml": "layers: 3\n",
        "conf/deep/more.json": "[]",
        ".hidden.json": "{}",  # `find .` packs hidden files; only hidden directories are skipped
        "data.csv": "1,2,3\n",
        "model.yml": "not .yaml\n",
        "notes.txt": "no",
        "weights.pt": "binary",
        ".git/hooks/pre-commit.sh": "no",
        ".venv/lib/site.py": "no",
        "__pycache__/train.cpython-311.py": "no",
        "conf/__pycache__/x.json": "no",
        "env/pyvenv.cfg": "home = /usr/bin\n",
        "env/lib/mod.py": "no",
        ".cache/c.json": "no",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "run.sh").chmod(0o755)


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getmembers()


def test_packs_json_py_sh_yaml_recursively_with_relative_paths(tmp_path: Path) -> None:
    make_project(tmp_path)
    sandbox = build(tmp_path)
    expected = [".hidden.json", "conf/deep/more.json", "conf/model.yaml", "run.sh", "space.json", "train.py"]
    assert sandbox.files == expected
    infos = members(sandbox.data)
    assert [i.name for i in infos] == expected
    assert all(not i.name.startswith("/") and ".." not in i.name.split("/") for i in infos)
    assert all(i.isfile() for i in infos), "only regular files, no directory or link entries"
    with tarfile.open(fileobj=io.BytesIO(sandbox.data), mode="r:gz") as tar:
        extracted = tar.extractfile("conf/model.yaml")
        assert extracted is not None and extracted.read() == b"layers: 3\n"


def test_skips_hidden_dirs_pycache_and_virtualenvs(tmp_path: Path) -> None:
    make_project(tmp_path)
    names = [p.as_posix() for p in collect(tmp_path)]
    for skipped in (".git/", ".venv/", "__pycache__/", "env/", ".cache/"):
        assert not any(n.startswith(skipped) or f"/{skipped}" in n for n in names), skipped


def test_symlinks_inside_are_packed_as_files_outside_and_dangling_are_skipped(tmp_path: Path) -> None:
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    (outside / "secret.json").write_text('{"secret": 1}')
    (outside / "lib").mkdir()
    (outside / "lib" / "mod.py").write_text("x = 1")
    (project / "real.py").write_text("y = 2")
    (project / "alias.py").symlink_to(project / "real.py")
    (project / "relative.py").symlink_to("real.py")
    (project / "leak.json").symlink_to(outside / "secret.json")
    (project / "etc.json").symlink_to("/etc/hostname")
    (project / "dangling.py").symlink_to(project / "missing.py")
    (project / "linked_dir").symlink_to(outside / "lib", target_is_directory=True)
    sandbox = build(project)
    assert sandbox.files == ["alias.py", "real.py", "relative.py"]
    infos = {i.name: i for i in members(sandbox.data)}
    assert infos["alias.py"].isfile() and infos["alias.py"].size == len("y = 2")


def test_same_files_give_the_same_bytes_whatever_the_times_owner_or_location(tmp_path: Path) -> None:
    first_dir, second_dir = tmp_path / "a", tmp_path / "elsewhere" / "b"
    for root in (first_dir, second_dir):
        root.mkdir(parents=True)
        make_project(root)
    first = build(first_dir)
    os.utime(second_dir / "train.py", (1_000_000, 1_000_000))
    second = build(second_dir)
    assert second.data == first.data and second.sha256 == first.sha256, "the server stores one copy"
    assert first.data[4:8] == b"\0\0\0\0", "gzip header time is zero"
    for info in members(first.data):
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
    (second_dir / "train.py").write_text("print('changed')\n")
    assert build(second_dir).sha256 != first.sha256


def test_keeps_the_executable_bit_only(tmp_path: Path) -> None:
    make_project(tmp_path)
    (tmp_path / "train.py").chmod(0o600)
    modes = {i.name: i.mode for i in members(build(tmp_path).data)}
    assert modes["run.sh"] == 0o755 and modes["train.py"] == 0o644


def test_an_empty_directory_gives_an_empty_but_valid_archive(tmp_path: Path) -> None:
    sandbox = build(tmp_path)
    assert sandbox.files == [] and members(sandbox.data) == []
    assert gzip.decompress(sandbox.data).strip(b"\0") == b""


def test_too_large_names_the_biggest_files(tmp_path: Path) -> None:
    make_project(tmp_path)
    (tmp_path / "big.json").write_bytes(os.urandom(30_000))
    (tmp_path / "conf" / "medium.py").write_bytes(os.urandom(12_000))
    with pytest.raises(SandboxTooLarge) as info:
        build(tmp_path, limit=20_000)
    message = str(info.value)
    assert "above the 19.5 KiB limit" in message
    assert message.index("big.json (29.3 KiB)") < message.index("conf/medium.py (11.7 KiB)")
    assert "Move data out of the submission directory" in message


def test_the_default_cap_is_100_mib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sandbox_module.MAX_SANDBOX_BYTES == 100 * 1024 * 1024
    (tmp_path / "big.json").write_bytes(os.urandom(5_000))
    monkeypatch.setattr(sandbox_module, "MAX_SANDBOX_BYTES", 1_000)
    with pytest.raises(SandboxTooLarge, match=r"big\.json"):
        build(tmp_path)
