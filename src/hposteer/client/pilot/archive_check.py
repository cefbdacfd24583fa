"""Checking a sandbox archive member by member before anything is written (see extract.py).

The archive is read as a sequential tar stream over a capped gzip reader: the decompressed
bytes may not exceed what the members seen so far account for (their sizes plus 16 KiB of
headers each), so oversized pax or long-name headers and decompression bombs stop early.
"""

from __future__ import annotations

import gzip
import posixpath
import stat
import tarfile
import time
import zlib
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from hposteer.client.pilot.archive_errors import (
    AbsolutePath,
    CorruptArchive,
    LinkNotAllowed,
    LinkOutside,
    NameConflict,
    NameTooLong,
    NotGzip,
    NulInName,
    PathTraversal,
    SetuidBit,
    SparseMember,
    SpecialFile,
    ThroughSymlink,
    TooLarge,
    TooManyMembers,
)

GZIP_MAGIC = b"\x1f\x8b"
_OTHER_MAGIC = {b"\xfd7zXZ": "xz", b"BZh": "bzip2", b"PK\x03\x04": "zip", b"(\xb5/\xfd": "zstd"}
_HEADER_ALLOWANCE = 16 * 1024  # decompressed header bytes allowed per member (pax, long names)
_SLACK = 1024 * 1024  # read-ahead of the tar reader and the end-of-archive blocks
_MAX_LINK_HOPS = 40


@dataclass(frozen=True)
class Limits:
    max_members: int = 10_000
    max_expanded_bytes: int = 1024**3
    max_name_bytes: int = 4096
    max_component_bytes: int = 255
    max_seconds: float = 120.0
    # Checkpoints are unpacked over a populated directory, where a link of the archive could
    # combine with one already there (the two-archive attack, docs/reliability.md#hostile-input): refuse links.
    allow_links: bool = True


DEFAULT_LIMITS = Limits()


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _CappedReader:
    """The decompressed stream, refusing to deliver more than the budget the checker allows."""

    def __init__(self, raw: _Readable, budget: Budget):
        self._raw = raw
        self._budget = budget
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        allowed = self._budget.allowed() - self.count
        want = allowed + 1 if size is None or size < 0 else min(size, allowed + 1)
        data = self._raw.read(max(want, 0))
        self.count += len(data)
        if self.count > self._budget.allowed():
            raise TooLarge(
                f"the archive expands beyond what its members account for ({self.count} bytes read; "
                "oversized headers or a decompression bomb)"
            )
        return data


@dataclass
class Budget:
    limits: Limits
    members: int = 0
    data_bytes: int = 0  # sizes of the members seen, padded to tar blocks

    def allowed(self) -> int:
        return self.data_bytes + (self.members + 1) * _HEADER_ALLOWANCE + _SLACK


