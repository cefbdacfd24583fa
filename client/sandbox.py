"""The sandbox: every *.json, *.py, *.sh and *.yaml under the current directory, as PanDA packs it.

The tarball is deterministic (sorted names, zeroed times and owners), so unchanged files
give the same sha256 and the server stores them once. Hidden directories (.git, .venv),
__pycache__ and virtual environments are left out; symlinks are followed only when they
stay inside the directory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

PATTERNS = (".json", ".py", ".sh", ".yaml")
MAX_SANDBOX_BYTES = 100 * 1024 * 1024


class SandboxTooLarge(ValueError):
    pass


@dataclass(frozen=True)
class Sandbox:
    data: bytes
    sha256: str
    files: list[str]


def _skipped_dir(path: Path) -> bool:
    return path.name.startswith(".") or path.name == "__pycache__" or (path / "pyvenv.cfg").exists()


def collect(root: Path) -> list[Path]:
    """The files PanDA's `find . -name '*.json' -o ...` would pack, relative to ``root``."""
    root = root.resolve()
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not _skipped_dir(here / d))
        for name in sorted(filenames):
            path = here / name
            if not name.endswith(PATTERNS):
                continue
            real = path.resolve()
            if not real.is_file() or not real.is_relative_to(root):
                continue  # a dangling link, or one pointing outside the directory
            found.append(path.relative_to(root))
    return found


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def build(root: Path, limit: int = MAX_SANDBOX_BYTES) -> Sandbox:
    files = collect(root)
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for rel in files:
            data = (root / rel).read_bytes()
            info = tarfile.TarInfo(rel.as_posix())
            info.size = len(data)
            info.mode = 0o755 if os.access(root / rel, os.X_OK) else 0o644
            tar.addfile(info, io.BytesIO(data))
    data = raw.getvalue()
    if len(data) > limit:
        biggest = sorted(files, key=lambda r: (root / r).stat().st_size, reverse=True)[:5]
        listing = ", ".join(f"{r} ({_size((root / r).stat().st_size)})" for r in biggest)
        raise SandboxTooLarge(
            f"the sandbox is {_size(len(data))} compressed, above the {_size(limit)} limit; "
            f"largest files: {listing}. Move data out of the submission directory (or give it another extension)."
        )
    return Sandbox(data, hashlib.sha256(data).hexdigest(), [f.as_posix() for f in files])
