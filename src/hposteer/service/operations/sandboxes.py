"""Sandboxes: content-addressed tarballs of the user's files (PanDA's jobO.<uuid>.tar)."""

from __future__ import annotations

from pathlib import Path

from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import NotFound
from hposteer.service.operations.principal import Principal
from hposteer.service.store.blobs import rows as blob_rows
from hposteer.service.store.blobs.base import StoredBlob


def record_sandbox(services: Services, principal: Principal, blob: StoredBlob) -> bool:
    """Record an uploaded sandbox; True if it was new."""
    with services.db.write() as conn:
        return blob_rows.record_blob(conn, blob, "sandbox", principal.owner)


def has_sandbox(services: Services, sha256: str) -> bool:
    with services.db.read() as conn:
        known = blob_rows.blob_size(conn, sha256) is not None
    return known and services.blobs.path(sha256) is not None


def sandbox_path(services: Services, sha256: str) -> Path:
    path = services.blobs.path(sha256) if has_sandbox(services, sha256) else None
    if path is None:
        raise NotFound(f"no sandbox {sha256}", code="sandbox_not_found")
    return path
