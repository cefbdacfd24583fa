"""One error envelope for every failure: ``{"error": {"code", "message", "issues"?}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hposteer.service.operations.errors import Conflict, Forbidden, Invalid, NotFound, OperationError, Unauthorized
from hposteer.service.store.blobs.base import BlobChecksumMismatch, BlobTooLarge
from hposteer.service.store.database import StoreBusy

log = logging.getLogger("hposteer.api")

_STATUS: dict[type[OperationError], int] = {
    NotFound: 404,
    Conflict: 409,
    Unauthorized: 401,
    Forbidden: 403,
    Invalid: 422,
}


def error_response(
    status: int,
    code: str,
    message: str,
    issues: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if issues:
        body["issues"] = issues
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def install(app: FastAPI) -> None:
    @app.exception_handler(OperationError)
    async def _operation(request: Request, exc: OperationError) -> JSONResponse:
        status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 400)
        issues = exc.issues if isinstance(exc, Invalid) else None
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, exc.code, exc.message, issues, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        issues = [{"field": _field(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
        summary = "; ".join(f"{i['field']}: {i['message']}" for i in issues[:5])
        return error_response(422, "invalid_request", f"the request is not valid: {summary}", issues)

    @app.exception_handler(StoreBusy)
    async def _busy(request: Request, exc: StoreBusy) -> JSONResponse:
        log.warning("database busy, answering 503: %s", exc)
        return error_response(
            503,
            "busy",
            "the server is busy; retry after the delay in Retry-After",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(BlobTooLarge)
    async def _too_large(request: Request, exc: BlobTooLarge) -> JSONResponse:
        return error_response(413, "too_large", str(exc))

    @app.exception_handler(BlobChecksumMismatch)
    async def _checksum(request: Request, exc: BlobChecksumMismatch) -> JSONResponse:
        return error_response(422, "checksum_mismatch", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such route: {request.method} {request.url.path}"
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal server error; the service log has the details")
