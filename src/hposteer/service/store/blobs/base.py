"""What both blob stores (``local``, ``database``) share: the protocols, ``StoredBlob``, the upload
errors, and where a blob's file lives under a store's directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class BlobTooLarge(ValueError):
    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(f"the upload exceeds the limit of {limit} bytes")


class BlobChecksumMismatch(ValueError):
    def __init__(self, expected: str, actual: str):
        super().__init__(f"the upload's sha256 is {actual}, but X-Content-SHA256 said {expected}")


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int


class BlobWriter(Protocol):
    def write(self, chunk: bytes) -> None: ...

    def commit(self, expected_sha256: str | None) -> StoredBlob: ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    def writer(self, max_bytes: int) -> BlobWriter: ...

    def path(self, sha256: str) -> Path | None:
        """A local file holding the blob, or None when the store has no such blob."""
        ...

    def remove(self, sha256: str) -> None:
        """Forget the blob (no row refers to it any more)."""
        ...


def blob_path(root: Path, sha256: str) -> Path:
    return root / sha256[:2] / sha256


def is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
