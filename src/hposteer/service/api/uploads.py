"""Streaming an upload into the blob store: one implementation for sandboxes, datasets and artifacts.

The body is capped while it streams (an announced Content-Length over the limit is refused before
any byte is read), gathered into 1 MiB writes off the event loop, checked against its sha256 and
fsynced before the caller records it (R5). A client that goes away mid-body leaves nothing behind.
"""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Invalid
from hposteer.service.store.blobs.base import BlobTooLarge, StoredBlob

_BATCH = 1 << 20  # bytes gathered from the request before each write to the blob file


async def receive_blob(request: Request, svc: Services, max_bytes: int, sha256: str | None) -> StoredBlob:
    """The request body as a stored blob; raises BlobTooLarge (413), a checksum mismatch (422) or
    Invalid ``upload_incomplete`` when the client disconnected before the end."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise BlobTooLarge(max_bytes)
    writer = await run_in_threadpool(svc.blobs.writer, max_bytes)
    try:
        pending: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            pending.append(chunk)
            size += len(chunk)
            if size >= _BATCH:
                await run_in_threadpool(writer.write, b"".join(pending))
                pending, size = [], 0
        if pending:
            await run_in_threadpool(writer.write, b"".join(pending))
        return await run_in_threadpool(writer.commit, sha256)
    except ClientDisconnect:
        writer.abort()
        raise Invalid("the upload ended before its body did (client disconnected); nothing was stored",
                      code="upload_incomplete") from None  # fmt: skip
    except BaseException:
        writer.abort()
        raise
