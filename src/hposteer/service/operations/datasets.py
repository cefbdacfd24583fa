"""Training datasets: uploaded or registered files that pilots stage into working directories.

Rules (docs/datasets.md):

* A dataset belongs to one owner; another owner's dataset does not exist for you (404), and a
  task may only name its owner's datasets.
* Its file list is **append-only**: a file is never replaced or removed, re-sending the same
  file is a no-op, and sending other content under an existing name is a conflict.
* Once a task uses a dataset (``--trainingDS`` or a segment's ``datasets``), the dataset is
  **frozen**: no file may be added any more. So the files a job gets never change during a task,
  and the claim may remember them per (task, segment) for good.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from hposteer.service.core.datasets import (
    DatasetFile,
    dataset_name_problem,
    file_name_problem,
    location_problem,
    sha256_problem,
)
from hposteer.service.core.job_settings import JobSettings
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Conflict, Invalid, NotFound
from hposteer.service.operations.job_views import JobTrainingFileView, JobTrainingView
from hposteer.service.operations.principal import Principal
from hposteer.service.operations.views import DatasetSummaryView, DatasetView
from hposteer.service.store import datasets as store
from hposteer.service.store.blobs import rows as blob_rows
from hposteer.service.store.blobs.base import StoredBlob
from hposteer.service.store.claims import Claim
from hposteer.service.store.datasets import DatasetRecord

log = logging.getLogger("hposteer.datasets")

UPLOADED, REGISTERED = "uploaded", "registered"
_CACHE_MAX = 100_000


def file_url(sha256: str) -> str:
    """Where pilots download an uploaded file (docs/api.md)."""
    return f"/api/v1/pilot/datasets/files/{sha256}"


# -- user side -----------------------------------------------------------------------------------


def check_upload(dataset_name: str, file_name: str) -> None:
    """Refuse bad names before the body is read."""
    issues = []
    if problem := dataset_name_problem(dataset_name):
        issues.append({"field": "dataset", "message": problem})
    if problem := file_name_problem(file_name):
        issues.append({"field": "file", "message": problem})
    if issues:
        raise Invalid("; ".join(i["message"] for i in issues), issues, code="invalid_dataset")


def precheck_upload(
    services: Services, principal: Principal, dataset_name: str, file_name: str, sha256: str
) -> DatasetView | None:
    """Before the body streams in: the dataset if it already holds this very file (nothing to do),
    None if the upload may go ahead; a conflict (other content, frozen, registered) is raised now."""
    check_upload(dataset_name, file_name)
    with services.db.read() as conn:
        dataset = store.get_dataset(conn, principal.owner, dataset_name)
        if dataset is None:
            return None
        _check_kind(dataset, UPLOADED)
        existing = store.get_file(conn, dataset.id, file_name)
        if existing is not None and existing.sha256 == sha256:
            return _view(conn, dataset)
        if existing is not None or dataset.frozen_at is not None:
            _add_files(conn, dataset, [DatasetFile(file_name, None, sha256, None)])  # raises the conflict
    return None


def add_uploaded_file(
    services: Services, principal: Principal, dataset_name: str, file_name: str, blob: StoredBlob
) -> tuple[DatasetView, bool]:
    """Record an uploaded file (its blob is on disk already); (the dataset, whether anything changed)."""
    check_upload(dataset_name, file_name)
    new = DatasetFile(name=file_name, size=blob.size, sha256=blob.sha256, location=None)
    with services.db.write() as conn:
        dataset, created = _dataset_for_change(conn, principal.owner, dataset_name, UPLOADED)
        added = _add_files(conn, dataset, [new])
        if added:
            blob_rows.record_blob(conn, blob, "dataset", principal.owner)
        view = _view(conn, dataset)
    return view, created or added


def register_files(
    services: Services, principal: Principal, dataset_name: str, files: Sequence[dict[str, Any]]
) -> tuple[DatasetView, bool]:
    """Record files reachable on the sites at a path or URL; (the dataset, whether anything changed)."""
    wanted = _registered_files(dataset_name, files)
    with services.db.write() as conn:
        dataset, created = _dataset_for_change(conn, principal.owner, dataset_name, REGISTERED)
        added = _add_files(conn, dataset, wanted)
        view = _view(conn, dataset)
    return view, created or added


def list_datasets(services: Services, principal: Principal) -> list[DatasetSummaryView]:
    with services.db.read() as conn:
        summaries = store.list_datasets(conn, principal.owner)
    return [
        DatasetSummaryView(
            name=s.dataset.name,
            kind=s.dataset.kind,
            created_at=s.dataset.created_at,
            in_use=s.dataset.frozen_at is not None,
            file_count=s.files,
            size=s.size,
        )
        for s in summaries
    ]


def show_dataset(services: Services, principal: Principal, name: str) -> DatasetView:
    with services.db.read() as conn:
        dataset = store.get_dataset(conn, principal.owner, name)
        if dataset is None:
            raise _not_found(name)
        return _view(conn, dataset)


def _registered_files(dataset_name: str, files: Sequence[dict[str, Any]]) -> list[DatasetFile]:
    issues: list[dict[str, Any]] = []
    if problem := dataset_name_problem(dataset_name):
        issues.append({"field": "name", "message": problem})
    if not files:
        issues.append({"field": "files", "message": "name at least one file: {name, location[, sha256][, size]}"})
    seen: set[str] = set()
    result = []
    for i, entry in enumerate(files):
        name, location = entry.get("name"), entry.get("location")
        sha256, size = entry.get("sha256"), entry.get("size")
        if isinstance(sha256, str):
            sha256 = sha256.lower()
        for key, problem in (
            ("name", file_name_problem(name)),
            ("location", location_problem(location)),
            ("sha256", sha256_problem(sha256) if sha256 is not None else None),
            ("size", None if size is None or (isinstance(size, int) and size >= 0) else "must be 0 or more"),
        ):
            if problem:
                issues.append({"field": f"files[{i}].{key}", "message": problem})
        if isinstance(name, str) and name in seen:
            issues.append({"field": f"files[{i}].name", "message": f"file name {name!r} is given twice"})
        if isinstance(name, str):
            seen.add(name)
        result.append(DatasetFile(name=str(name), size=size, sha256=sha256, location=location))
    if issues:
        raise Invalid(
            f"the dataset registration is not valid; nothing was recorded ({issues[0]['field']}: "
            f"{issues[0]['message']})",
            issues,
            code="invalid_dataset",
        )
    return result


def _dataset_for_change(conn: Connection, owner: str, name: str, kind: str) -> tuple[DatasetRecord, bool]:
    """The owner's dataset, locked, created if new; refuses a dataset of the other kind."""
    dataset = store.get_dataset(conn, owner, name, for_update=True)
    if dataset is None:
        try:
            return store.insert_dataset(conn, owner, name, kind), True
        except IntegrityError as exc:
            raise Conflict(
                f"dataset {name!r} was created by another request at the same moment; retry", code="dataset_busy"
            ) from exc
    _check_kind(dataset, kind)
    return dataset, False


