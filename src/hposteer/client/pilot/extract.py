"""Safe extraction of sandbox tarballs into a fresh, empty directory.

Two passes over the archive. The first checks every member against our own rules and
writes nothing; the second writes the members itself (``O_CREAT|O_EXCL|O_NOFOLLOW``, modes
masked to 0644/0755, no owners) after tarfile's ``data_filter`` agrees as well. The filter is
only defence in depth: it has been bypassed repeatedly (docs/reliability.md#hostile-input), and this
machine's Python lacks the 2025 fixes. Pythons older than 3.11.4 (Debian bookworm's 3.11.2) have
no filter at all; our own rules then stand alone. If anything still fails while writing, whatever was
written is removed again, so a refused archive never leaves files behind.

Rules, each with its own exception (src/hposteer/client/pilot/archive_errors.py): gzip input only, by the
magic bytes; no absolute names, no ``..``, no NUL, names at most 4096 bytes (components 255);
symlinks must resolve inside the directory (following the archive's other symlinks) and no
member may go through one; hard links only to an earlier regular file of the archive; no
devices, FIFOs or sparse members; no setuid/setgid bits; at most 10,000 members and 1 GiB of
expanded data. The decompressed stream itself is capped too, so oversized pax or long-name
headers cannot exhaust memory.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import zlib
from pathlib import Path

from hposteer.client.pilot.archive_check import (
    DEFAULT_LIMITS,
    Budget,
    Limits,
    check_archive,
    open_tar,
    read_through,
    unreadable,
)
from hposteer.client.pilot.archive_errors import CorruptArchive, DestinationNotEmpty, UnsafeArchive

__all__ = ["DEFAULT_LIMITS", "Limits", "UnsafeArchive", "check_archive", "safe_extract"]


def safe_extract(archive: Path, dest: Path, limits: Limits = DEFAULT_LIMITS) -> int:
    """Extract ``archive`` into ``dest`` (created, or empty); returns the number of files written.

    Raises an :class:`UnsafeArchive` subclass, having written nothing, when any rule is broken.
    """
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        raise DestinationNotEmpty(f"{dest} is not an empty directory; sandboxes are only extracted into fresh ones")
    checked = check_archive(archive, limits)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return _write(archive, dest, checked, limits)
    except BaseException:
        for child in dest.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        raise


def _write(archive: Path, dest: Path, checked: list[tuple[tarfile.TarInfo, str]], limits: Limits) -> int:
    root = os.path.realpath(dest)
    budget = Budget(limits, members=len(checked), data_bytes=limits.max_expanded_bytes + len(checked) * 512)
    files = 0
    try:
        with open_tar(archive, budget) as tar:
            for (expected, name), member in zip(checked, tar, strict=True):
                if member.name != expected.name or member.size != expected.size or member.type != expected.type:
                    raise CorruptArchive(f"{archive.name} changed while it was being extracted")
                if name == ".":
                    continue
                _second_opinion(member, root)
                files += _write_member(tar, member, Path(root), name)
    except (tarfile.TarError, EOFError, zlib.error, ValueError) as exc:
        if isinstance(exc, UnsafeArchive):
            raise
        raise unreadable(archive, exc) from exc
    return files


def _second_opinion(member: tarfile.TarInfo, root: str) -> None:
    """tarfile's data filter, where this Python has one (3.11.4 and later)."""
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is None:
        return
    try:
        data_filter(member, root)
    except tarfile.FilterError as exc:
        raise UnsafeArchive(f"tarfile's data filter refuses {member.name!r}: {exc}") from exc


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path, name: str) -> int:
    path = root / name
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if member.isdir():
        if not path.is_dir() or path.is_symlink():
            path.mkdir(mode=0o755)
        return 0
    if member.issym():
        os.symlink(member.linkname, path)
        return 0
    if member.islnk():
        os.link(root / posixpath.normpath(member.linkname), path, follow_symlinks=False)
        return 1
    mode = 0o755 if member.mode & 0o111 else 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(fd, mode)  # exactly 0644 or 0755, whatever the umask and the archive say
        read_through(tar, member, out)
        os.utime(fd, (member.mtime, member.mtime))
    return 1
