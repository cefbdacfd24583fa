"""After the payload: its metadata file (``--evaluationMeta``) and metrics (``--evaluationMetrics``).

As runHPO does (docs/evaluation-contract.md#metadata-and-metrics): a metadata file holding a JSON object of at most
1 MB goes with the completion report; a metrics file or directory is renamed ``<name>_<point>``
and packed into ``[<segment>.]<task>.metrics.<point:06d>.tgz``, which is uploaded. Problems
never change the attempt's outcome: they are returned as notes for the attempt's message.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hposteer.client.artifacts import upload
from hposteer.client.http import ApiClient, ApiError, ServerUnreachable
from hposteer.client.pilot.packing import pack, scan
from hposteer.client.wire import Job


@dataclass(frozen=True)
class MetaSpec:
    file: str
    max_bytes: int


@dataclass(frozen=True)
class MetricsSpec:
    file: str
    archive_name: str
    max_bytes: int
    upload_url: str


def meta_spec(job: Job) -> MetaSpec | None:
    value = job.get("meta")
    return MetaSpec(str(value["file"]), int(value["max_bytes"])) if value else None


def metrics_spec(job: Job) -> MetricsSpec | None:
    value = job.get("metrics")
    if not value:
        return None
    return MetricsSpec(
        str(value["file"]), str(value["archive_name"]), int(value["max_bytes"]), str(value["upload_url"])
    )


def _plain(name: str) -> bool:
    return bool(name) and "/" not in name and "\x00" not in name and name not in (".", "..")


def read_meta(workdir: Path, spec: MetaSpec) -> tuple[dict[str, Any] | None, str | None]:
    """(the metadata object, None), or (None, why it is not sent); (None, None) when there is no file."""
    if not _plain(spec.file):
        return None, f"metadata not sent: {spec.file!r} is not a plain file name"
    path = workdir / spec.file
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None, None
    if not stat.S_ISREG(st.st_mode):
        return None, f"metadata not sent: {spec.file} is not a regular file"
    if st.st_size > spec.max_bytes:
        return None, f"metadata not sent: {spec.file} has {st.st_size} bytes, over the limit of {spec.max_bytes}"
    try:
        value = json.loads(path.read_bytes())
    except (ValueError, OSError) as exc:
        return None, f"metadata not sent: {spec.file} is not valid JSON: {exc}"
    if not isinstance(value, dict):
        return None, f"metadata not sent: {spec.file} must hold a JSON object, got {type(value).__name__}"
    encoded = len(json.dumps(value))  # as the service measures it (non-ASCII text grows when escaped)
    if encoded > spec.max_bytes:
        return None, f"metadata not sent: {spec.file} takes {encoded} bytes as JSON, over the limit of {spec.max_bytes}"
    return value, None


def send_metrics(api: ApiClient, job: Job, workdir: Path, spec: MetricsSpec) -> tuple[bool, str | None]:
    """Rename, pack and upload the metrics; (uploaded, a note when something went wrong)."""
    if not _plain(spec.file) or not _plain(spec.archive_name):
        return False, f"metrics not sent: {spec.file!r} is not a plain file name"
    source = workdir / spec.file
    try:
        st = source.lstat()
    except FileNotFoundError:
        return False, None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return False, f"metrics not sent: {spec.file} is neither a file nor a directory"
    renamed = f"{spec.file}_{job['point_id']}"
    archive = workdir / spec.archive_name
    try:
        os.replace(source, workdir / renamed)
        found = scan(workdir, [renamed])
        size = pack(workdir, found.members, archive)
    except OSError as exc:
        return False, f"metrics not sent: cannot pack {spec.file}: {exc}"
    if size > spec.max_bytes:
        return False, f"metrics not sent: {spec.archive_name} has {size} bytes, over the limit of {spec.max_bytes}"
    try:
        upload(api, spec.upload_url, archive, job["lease_token"])
    except ServerUnreachable as exc:
        return False, f"metrics not sent: {exc.reason}"
    except ApiError as exc:
        return False, f"metrics not sent: the server refused them: {exc.message}"
    return True, None
