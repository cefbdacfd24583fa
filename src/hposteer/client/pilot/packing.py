"""Packing files of a working directory into a tar.gz (checkpoints, metrics), without following links.

Only regular files and directories are packed, under their names relative to the working
directory; symbolic links and special files are skipped (and reported), so an archive made
here never needs more than the checkpoint validator allows when it is unpacked again.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

COMPRESS_LEVEL = 6  # what `tar czf` uses: PanDA's speed/size trade-off

# (relative name, mtime in ns, size) of each file, and (name, -1, -1) of each directory.
Signature = frozenset[tuple[str, int, int]]


class BadPath(ValueError):
    """A listed path that is not relative to the working directory."""


def relative_name(entry: str) -> str:
    """``entry`` (``a``, ``b/``, ``./c``) normalized; absolute names and ``..`` are refused."""
    name = posixpath.normpath(entry.strip())
    if not entry.strip() or entry.startswith("/") or name == ".." or name.startswith("../") or "\x00" in entry:
        raise BadPath(f"{entry!r} is not a path inside the working directory")
    return name


@dataclass
class Scan:
    """What exists under the listed paths now."""

    members: list[str] = field(default_factory=list)  # relative names, parents before children
    signature: Signature = frozenset()
    skipped: list[str] = field(default_factory=list)  # links and special files, not packed
    files: int = 0


def scan(workdir: Path, entries: list[str]) -> Scan:
    out = Scan()
    seen: set[tuple[str, int, int]] = set()
    for entry in entries:
        _visit(workdir, relative_name(entry), out, seen)
    out.signature = frozenset(seen)
    return out


def _visit(workdir: Path, name: str, out: Scan, seen: set[tuple[str, int, int]]) -> None:
    path = workdir / name if name != "." else workdir
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode):
        key = (name, st.st_mtime_ns, st.st_size)
        if key not in seen:
            seen.add(key)
            out.members.append(name)
            out.files += 1
        return
    if not stat.S_ISDIR(st.st_mode):
        out.skipped.append(name)
        return
    if name != "." and (name, -1, -1) not in seen:
        seen.add((name, -1, -1))
        out.members.append(name)
    for child in sorted(os.listdir(path)):
        _visit(workdir, child if name == "." else f"{name}/{child}", out, seen)


def _clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
    return info


def pack(workdir: Path, members: list[str], dest: Path) -> int:
    """Write ``members`` (from :func:`scan`) to the tar.gz ``dest``; returns its size in bytes.

    A file that changes size while it is read raises OSError: pack again later.
    """
    with tarfile.open(dest, "w:gz", compresslevel=COMPRESS_LEVEL, format=tarfile.PAX_FORMAT) as tar:
        for name in members:
            path = workdir / name
            st = path.lstat()
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                continue  # replaced by a link since the scan
            tar.add(path, arcname=name, recursive=False, filter=_clean)
    return dest.stat().st_size