def _check_kind(dataset: DatasetRecord, kind: str) -> None:
    if dataset.kind != kind:
        how = "uploaded files" if dataset.kind == UPLOADED else "files registered at site paths or URLs"
        raise Conflict(
            f"dataset {dataset.name!r} holds {how}; it cannot also take {kind} files: use another dataset name",
            code="dataset_kind",
        )


def _add_files(conn: Connection, dataset: DatasetRecord, files: Iterable[DatasetFile]) -> bool:
    """Append the files that are new; identical ones are no-ops, different ones a conflict."""
    new = []
    for file in files:
        existing = store.get_file(conn, dataset.id, file.name)
        if existing is None:
            new.append(file)
        elif existing != file:
            raise Conflict(
                f"dataset {dataset.name!r} already has a file {file.name!r} with other content "
                f"({_describe(existing)}); files are never replaced: use another file name or a new dataset",
                code="dataset_file_exists",
            )
    if new and dataset.frozen_at is not None:
        raise Conflict(
            f"dataset {dataset.name!r} is used by a task and can no longer change (adding "
            f"{', '.join(repr(f.name) for f in new[:3])}); put the files into a new dataset, e.g. "
            f"{dataset.name}.v2",
            code="dataset_frozen",
        )
    for file in new:
        store.insert_file(conn, dataset.id, file)
    return bool(new)


