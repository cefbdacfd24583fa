"""Bodies of the artifact routes, and the job's checkpoint/meta/metrics entries (docs/api.md)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class RestoreRefOut(BaseModel):
    sha256: str
    size: int
    url: str


class JobCheckpointOut(BaseModel):
    save: list[str]
    load_as: str | None
    interval_s: float
    max_bytes: int
    upload_url: str
    restore: RestoreRefOut | None


class JobMetaOut(BaseModel):
    file: str
    max_bytes: int


class JobMetricsOut(BaseModel):
    file: str
    archive_name: str
    max_bytes: int
    upload_url: str


class UploadOut(BaseModel):
    id: int
    kind: str
    point_id: int
    name: str
    sha256: str
    size: int


class ArtifactOut(BaseModel):
    id: int
    kind: str
    point_id: int
    attempt: int | None
    name: str
    sha256: str
    size: int
    created_at: float
    url: str


class ArtifactListOut(BaseModel):
    artifacts: list[ArtifactOut]


class AttemptMetaOut(BaseModel):
    number: int
    state: str
    meta: Any


class PointMetaOut(BaseModel):
    point_id: int
    attempts: list[AttemptMetaOut]


class MetaListOut(BaseModel):
    points: list[PointMetaOut]
    next_after: int | None