@dataclass
class _Checker:
    limits: Limits
    budget: Budget
    members: list[tarfile.TarInfo] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # normalized name -> file | dir | link
    symlinks: dict[str, str] = field(default_factory=dict)  # normalized name -> link target
    total: int = 0

    def check(self, member: tarfile.TarInfo) -> str:
        """Validate one member; returns its normalized name."""
        self.members.append(member)
        if len(self.members) > self.limits.max_members:
            raise TooManyMembers(f"the archive has more than {self.limits.max_members} members")
        name = self._check_name(member.name, "member name")
        if member.sparse is not None or member.type == tarfile.GNUTYPE_SPARSE:
            raise SparseMember(f"sparse member {name!r} (claims {member.size} bytes)")
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise SpecialFile(f"member {name!r} is a device, FIFO or other special file")
        if member.mode & (stat.S_ISUID | stat.S_ISGID):
            raise SetuidBit(f"member {name!r} has the setuid or setgid bit (mode {member.mode:o})")
        if name == ".":
            if not member.isdir():
                raise NameConflict(f"member {member.name!r} would replace the destination directory")
            return name
        self._check_place(name, member)
        if member.issym():
            self._check_symlink(name, member.linkname)
        elif member.islnk():
            self._check_hardlink(name, member.linkname)
        if (member.issym() or member.islnk()) and not self.limits.allow_links:
            kind = "symbolic" if member.issym() else "hard"
            raise LinkNotAllowed(f"member {name!r} is a {kind} link ({member.linkname!r}); this archive may hold none")
        size = max(member.size, 0) if member.isreg() else 0
        self.total += size
        if self.total > self.limits.max_expanded_bytes:
            raise TooLarge(f"the archive expands to more than {self.limits.max_expanded_bytes} bytes")
        self.budget.members += 1
        self.budget.data_bytes += -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        return name

    def _check_name(self, raw: str, what: str) -> str:
        if "\x00" in raw:
            raise NulInName(f"{what} contains a NUL byte: {raw!r}")
        encoded = raw.encode("utf-8", "surrogateescape")
        if len(encoded) > self.limits.max_name_bytes:
            raise NameTooLong(
                f"{what} is {len(encoded)} bytes long (limit {self.limits.max_name_bytes}): {raw[:60]!r}..."
            )
        for part in raw.split("/"):
            if len(part.encode("utf-8", "surrogateescape")) > self.limits.max_component_bytes:
                raise NameTooLong(f"{what} has a component longer than {self.limits.max_component_bytes} bytes")
        if raw.startswith("/"):
            raise AbsolutePath(f"absolute {what}: {raw!r}")
        if ".." in raw.split("/"):
            raise PathTraversal(f"{what} escapes the directory with '..': {raw!r}")
        return posixpath.normpath(raw)

    def _check_place(self, name: str, member: tarfile.TarInfo) -> None:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            kind = self.kinds.get(prefix)
            if kind == "link":
                raise ThroughSymlink(f"member {name!r} goes through the archive's symlink {prefix!r}")
            if kind == "file":
                raise NameConflict(f"member {name!r} uses the file {prefix!r} as a directory")
            self.kinds.setdefault(prefix, "dir")
        previous = self.kinds.get(name)
        kind = "dir" if member.isdir() else "link" if member.issym() else "file"
        if previous is not None and not (previous == kind == "dir"):
            raise NameConflict(f"member {name!r} appears twice in the archive")
        self.kinds[name] = kind

    def _check_symlink(self, name: str, target: str) -> None:
        self._check_link_text(name, target)
        if target.startswith("/"):
            raise LinkOutside(f"symlink {name!r} points to the absolute path {target!r}")
        if self._resolve(posixpath.dirname(name), target) is None:
            raise LinkOutside(f"symlink {name!r} points outside the directory: {target!r}")
        self.symlinks[name] = target

    def _check_hardlink(self, name: str, target: str) -> None:
        self._check_link_text(name, target)
        normal = posixpath.normpath(target)
        if target.startswith("/") or normal == ".." or normal.startswith("../"):
            raise LinkOutside(f"hard link {name!r} points outside the directory: {target!r}")
        if self.kinds.get(normal) != "file" or normal == name:
            raise LinkOutside(f"hard link {name!r} -> {target!r} is not to an earlier regular file of the archive")

    def _check_link_text(self, name: str, target: str) -> None:
        if "\x00" in target:
            raise NulInName(f"the target of link {name!r} contains a NUL byte")
        if len(target.encode("utf-8", "surrogateescape")) > self.limits.max_name_bytes:
            raise NameTooLong(f"the target of link {name!r} is longer than {self.limits.max_name_bytes} bytes")

    def _resolve(self, base: str, target: str) -> list[str] | None:
        """Where ``target`` (relative to directory ``base``) lands, following the archive's
        symlinks as the file system will; None when it leaves the directory."""
        out: list[str] = []
        queue = deque(p for p in f"{base}/{target}".split("/"))
        hops = 0
        while queue:
            part = queue.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if not out:
                    return None
                out.pop()
                continue
            out.append(part)
            link = self.symlinks.get("/".join(out))
            if link is not None:
                hops += 1
                if hops > _MAX_LINK_HOPS or link.startswith("/"):
                    return None
                out.pop()
                queue.extendleft(reversed(link.split("/")))
        return out


@contextmanager
def open_tar(archive: Path, budget: Budget) -> Iterator[tarfile.TarFile]:
    """The archive as a sequential tar stream over a capped gzip reader."""
    with archive.open("rb") as raw:
        magic = raw.read(6)
        if not magic.startswith(GZIP_MAGIC):
            kind = next((k for m, k in _OTHER_MAGIC.items() if magic.startswith(m)), None)
            found = "an empty file" if not magic else f"{kind} data" if kind else "not gzip"
            raise NotGzip(f"{archive.name} is not a gzip-compressed tar (wrong magic bytes: {found})")
        raw.seek(0)
        with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            with tarfile.open(fileobj=_CappedReader(gz, budget), mode="r|") as tar:  # type: ignore[call-overload]
                yield tar


def read_through(tar: tarfile.TarFile, member: tarfile.TarInfo, out: IO[bytes] | None = None) -> None:
    stream = tar.extractfile(member)
    remaining = member.size
    while remaining > 0:
        chunk = stream.read(min(remaining, 1 << 20)) if stream is not None else b""
        if not chunk:
            raise CorruptArchive(f"the data of {member.name!r} is cut short")
        if out is not None:
            out.write(chunk)
        remaining -= len(chunk)


def unreadable(archive: Path, exc: BaseException) -> CorruptArchive:
    return CorruptArchive(f"{archive.name} is not a readable tar.gz: {exc.__class__.__name__}: {exc}")


def check_archive(archive: Path, limits: Limits = DEFAULT_LIMITS) -> list[tuple[tarfile.TarInfo, str]]:
    """Validate every member without writing anything; returns (member, normalized name) pairs."""
    budget = Budget(limits)
    checker = _Checker(limits, budget)
    checked: list[tuple[tarfile.TarInfo, str]] = []
    deadline = time.monotonic() + limits.max_seconds
    try:
        with open_tar(archive, budget) as tar:
            for member in tar:
                checked.append((member, checker.check(member)))
                if member.isreg():
                    read_through(tar, member)  # a truncated or corrupt stream fails here, before any write
                if time.monotonic() > deadline:
                    raise CorruptArchive(f"checking {archive.name} took longer than {limits.max_seconds:g} s")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise unreadable(archive, exc) from exc
    return checked