def _describe(file: DatasetFile) -> str:
    parts = [f"at {file.location}"] if file.location else []
    if file.sha256:
        parts.append(f"sha256 {file.sha256[:12]}...")
    if file.size is not None:
        parts.append(f"{file.size} bytes")
    return ", ".join(parts) or "no checksum"


def _view(conn: Connection, dataset: DatasetRecord) -> DatasetView:
    files = store.files_of(conn, [dataset.id]).get(dataset.id, [])
    return DatasetView(
        name=dataset.name,
        kind=dataset.kind,
        created_at=dataset.created_at,
        in_use=dataset.frozen_at is not None,
        file_count=len(files),
        size=sum(f.size or 0 for f in files),
        files=list(files),
    )


def _not_found(name: str) -> NotFound:
    return NotFound(f"you have no dataset {name!r} (`hposteer dataset list` shows yours)", code="dataset_not_found")


# -- pilot side ----------------------------------------------------------------------------------


def pilot_file_path(services: Services, sha256: str) -> Path:
    """An uploaded file a pilot may download: it belongs to a dataset that a task uses."""
    with services.db.read() as conn:
        allowed = store.uploaded_file_in_use(conn, sha256)
    path = services.blobs.path(sha256) if allowed else None
    if path is None:
        raise NotFound(f"no dataset file {sha256} used by a task", code="dataset_file_not_found")
    return path


# -- submission ----------------------------------------------------------------------------------


def _names(values: object) -> list[str] | None:
    return [v for v in values if isinstance(v, str)] if isinstance(values, list) else None


def used_datasets(training_ds: str | None, segments: Sequence[dict[str, Any]] | None) -> set[str]:
    names = {training_ds} if training_ds else set()
    for segment in segments or []:
        names.update(_names(segment.get("datasets")) or [])
    return names


