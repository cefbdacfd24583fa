"""Dataset routes: users upload, register, list and show their datasets; pilots download files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from hposteer.service.api.dataset_schemas import DatasetListOut, DatasetOut, DatasetRegistrationIn
from hposteer.service.api.deps import PilotDep, ServicesDep, UserDep
from hposteer.service.api.uploads import receive_blob
from hposteer.service.core.datasets import sha256_problem
from hposteer.service.operations import datasets as dataset_ops
from hposteer.service.operations.errors import Invalid
from hposteer.service.operations.views import DatasetListView, DatasetView
from hposteer.service.store.blobs.base import BlobTooLarge

router = APIRouter(prefix="/api/v1", tags=["datasets"])


@router.get("/datasets", response_model=DatasetListOut)
def get_datasets(svc: ServicesDep, principal: UserDep) -> DatasetListView:
    return DatasetListView(dataset_ops.list_datasets(svc, principal))


@router.get("/datasets/{name}", response_model=DatasetOut)
def get_dataset(name: str, svc: ServicesDep, principal: UserDep) -> DatasetView:
    return dataset_ops.show_dataset(svc, principal, name)


@router.post("/datasets", response_model=DatasetOut, status_code=201)
def post_dataset(body: DatasetRegistrationIn, svc: ServicesDep, principal: UserDep, response: Response) -> DatasetView:
    """Register files reachable on the sites (201 if anything was added, 200 if all was there)."""
    files = [f.model_dump() for f in body.files]
    view, changed = dataset_ops.register_files(svc, principal, body.name, files)
    if not changed:
        response.status_code = 200
    return view


@router.put("/datasets/{name}/files/{file_name}", response_model=DatasetOut, status_code=201)
async def put_dataset_file(
    name: str,
    file_name: str,
    request: Request,
    svc: ServicesDep,
    principal: UserDep,
    response: Response,
    x_content_sha256: Annotated[str | None, Header()] = None,
    content_length: Annotated[int | None, Header()] = None,
) -> DatasetView:
    """Stream one file into the dataset (created if new); 200 when it held this very file already."""
    sha256 = (x_content_sha256 or "").lower()
    if problem := sha256_problem(sha256):
        raise Invalid(
            f"send the file's sha256 in the X-Content-SHA256 header ({problem})",
            [{"field": "X-Content-SHA256", "message": problem}],
            code="checksum_required",
        )
    limit = svc.settings.dataset_file_max_bytes
    if content_length is not None and content_length > limit:
        raise BlobTooLarge(limit)
    known = await run_in_threadpool(dataset_ops.precheck_upload, svc, principal, name, file_name, sha256)
    if known is not None:
        response.status_code = 200
        return known
    blob = await receive_blob(request, svc, limit, sha256)
    view, changed = await run_in_threadpool(dataset_ops.add_uploaded_file, svc, principal, name, file_name, blob)
    if not changed:
        response.status_code = 200
    return view


@router.get("/pilot/datasets/files/{sha256}", tags=["pilots"])
def get_dataset_file(sha256: str, svc: ServicesDep, principal: PilotDep) -> FileResponse:
    """An uploaded file of a dataset that a task uses."""
    path = dataset_ops.pilot_file_path(svc, sha256)
    return FileResponse(path, media_type="application/octet-stream", filename=sha256)
