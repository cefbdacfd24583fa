"""The pilot's own tar extractor against hostile archives (docs/reliability.md#hostile-input), built with tarfile.

Every test runs twice: with tarfile's data filter as a second opinion, and without it, as on
Pythons older than 3.11.4 (Debian bookworm's 3.11.2), where the extractor's own rules stand alone."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from hposteer.client.pilot import archive_errors as errors
from hposteer.client.pilot.extract import Limits, safe_extract


@pytest.fixture(autouse=True, params=["with data_filter", "without data_filter"])
def _python_versions(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param == "without data_filter":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
        monkeypatch.delattr(tarfile, "FilterError", raising=False)


def _member(name: str, kind: bytes = tarfile.REGTYPE, **attrs: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def _archive(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    """A .tar.gz of ``members``; regular files get ``data[name]`` (empty by default)."""
    data = data or {}
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            if member.isreg() and member.size > 0 and member.name not in data:
                # Only the header, claiming member.size bytes that never follow.
                header = member.tobuf(tar.format, tar.encoding, tar.errors)
                tar.fileobj.write(header)
                tar.offset += len(header)
                continue
            if member.isreg():
                member.size = len(data.get(member.name, b""))
            tar.addfile(member, io.BytesIO(data.get(member.name, b"")) if member.isreg() else None)
    return path


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _refused(tmp_path: Path, archive: Path, error: type[errors.UnsafeArchive], message: str) -> None:
    """``archive`` is refused with ``error``, and nothing at all was written."""
    before = _files_under(tmp_path)
    dest = tmp_path / "work"
    with pytest.raises(error, match=message) as caught:
        safe_extract(archive, dest)
    assert f"[{error.code}]" in str(caught.value)
    assert not dest.exists()
    assert _files_under(tmp_path) == before
    assert not (tmp_path.parent / "x").exists() and not (tmp_path.parent.parent / "x").exists()


@pytest.mark.parametrize(
    ("members", "error", "message"),
    [
        ([_member("../../x")], errors.PathTraversal, r"escapes the directory with '\.\.'"),
        ([_member("a/../../x")], errors.PathTraversal, "escapes the directory"),
        ([_member("ok.py"), _member("..")], errors.PathTraversal, "escapes"),
        ([_member("/etc/passwd")], errors.AbsolutePath, "absolute member name: '/etc/passwd'"),
        ([_member("link", tarfile.SYMTYPE, linkname="/")], errors.LinkOutside, "points to the absolute path '/'"),
        ([_member("link", tarfile.SYMTYPE, linkname="../../etc")], errors.LinkOutside, "points outside"),
        (
            [_member("link", tarfile.SYMTYPE, linkname="../../etc"), _member("link/passwd")],
            errors.LinkOutside,
            "points outside",
        ),
        # Each link looks inside on its own; followed like the file system will, the second escapes.
        (
            [
                _member("sub", tarfile.DIRTYPE),
                _member("sub/up", tarfile.SYMTYPE, linkname=".."),
                _member("sub/out", tarfile.SYMTYPE, linkname="up/.."),
            ],
            errors.LinkOutside,
            "'sub/out' points outside the directory: 'up/..'",
        ),
        (
            [_member("sub", tarfile.DIRTYPE), _member("link", tarfile.SYMTYPE, linkname="sub"), _member("link/x")],
            errors.ThroughSymlink,
            "'link/x' goes through the archive's symlink 'link'",
        ),
        ([_member("hard", tarfile.LNKTYPE, linkname="/etc/passwd")], errors.LinkOutside, "hard link 'hard'"),
        ([_member("hard", tarfile.LNKTYPE, linkname="../x")], errors.LinkOutside, "points outside"),
        ([_member("hard", tarfile.LNKTYPE, linkname="later"), _member("later")], errors.LinkOutside, "earlier"),
        ([_member("chr", tarfile.CHRTYPE, devmajor=1, devminor=3)], errors.SpecialFile, "'chr' is a device, FIFO"),
        ([_member("blk", tarfile.BLKTYPE)], errors.SpecialFile, "device, FIFO"),
        ([_member("fifo", tarfile.FIFOTYPE)], errors.SpecialFile, "device, FIFO"),
        ([_member("suid", mode=0o4755)], errors.SetuidBit, "'suid' has the setuid or setgid bit"),
        ([_member("dir", tarfile.DIRTYPE, mode=0o2755)], errors.SetuidBit, "setuid or setgid"),
        ([_member("a\x00b", pax_headers={"path": "a\x00b"})], errors.NulInName, "contains a NUL byte"),
        (
            [_member("l", tarfile.SYMTYPE, linkname="x", pax_headers={"linkpath": "x\x00y"})],
            errors.NulInName,
            "target of link 'l'",
        ),
        ([_member("d/" * 2048 + "f")], errors.NameTooLong, "limit 4096"),
        ([_member("x" * 10_000)], errors.NameTooLong, "limit 4096"),
        ([_member("x" * 300)], errors.NameTooLong, "component longer than 255 bytes"),
        ([_member("a.py"), _member("a.py")], errors.NameConflict, "'a.py' appears twice"),
        ([_member("a"), _member("a/b.py")], errors.NameConflict, "uses the file 'a' as a directory"),
        ([_member("f", size=2 * 1024**3)], errors.TooLarge, "more than 1073741824 bytes"),
        (
            [_member("sparse", pax_headers={"GNU.sparse.map": "0,0", "GNU.sparse.size": str(10 * 1024**3)})],
            errors.SparseMember,
            r"sparse member 'sparse' \(claims 10737418240 bytes\)",
        ),
    ],
)
def test_hostile_archives_are_refused_and_nothing_is_written(
    tmp_path: Path, members: list[tarfile.TarInfo], error: type[errors.UnsafeArchive], message: str
) -> None:
    _refused(tmp_path, _archive(tmp_path / "evil.tar.gz", members), error, message)


def test_more_than_10000_members_are_refused(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "many.tar.gz", [_member(f"f{i}") for i in range(10_001)])
    _refused(tmp_path, archive, errors.TooManyMembers, "more than 10000 members")


def test_oversized_headers_are_cut_off_while_streaming(tmp_path: Path) -> None:
    """A 64 MiB pax header (a few KB compressed) is refused long before it is read whole."""
    archive = _archive(tmp_path / "pax.tar.gz", [_member("a", pax_headers={"comment": "x" * (64 * 1024**2)})])
    assert archive.stat().st_size < 1024**2
    _refused(tmp_path, archive, errors.TooLarge, "expands beyond what its members account for")


def test_expanded_size_cap_counts_real_data(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "big.tar.gz", [_member("a"), _member("b")], {"a": b"0" * 700, "b": b"1" * 700})
    with pytest.raises(errors.TooLarge, match="more than 1000 bytes"):
        safe_extract(archive, tmp_path / "work", Limits(max_expanded_bytes=1000))
    assert not (tmp_path / "work").exists()


def _plain_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(_member("a.py"), io.BytesIO(b""))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (_plain_tar(), "not gzip"),
        (lzma.compress(_plain_tar()), "xz data"),
        (bz2.compress(_plain_tar()), "bzip2 data"),
        (b"PK\x03\x04rest-of-a-zip", "zip data"),
        (b"", "an empty file"),
    ],
)
def test_non_gzip_input_is_refused_by_its_magic_bytes(tmp_path: Path, content: bytes, found: str) -> None:
    archive = tmp_path / "sandbox.tar.gz"
    archive.write_bytes(content)
    _refused(tmp_path, archive, errors.NotGzip, f"wrong magic bytes: {found}")


def test_truncated_and_garbled_archives_are_refused(tmp_path: Path) -> None:
    good = _archive(tmp_path / "good.tar.gz", [_member("a.py")], {"a.py": os.urandom(100_000)})
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(good.read_bytes()[:50_000])
    _refused(tmp_path, truncated, errors.CorruptArchive, r"not a readable tar\.gz|cut short")
    garbled = tmp_path / "garbled.tar.gz"
    garbled.write_bytes(gzip.compress(b"this is not a tar archive at all" * 100))
    _refused(tmp_path, garbled, errors.CorruptArchive, r"not a readable tar\.gz")


def test_the_two_archive_attack_meets_a_non_empty_destination(tmp_path: Path) -> None:
    """CVE-2025-45582 pattern: the first archive plants a link, the second writes through it."""
    first = _archive(tmp_path / "one.tar.gz", [_member("l", tarfile.SYMTYPE, linkname=".")])
    second = _archive(tmp_path / "two.tar.gz", [_member("l/x")])
    dest = tmp_path / "work"
    assert safe_extract(first, dest) == 0
    with pytest.raises(errors.DestinationNotEmpty, match="not an empty directory"):
        safe_extract(second, dest)
    assert _files_under(dest) == {"l"}


def test_a_good_archive_extracts_byte_identical(tmp_path: Path) -> None:
    files = {
        "./train.py": b"print('hi')\n",
        "conf/space.json": b'{"x": 1}',
        "run.sh": b"#!/bin/sh\necho run\n",
        "empty.yaml": b"",
        "data/blob.bin": os.urandom(300_000),
    }
    members = [_member(".", tarfile.DIRTYPE, mode=0o755), _member("conf/", tarfile.DIRTYPE, mode=0o700)]
    members += [_member(name, mode=0o755 if name.endswith(".sh") else 0o600) for name in files]
    members.append(_member("conf/alias.json", tarfile.SYMTYPE, linkname="space.json"))
    members.append(_member("conf/up.py", tarfile.SYMTYPE, linkname="../train.py"))
    members.append(_member("copy.py", tarfile.LNKTYPE, linkname="./train.py"))
    archive = _archive(tmp_path / "ok.tar.gz", members, files)
    dest = tmp_path / "work"
    assert safe_extract(archive, dest) == 6
    for name, data in files.items():
        assert (dest / name).read_bytes() == data
    assert (dest / "conf" / "alias.json").read_bytes() == files["conf/space.json"]
    assert (dest / "conf" / "up.py").read_bytes() == files["./train.py"]
    assert (dest / "copy.py").read_bytes() == files["./train.py"]
    assert os.readlink(dest / "conf" / "alias.json") == "space.json"
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "conf" / "space.json").stat().st_mode) == 0o644
    assert _files_under(dest) == {
        "train.py", "conf", "conf/space.json", "conf/alias.json", "conf/up.py", "run.sh", "empty.yaml",
        "data", "data/blob.bin", "copy.py",
    }  # fmt: skip


def test_an_existing_empty_directory_is_a_fine_destination(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "ok.tar.gz", [_member("a.py")], {"a.py": b"x = 1\n"})
    (tmp_path / "work").mkdir()
    assert safe_extract(archive, tmp_path / "work") == 1
    assert (tmp_path / "work" / "a.py").read_bytes() == b"x = 1\n"