def check_training_data(
    services: Services, owner: str, training_ds: str | None, segments: Sequence[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Submission issues (field + message) about --trainingDS and the segments' files/datasets."""
    names = used_datasets(training_ds, segments)
    if not names and not any(s.get("files") is not None for s in segments or []):
        return []
    with services.db.read() as conn:
        known = store.get_datasets(conn, owner, names)
        files = store.files_of(conn, [d.id for d in known.values()])
    contents = {name: [f.name for f in files.get(d.id, [])] for name, d in known.items()}
    issues: list[dict[str, Any]] = []
    if training_ds:
        issues += _dataset_issues("training_ds", [training_ds], contents)
    for i, segment in enumerate(segments or []):
        issues += _segment_issues(i, segment, training_ds, contents)
    return issues


def _dataset_issues(field: str, names: list[str], contents: dict[str, list[str]]) -> list[dict[str, Any]]:
    issues = []
    for name in names:
        if problem := dataset_name_problem(name):
            issues.append({"field": field, "message": problem})
        elif name not in contents:
            issues.append(
                {
                    "field": field,
                    "message": f"you have no dataset {name!r}: create it first with `hposteer dataset upload "
                    f"{name} FILES...` or `hposteer dataset register {name} ...` (`hposteer dataset list` "
                    "shows yours)",
                }
            )
        elif not contents[name]:
            issues.append({"field": field, "message": f"dataset {name!r} has no files yet"})
    return issues


def _segment_issues(
    i: int, segment: dict[str, Any], training_ds: str | None, contents: dict[str, list[str]]
) -> list[dict[str, Any]]:
    issues: list[dict[str, Any]] = []
    where = f"segments[{i}]"
    files, datasets = segment.get("files"), segment.get("datasets")
    for key, value in (("files", files), ("datasets", datasets)):
        if value is not None and (_names(value) is None or len(_names(value) or []) != len(value)):
            issues.append({"field": f"{where}.{key}", "message": "must be a list of names"})
    if issues:
        return issues
    origin: dict[str, str] = {}  # file name -> the dataset it comes from
    if files is not None:
        if not training_ds:
            issues.append(
                {
                    "field": f"{where}.files",
                    "message": "names files of the training dataset, but the task has none: add --trainingDS NAME",
                }
            )
        elif training_ds in contents:
            have = set(contents[training_ds])
            for name in files:
                if name not in have:
                    issues.append(
                        {
                            "field": f"{where}.files",
                            "message": f"{name!r} is not a file of training dataset {training_ds!r} "
                            f"(it has: {_sample(contents[training_ds])})",
                        }
                    )
                origin[name] = training_ds
    if datasets is not None:
        issues += _dataset_issues(f"{where}.datasets", datasets, contents)
        for dataset in datasets:
            for name in contents.get(dataset, []):
                other = origin.setdefault(name, dataset)
                if other != dataset:
                    issues.append(
                        {
                            "field": f"{where}.datasets",
                            "message": f"file name {name!r} comes from both {other!r} and {dataset!r}; "
                            "a working directory can hold only one file of that name",
                        }
                    )
    return issues


def _sample(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} files)" if len(names) > limit else "")


def freeze_used(
    conn: Connection, owner: str, training_ds: str | None, segments: Sequence[dict[str, Any]] | None
) -> None:
    """In the submission's transaction: the datasets the task uses can no longer change."""
    names = used_datasets(training_ds, segments)
    if names:
        store.freeze(conn, [d.id for d in store.get_datasets(conn, owner, names).values()])


# -- the claim (hot path) ------------------------------------------------------------------------


def job_training(conn: Connection, services: Services, claim: Claim, settings: JobSettings) -> JobTrainingView | None:
    """The job's ``training`` entry (docs/api.md, Job): the files to stage, or None.

    Remembered per (task, segment): the datasets a task uses are frozen (see the module doc).
    """
    key = (claim.task.id, claim.segment.id)
    cache = services.training_files
    if key in cache:
        return cache[key]
    training = _training(conn, claim, settings)
    if len(cache) < _CACHE_MAX:
        cache[key] = training
    return training


def _training(conn: Connection, claim: Claim, settings: JobSettings) -> JobTrainingView | None:
    if not settings.training_dataset and not claim.segment.segmented:
        return None  # only segments (--segmentSpecFile) name files or datasets of their own
    seg_files, seg_datasets = store.segment_data(conn, claim.segment.id)
    training_ds = settings.training_dataset
    if seg_files is None and seg_datasets is None:
        if not training_ds:
            return None
        wanted: list[tuple[str, list[str] | None]] = [(training_ds, None)]  # None: every file
    else:
        wanted = [(training_ds, list(seg_files))] if seg_files is not None and training_ds else []
        wanted += [(name, None) for name in seg_datasets or []]
    known = store.get_datasets(conn, claim.task.owner, {name for name, _ in wanted})
    contents = store.files_of(conn, [d.id for d in known.values()])
    files: dict[str, DatasetFile] = {}
    for name, only in wanted:
        dataset = known.get(name)
        if dataset is None:
            log.warning(
                "task %s: dataset %r of %s is gone; its files are not staged", claim.task.id, name, claim.task.owner
            )
            continue
        by_name = {f.name: f for f in contents.get(dataset.id, [])}
        for file_name in only if only is not None else list(by_name):
            if file_name in by_name:
                files.setdefault(file_name, by_name[file_name])
    return JobTrainingView(settings.training_data_file, [_job_file(f) for f in files.values()])


def _job_file(file: DatasetFile) -> JobTrainingFileView:
    uploaded = file.location is None and file.sha256 is not None
    return JobTrainingFileView(
        name=file.name,
        size=file.size,
        sha256=file.sha256,
        url=file_url(file.sha256) if uploaded and file.sha256 else None,
        location=file.location,
    )
