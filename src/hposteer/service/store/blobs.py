"""Content-addressed blob storage: sandboxes, checkpoints, metrics and dataset files.

A blob is written to a temporary file while it streams in, hashed and size-checked on the
way, fsynced, and only then renamed to its sha256 path: a 2xx answer means the bytes are on
disk, and a failed upload leaves nothing behind. Stores are plugins resolved by name
(``BLOB_STORES``, setting ``blob_store``):

* ``local``: files under ``<data_dir>/blobs``. Replicas must share that directory.
* ``database``: the bytes in the database too (table ``blob_chunks``, 1 MiB rows), committed
  before the upload is answered; each process keeps a local cache under ``<data_dir>/blobs`` and
  fills it from the database on first use. Replicas then share nothing but the database.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, insert, select

from hposteer.service.store.database import Database, now_expr
from hposteer.service.store.tables import blobs


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


class _LocalWriter:
    def __init__(self, root: Path, max_bytes: int):
        self._root = root
        self._max = max_bytes
        tmp_dir = root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="upload-")
        self._file = os.fdopen(fd, "wb")
        self._tmp = Path(name)
        self._hash = hashlib.sha256()
        self._size = 0

    def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._max:
            self.abort()
            raise BlobTooLarge(self._max)
        self._hash.update(chunk)
        self._file.write(chunk)

    def commit(self, expected_sha256: str | None) -> StoredBlob:
        sha = self._hash.hexdigest()
        if expected_sha256 is not None and expected_sha256.lower() != sha:
            self.abort()
            raise BlobChecksumMismatch(expected_sha256, sha)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        final = _blob_path(self._root, sha)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return StoredBlob(sha, self._size)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


def _blob_path(root: Path, sha256: str) -> Path:
    return root / sha256[:2] / sha256


class LocalBlobStore:
    """Blobs as files under one directory, named by their sha256."""

    def __init__(self, root: Path):
        self.root = root

    def writer(self, max_bytes: int) -> BlobWriter:
        return _LocalWriter(self.root, max_bytes)

    def path(self, sha256: str) -> Path | None:
        if not _is_sha256(sha256):
            return None
        path = _blob_path(self.root, sha256)
        return path if path.is_file() else None

    def remove(self, sha256: str) -> None:
        if _is_sha256(sha256):
            _blob_path(self.root, sha256).unlink(missing_ok=True)


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _database_store(root: Path, db: Database) -> BlobStore:
    from hposteer.service.store.blob_chunks import DatabaseBlobStore  # it builds on this module

    return DatabaseBlobStore(root, db)


BLOB_STORES: dict[str, Callable[[Path, Database], BlobStore]] = {
    "local": lambda root, db: LocalBlobStore(root),
    "database": _database_store,
}


def record_blob(conn: Connection, blob: StoredBlob, kind: str, owner: str) -> bool:
    """Insert the blob's row unless it is there already; True if it was new."""
    exists = conn.execute(select(blobs.c.sha256).where(blobs.c.sha256 == blob.sha256)).first()
    if exists is not None:
        return False
    conn.execute(
        insert(blobs).values(sha256=blob.sha256, size=blob.size, kind=kind, owner=owner, created_at=now_expr())
    )
    return True


def blob_size(conn: Connection, sha256: str) -> int | None:
    row = conn.execute(select(blobs.c.size).where(blobs.c.sha256 == sha256)).first()
    return None if row is None else int(row.size)
