"""Local files as the API client streams and checks them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 20


class FileChunks:
    """A file as an iterable of chunks, read anew each time it is iterated (so a retry resends it)."""

    def __init__(self, path: Path, chunk: int = CHUNK):
        self.path = path
        self.chunk = chunk

    def __iter__(self) -> Iterator[bytes]:
        with self.path.open("rb") as f:
            while data := f.read(self.chunk):
                yield data


def sha256_of(path: Path) -> tuple[str, int]:
    """The file's sha256 (hex) and size, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
