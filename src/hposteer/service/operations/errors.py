"""Errors the use cases raise; the API maps each to one HTTP status."""

from __future__ import annotations

from typing import Any


class OperationError(Exception):
    code = "error"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFound(OperationError):
    code = "not_found"


class Conflict(OperationError):
    code = "conflict"


class Unauthorized(OperationError):
    code = "unauthorized"


class Forbidden(OperationError):
    code = "forbidden"


class Invalid(OperationError):
    """Bad input; ``issues`` says where (parameter/key or field) and what is allowed."""

    code = "invalid"

    def __init__(self, message: str, issues: list[dict[str, Any]] | None = None, *, code: str | None = None):
        super().__init__(message, code=code)
        self.issues = issues or []
