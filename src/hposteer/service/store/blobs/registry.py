"""The blob stores by name (setting ``blob_store``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hposteer.service.store.blobs.base import BlobStore
from hposteer.service.store.blobs.database import DatabaseBlobStore
from hposteer.service.store.blobs.local import LocalBlobStore
from hposteer.service.store.database import Database

BLOB_STORES: dict[str, Callable[[Path, Database], BlobStore]] = {
    "local": lambda root, db: LocalBlobStore(root),
    "database": DatabaseBlobStore,
}
