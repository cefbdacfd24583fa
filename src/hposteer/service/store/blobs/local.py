"""The ``local`` blob store: files under ``<data_dir>/blobs``, named by their sha256. Replicas must
share that directory."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from hposteer.service.store.blobs.base import (
    BlobChecksumMismatch,
    BlobTooLarge,
    BlobWriter,
    StoredBlob,
    blob_path,
    is_sha256,
)


class LocalBlobWriter:
    """One upload streaming into a temporary file under the store's directory, hashed and size-checked
    on the way; :meth:`commit` fsyncs it and renames it to its sha256 path. The ``database`` store
    writes through one too."""

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
        final = blob_path(self._root, sha)
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


class LocalBlobStore:
    """Blobs as files under one directory, named by their sha256."""

    def __init__(self, root: Path):
        self.root = root

    def writer(self, max_bytes: int) -> BlobWriter:
        return LocalBlobWriter(self.root, max_bytes)

    def path(self, sha256: str) -> Path | None:
        if not is_sha256(sha256):
            return None
        path = blob_path(self.root, sha256)
        return path if path.is_file() else None

    def remove(self, sha256: str) -> None:
        if is_sha256(sha256):
            blob_path(self.root, sha256).unlink(missing_ok=True)
