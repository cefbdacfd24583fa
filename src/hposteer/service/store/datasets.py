"""Datasets and their files: owner-scoped reads, inserts and the freeze (storage only flushes)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from hposteer.service.core.datasets import DatasetFile
from hposteer.service.store.database import now_expr
from hposteer.service.store.records import from_row
from hposteer.service.store.tables import dataset_files, datasets, segments


@dataclass(frozen=True)
class DatasetRecord:
    id: int
    owner: str
    name: str
    kind: str  # uploaded | registered
    created_at: float
    frozen_at: float | None


@dataclass(frozen=True)
class DatasetSummary:
    dataset: DatasetRecord
    files: int
    size: int  # of the files whose size is known


def get_dataset(conn: Connection, owner: str, name: str, *, for_update: bool = False) -> DatasetRecord | None:
    """The owner's dataset of that name; ``for_update`` locks its row (PostgreSQL) until the commit."""
    query = select(datasets).where(datasets.c.owner == owner, datasets.c.name == name)
    row = conn.execute(query.with_for_update() if for_update else query).first()
    return None if row is None else from_row(DatasetRecord, row)


def get_datasets(conn: Connection, owner: str, names: Collection[str]) -> dict[str, DatasetRecord]:
    if not names:
        return {}
    rows = conn.execute(select(datasets).where(datasets.c.owner == owner, datasets.c.name.in_(sorted(names))))
    return {row.name: from_row(DatasetRecord, row) for row in rows}


def insert_dataset(conn: Connection, owner: str, name: str, kind: str) -> DatasetRecord:
    row = conn.execute(
        insert(datasets).values(owner=owner, name=name, kind=kind, created_at=now_expr()).returning(*datasets.c)
    ).one()
    return from_row(DatasetRecord, row)


def list_datasets(conn: Connection, owner: str) -> list[DatasetSummary]:
    counts = (
        select(
            dataset_files.c.dataset_id,
            func.count().label("files"),
            func.coalesce(func.sum(dataset_files.c.size), 0).label("size"),
        )
        .group_by(dataset_files.c.dataset_id)
        .subquery()
    )
    rows = conn.execute(
        select(datasets, counts.c.files, counts.c.size)
        .outerjoin(counts, counts.c.dataset_id == datasets.c.id)
        .where(datasets.c.owner == owner)
        .order_by(datasets.c.name)
    )
    return [DatasetSummary(from_row(DatasetRecord, row), int(row.files or 0), int(row.size or 0)) for row in rows]


def files_of(conn: Connection, dataset_ids: Collection[int]) -> dict[int, list[DatasetFile]]:
    """Each dataset's files, by name."""
    found: dict[int, list[DatasetFile]] = defaultdict(list)
    if not dataset_ids:
        return found
    rows = conn.execute(
        select(dataset_files)
        .where(dataset_files.c.dataset_id.in_(sorted(dataset_ids)))
        .order_by(dataset_files.c.dataset_id, dataset_files.c.name)
    )
    for row in rows:
        found[row.dataset_id].append(_file(row))
    return found


def get_file(conn: Connection, dataset_id: int, name: str) -> DatasetFile | None:
    row = conn.execute(
        select(dataset_files).where(dataset_files.c.dataset_id == dataset_id, dataset_files.c.name == name)
    ).first()
    return None if row is None else _file(row)


def insert_file(conn: Connection, dataset_id: int, file: DatasetFile) -> None:
    conn.execute(
        insert(dataset_files).values(
            dataset_id=dataset_id, name=file.name, size=file.size, sha256=file.sha256, location=file.location
        )
    )


def freeze(conn: Connection, dataset_ids: Collection[int]) -> None:
    """Mark the datasets as used by a task: their file lists never change again."""
    if dataset_ids:
        conn.execute(
            update(datasets)
            .where(datasets.c.id.in_(sorted(dataset_ids)), datasets.c.frozen_at.is_(None))
            .values(frozen_at=now_expr())
        )


def uploaded_file_in_use(conn: Connection, sha256: str) -> bool:
    """True if an uploaded file with this content belongs to a dataset that a task uses."""
    row = conn.execute(
        select(dataset_files.c.id)
        .join(datasets, datasets.c.id == dataset_files.c.dataset_id)
        .where(
            dataset_files.c.sha256 == sha256,
            dataset_files.c.location.is_(None),
            datasets.c.frozen_at.is_not(None),
        )
        .limit(1)
    ).first()
    return row is not None


def segment_data(conn: Connection, segment_id: int) -> tuple[list[str] | None, list[str] | None]:
    """The segment's ``files`` and ``datasets`` as submitted (--segmentSpecFile)."""
    row = conn.execute(select(segments.c.files, segments.c.datasets).where(segments.c.id == segment_id)).first()
    if row is None:
        return None, None
    return row.files, row.datasets


def _file(row: Any) -> DatasetFile:
    return DatasetFile(
        name=row.name,
        size=None if row.size is None else int(row.size),
        sha256=row.sha256,
        location=row.location,
    )
