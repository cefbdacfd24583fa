"""Bodies of the artifact routes, and the job's checkpoint/meta/metrics entries (docs/api.md)."""

from __future__ import annotations

from typing import Any

from hposteer.service.api.response_body import ResponseBody


class RestoreRefOut(ResponseBody):
    sha256: str
    size: int
    url: str


class JobCheckpointOut(ResponseBody):
    save: list[str]
    load_as: str | None
    interval_s: float
    max_bytes: int
    upload_url: str
    restore: RestoreRefOut | None


class JobMetaOut(ResponseBody):
    file: str
    max_bytes: int


class JobMetricsOut(ResponseBody):
    file: str
    archive_name: str
    max_bytes: int
    upload_url: str


class UploadOut(ResponseBody):
    id: int
    kind: str
    point_id: int
    name: str
    sha256: str
    size: int


class ArtifactOut(ResponseBody):
    id: int
    kind: str
    point_id: int
    attempt: int | None
    name: str
    sha256: str
    size: int
    created_at: float
    url: str


class ArtifactListOut(ResponseBody):
    artifacts: list[ArtifactOut]


class AttemptMetaOut(ResponseBody):
    number: int
    state: str
    meta: Any


class PointMetaOut(ResponseBody):
    point_id: int
    attempts: list[AttemptMetaOut]


class MetaListOut(ResponseBody):
    points: list[PointMetaOut]
    next_after: int | None
