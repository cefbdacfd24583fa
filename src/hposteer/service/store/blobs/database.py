"""The ``database`` blob store: blob contents in the database, a local file cache per process.

Why: replicas on several machines share the database and nothing else, yet any of them must be
able to hand a pilot the sandbox another one received. An upload is streamed to a local file as
with the ``local`` store, then copied into ``blob_chunks`` (1 MiB rows, one transaction) before
the upload is answered; the local file becomes this process's cached copy. Another process asked
for the blob writes it from the database to its own cache (checked against its sha256) and serves
the file from there. The cache may be wiped at any time; the database holds the truth.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from sqlalchemy import delete, insert, select

from hposteer.service.store.blobs.base import BlobWriter, StoredBlob, blob_path, is_sha256
from hposteer.service.store.blobs.local import LocalBlobStore, LocalBlobWriter
from hposteer.service.store.database import Database
from hposteer.service.store.tables import blob_chunks

CHUNK_BYTES = 1 << 20


class _DatabaseWriter:
    def __init__(self, store: DatabaseBlobStore, max_bytes: int):
        self._store = store
        self._local = LocalBlobWriter(store.root, max_bytes)

    def write(self, chunk: bytes) -> None:
        self._local.write(chunk)

    def commit(self, expected_sha256: str | None) -> StoredBlob:
        blob = self._local.commit(expected_sha256)
        try:
            self._store.copy_in(blob.sha256)
        except BaseException:
            self._store.cache.remove(blob.sha256)
            raise
        return blob

    def abort(self) -> None:
        self._local.abort()


class DatabaseBlobStore:
    def __init__(self, root: Path, db: Database):
        self.root = root
        self.db = db
        self.cache = LocalBlobStore(root)

    def writer(self, max_bytes: int) -> BlobWriter:
        return _DatabaseWriter(self, max_bytes)

    def copy_in(self, sha256: str) -> None:
        """The cached file's bytes into the database, unless they are there already."""
        source = blob_path(self.root, sha256)
        with self.db.write() as conn:
            if conn.execute(select(blob_chunks.c.seq).where(blob_chunks.c.sha256 == sha256).limit(1)).first():
                return
            with source.open("rb") as handle:
                seq = 0
                while True:
                    data = handle.read(CHUNK_BYTES)
                    if not data and seq > 0:
                        break
                    conn.execute(insert(blob_chunks).values(sha256=sha256, seq=seq, data=data))
                    seq += 1
                    if len(data) < CHUNK_BYTES:
                        break

    def path(self, sha256: str) -> Path | None:
        cached = self.cache.path(sha256)
        if cached is not None or not is_sha256(sha256):
            return cached
        return self._fetch(sha256)

    def _fetch(self, sha256: str) -> Path | None:
        """Write the blob from the database into the cache, checked; None if the database lacks it."""
        final = blob_path(self.root, sha256)
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="fetch-")
        digest = hashlib.sha256()
        found = False
        try:
            with os.fdopen(fd, "wb") as out, self.db.read() as conn:
                seq = 0
                while True:
                    row = conn.execute(
                        select(blob_chunks.c.data).where(blob_chunks.c.sha256 == sha256, blob_chunks.c.seq == seq)
                    ).first()
                    if row is None:
                        break
                    found = True
                    digest.update(row.data)
                    out.write(row.data)
                    seq += 1
            if not found:
                return None
            if digest.hexdigest() != sha256:
                raise OSError(f"blob {sha256} in the database does not match its sha256 (damaged?)")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(name, final)
            return final
        finally:
            Path(name).unlink(missing_ok=True)

    def remove(self, sha256: str) -> None:
        with self.db.write() as conn:
            conn.execute(delete(blob_chunks).where(blob_chunks.c.sha256 == sha256))
        self.cache.remove(sha256)
