"""Dataset use cases on every backend: append-only files, the freeze at submission, owner scoping."""

from __future__ import annotations

import pytest

from hposteer.service.operations import datasets as dataset_ops
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Conflict, Invalid, NotFound
from hposteer.service.operations.principal import Principal
from hposteer.service.operations.submit import TaskRequest, submit_task
from hposteer.service.store.blobs.base import StoredBlob

ALICE = Principal("alice", "user", 1)
BOB = Principal("bob", "user", 2)
SPACE = {"a": {"method": "categorical", "dimension": {"categories": [1, 2]}}}


def blob(services: Services, data: bytes) -> StoredBlob:
    writer = services.blobs.writer(1 << 20)
    writer.write(data)
    return writer.commit(None)


def test_datasets_freeze_when_a_task_uses_them(backend_services: Services) -> None:
    svc = backend_services
    view, changed = dataset_ops.add_uploaded_file(svc, ALICE, "up", "a.h5", blob(svc, b"a"))
    assert changed and view.file_count == 1
    assert dataset_ops.add_uploaded_file(svc, ALICE, "up", "a.h5", blob(svc, b"a"))[1] is False
    with pytest.raises(Conflict, match="never replaced"):
        dataset_ops.add_uploaded_file(svc, ALICE, "up", "a.h5", blob(svc, b"other"))
    files = [{"name": "r.h5", "location": "https://example.org/r.h5", "sha256": None, "size": None}]
    assert dataset_ops.register_files(svc, ALICE, "reg", files)[1] is True
    assert dataset_ops.register_files(svc, ALICE, "reg", files)[1] is False
    with pytest.raises(Invalid) as bad:
        dataset_ops.register_files(svc, ALICE, "reg", [{"name": "x", "location": "ftp://h/x"}])
    assert bad.value.issues[0]["field"] == "files[0].location"
    with pytest.raises(NotFound):
        dataset_ops.show_dataset(svc, BOB, "up")

    segments = [{"name": "s0", "files": ["a.h5"]}, {"name": "s1", "datasets": ["reg"]}]
    assert dataset_ops.check_training_data(svc, ALICE.owner, "up", segments) == []
    assert dataset_ops.check_training_data(svc, BOB.owner, "up", None)[0]["field"] == "training_ds"
    request = TaskRequest(
        name="t", evaluation_exec="true", search_space=SPACE, optimizer="grid", training_ds="up", segments=segments
    )
    submit_task(svc, ALICE, request, dry_run=True)
    assert not dataset_ops.show_dataset(svc, ALICE, "up").in_use, "a dry run freezes nothing"
    submit_task(svc, ALICE, request, dry_run=False)
    listed = {d.name: d for d in dataset_ops.list_datasets(svc, ALICE)}
    assert listed["up"].in_use and listed["reg"].in_use and listed["up"].size == 1
    with pytest.raises(Conflict, match="used by a task"):
        dataset_ops.add_uploaded_file(svc, ALICE, "up", "b.h5", blob(svc, b"b"))
    sha = dataset_ops.show_dataset(svc, ALICE, "up").files[0].sha256
    assert dataset_ops.pilot_file_path(svc, sha).read_bytes() == b"a"
