"""The sandbox: every *.json, *.py, *.sh and *.yaml under the current directory, as PanDA packs it.

The tarball is deterministic (sorted names, zeroed times and owners), so unchanged files
give the same sha256 and the server stores them once. Hidden directories (.git, .venv, ...),
__pycache__ and virtual environments (a directory holding pyvenv.cfg) are left out; a symlink
is packed as the file it points to only when that file is inside the directory, and linked
directories are not entered. Paths in the archive are relative (``sub/file.py``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path

PATTERNS = (".json", ".py", ".sh", ".yaml")
MAX_SANDBOX_BYTES = 100 * 1024 * 1024  # the server's default HPOSTEER_SANDBOX_MAX_BYTES


class SandboxError(Exception):
    """The sandbox cannot be made; the message says why."""


class SandboxTooLarge(SandboxError):
    pass


@dataclass(frozen=True)
class Sandbox:
    data: bytes
    sha256: str
    files: list[str]


def _skipped_dir(path: Path) -> bool:
    return path.name.startswith(".") or path.name == "__pycache__" or (path / "pyvenv.cfg").exists()


def collect(root: Path) -> list[Path]:
    """The files PanDA's `find . -name '*.json' -o ...` would pack, relative to ``root``, sorted."""
    root = root.resolve()
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not _skipped_dir(here / d))
        for name in filenames:
            path = here / name
            if not name.endswith(PATTERNS):
                continue
            real = path.resolve()
            if not real.is_file() or not real.is_relative_to(root):
                continue  # a dangling link, a link to something outside, or not a regular file
            found.append(path.relative_to(root))
    return sorted(found, key=lambda p: p.as_posix())


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _too_large(root: Path, files: list[Path], limit: int) -> SandboxTooLarge:
    sizes = sorted(((root / f).stat().st_size, f.as_posix()) for f in files)[::-1][:5]
    listing = ", ".join(f"{name} ({_size(size)})" for size, name in sizes)
    return SandboxTooLarge(
        f"the sandbox would be above the {_size(limit)} limit (compressed); largest files: {listing}. "
        "Move data out of the submission directory (or give it another extension: only *.json, *.py, "
        "*.sh and *.yaml are packed)."
    )


def build(root: Path, limit: int | None = None) -> Sandbox:
    """Pack the files of ``root``; stops as soon as the archive grows past ``limit`` bytes
    (default MAX_SANDBOX_BYTES)."""
    limit = MAX_SANDBOX_BYTES if limit is None else limit
    root = root.resolve()
    files = collect(root)
    raw = io.BytesIO()
    try:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
            for rel in files:
                path = root / rel
                info = tarfile.TarInfo(rel.as_posix())
                info.size = path.stat().st_size
                info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                with path.open("rb") as f:
                    tar.addfile(info, f)
                if raw.tell() > limit:
                    raise _too_large(root, files, limit)
    except OSError as exc:
        raise SandboxError(f"cannot pack {exc.filename or 'a file'} into the sandbox: {exc.strerror or exc}") from None
    data = raw.getvalue()
    if len(data) > limit:
        raise _too_large(root, files, limit)
    return Sandbox(data, hashlib.sha256(data).hexdigest(), [f.as_posix() for f in files])


def missing_from_sandbox(command: str, sandbox: Sandbox, root: Path) -> list[str]:
    """Warnings for the words of ``command`` (the evaluationExec) that name a file of the working
    directory the sandbox does not hold: in the container the payload would not find it."""
    try:
        words = shlex.split(command)
    except ValueError:
        return []  # unbalanced quotes: the shell on the pilot will say so
    packed = set(sandbox.files)
    warnings: list[str] = []
    for word in words:
        name = word.removeprefix("./")
        if not name or name.startswith(("/", "-", "$", "~")) or "=" in name or "%" in name:
            continue  # absolute paths, options, variables and placeholders are the payload's business
        path = root / name
        if name in packed or path.is_dir() or (not path.exists() and not name.endswith(PATTERNS)):
            continue
        if not path.exists():
            warnings.append(f"--evaluationExec names {word}, which is not in this directory, so not in the sandbox")
        else:
            why = (
                "the sandbox packs only *.json, *.py, *.sh and *.yaml files"
                if not name.endswith(PATTERNS)
                else "it is left out (a hidden or virtual-environment directory, or a link outside)"
            )
            warnings.append(f"--evaluationExec names {word}, which is not in the sandbox: {why}")
    return warnings
