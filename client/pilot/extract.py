"""Safe extraction of sandbox tarballs into a fresh directory.

Every member is checked before anything is written (so a rejected archive writes
nothing), with our own rules rather than tarfile's filter alone, which has been bypassed
repeatedly (reliability.md §3.4): no absolute names, no '..', no NUL, no over-long names,
no links pointing outside, no devices or FIFOs, no setuid/setgid bits, and caps on the
member count and the expanded size. The archive must be gzip, by its magic bytes.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from pathlib import Path

MAX_MEMBERS = 10_000
MAX_EXPANDED_BYTES = 1024**3
MAX_NAME_BYTES = 4096
GZIP_MAGIC = b"\x1f\x8b"


class UnsafeArchive(ValueError):
    """The archive was refused; nothing was extracted."""


def _inside(name: str) -> bool:
    normal = posixpath.normpath(name)
    return not (normal.startswith("/") or normal == ".." or normal.startswith("../"))


def _check_member(member: tarfile.TarInfo, names: set[str]) -> None:
    name = member.name
    if "\x00" in name:
        raise UnsafeArchive(f"member name contains a NUL byte: {name!r}")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise UnsafeArchive(f"member name longer than {MAX_NAME_BYTES} bytes: {name[:60]!r}...")
    if name.startswith("/") or posixpath.isabs(name):
        raise UnsafeArchive(f"absolute member path: {name!r}")
    if ".." in name.split("/") or not _inside(name):
        raise UnsafeArchive(f"member path escapes the directory: {name!r}")
    if member.mode & (stat.S_ISUID | stat.S_ISGID):
        raise UnsafeArchive(f"member has a setuid/setgid bit: {name!r}")
    if member.issym():
        target = posixpath.join(posixpath.dirname(name), member.linkname)
        if member.linkname.startswith("/") or not _inside(target):
            raise UnsafeArchive(f"symlink points outside the directory: {name!r} -> {member.linkname!r}")
    elif member.islnk():
        if member.linkname not in names:
            raise UnsafeArchive(f"hard link to something outside the archive: {name!r} -> {member.linkname!r}")
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchive(f"member is a device, FIFO or other special file: {name!r}")


def _read_through(tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
    stream = tar.extractfile(member)
    if stream is None:
        return
    remaining = member.size
    while remaining > 0:
        chunk = stream.read(min(remaining, 1 << 20))
        if not chunk:
            raise UnsafeArchive(f"{member.name!r} is truncated")
        remaining -= len(chunk)


def check_archive(archive: Path) -> list[tarfile.TarInfo]:
    """Validate every member; returns them, or raises UnsafeArchive."""
    with archive.open("rb") as raw:
        if raw.read(2) != GZIP_MAGIC:
            raise UnsafeArchive(f"{archive.name} is not a gzip-compressed tar (wrong magic bytes)")
    members: list[tarfile.TarInfo] = []
    names: set[str] = set()
    total = 0
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                members.append(member)
                if len(members) > MAX_MEMBERS:
                    raise UnsafeArchive(f"more than {MAX_MEMBERS} members")
                _check_member(member, names)
                total += max(member.size, 0)
                if member.sparse is not None or total > MAX_EXPANDED_BYTES:
                    raise UnsafeArchive(f"expands beyond {MAX_EXPANDED_BYTES} bytes (or has sparse members)")
                if member.isfile():
                    _read_through(tar, member)  # a truncated or corrupt stream fails here, before any write
                names.add(posixpath.normpath(member.name))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UnsafeArchive(f"{archive.name} is not a readable tar.gz: {exc}") from exc
    return members


def safe_extract(archive: Path, dest: Path) -> int:
    """Extract a checked archive into ``dest``; returns the number of files written."""
    members = check_archive(archive)
    dest.mkdir(parents=True, exist_ok=True)
    real_dest = os.path.realpath(dest)
    count = 0
    with tarfile.open(archive, "r:gz") as tar:
        for member in members:
            target = os.path.realpath(os.path.join(real_dest, member.name))
            if os.path.commonpath([real_dest, target]) != real_dest:
                raise UnsafeArchive(f"member would land outside the directory: {member.name!r}")
            tar.extract(member, dest, set_attrs=False, filter="data")
            count += member.isfile()
    return count
