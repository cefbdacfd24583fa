"""The ``database`` blob store on both backends: what one replica receives, another serves from
the database; nothing is answered before the bytes are committed; damage is detected."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from hposteer.service.operations.context import Services
from hposteer.service.store.blobs.base import BlobStore
from hposteer.service.store.blobs.database import CHUNK_BYTES
from hposteer.service.store.blobs.registry import BLOB_STORES
from hposteer.service.store.tables import blob_chunks


def store(services: Services, root: Path) -> BlobStore:
    return BLOB_STORES["database"](root, services.db)


def put(blobs: BlobStore, data: bytes, step: int = 300_000) -> str:
    writer = blobs.writer(16 * CHUNK_BYTES)
    for start in range(0, len(data), step):
        writer.write(data[start : start + step])
    return writer.commit(hashlib.sha256(data).hexdigest()).sha256


def chunks(services: Services, sha: str) -> int:
    with services.db.read() as conn:
        return int(conn.execute(select(func.count()).where(blob_chunks.c.sha256 == sha)).scalar_one())


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES, 2 * CHUNK_BYTES + 12345])
def test_a_blob_one_replica_received_is_served_by_another(
    backend_services: Services, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    first, second = store(backend_services, tmp_path / "replica1"), store(backend_services, tmp_path / "replica2")
    sha = put(first, data)
    assert chunks(backend_services, sha) == max(1, -(-size // CHUNK_BYTES))
    assert first.path(sha) is not None and first.path(sha).read_bytes() == data  # type: ignore[union-attr]
    assert not (tmp_path / "replica2").exists(), "nothing cached on the other replica yet"
    served = second.path(sha)
    assert served is not None and served.read_bytes() == data
    assert list((tmp_path / "replica2" / "tmp").iterdir()) == [], "no partial file left"
    assert put(second, data) == sha and chunks(backend_services, sha) == max(1, -(-size // CHUNK_BYTES))
    second.remove(sha)
    assert chunks(backend_services, sha) == 0 and second.path(sha) is None
    assert store(backend_services, tmp_path / "replica3").path(sha) is None


def test_unknown_and_damaged_blobs(backend_services: Services, tmp_path: Path) -> None:
    blobs = store(backend_services, tmp_path / "a")
    assert blobs.path("0" * 64) is None and blobs.path("../../etc/passwd") is None
    sha = put(blobs, b"hello " * 1000)
    with backend_services.db.write() as conn:
        conn.execute(update(blob_chunks).where(blob_chunks.c.sha256 == sha).values(data=b"tampered"))
    with pytest.raises(OSError, match="does not match its sha256"):
        store(backend_services, tmp_path / "b").path(sha)
    assert list((tmp_path / "b" / "tmp").iterdir()) == []


def test_a_refused_upload_stores_nothing(backend_services: Services, tmp_path: Path) -> None:
    blobs = store(backend_services, tmp_path)
    writer = blobs.writer(10)
    writer.write(b"12345")
    with pytest.raises(ValueError, match="limit of 10 bytes"):
        writer.write(b"678901")
    writer = blobs.writer(100)
    writer.write(b"data")
    with pytest.raises(ValueError, match="X-Content-SHA256"):
        writer.commit("0" * 64)
    with backend_services.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(blob_chunks)).scalar_one() == 0
    assert list((tmp_path / "tmp").iterdir()) == []
