"""The rows of the ``blobs`` table: which blobs the service holds, their size, kind and owner."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select

from hposteer.service.store.blobs.base import StoredBlob
from hposteer.service.store.database import now_expr
from hposteer.service.store.tables import blobs


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
