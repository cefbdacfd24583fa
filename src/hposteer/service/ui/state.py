"""What the UI keeps per application (the monitoring cache) and its ETag plumbing."""

from __future__ import annotations

from fastapi import Request

from hposteer.service.operations.monitoring.cache import MonitoringCache


def cache_of(request: Request) -> MonitoringCache:
    cache: MonitoringCache = request.app.state.ui_cache
    return cache


def known_etag(request: Request) -> str | None:
    """The ETag the browser already holds (``If-None-Match``), without quotes or weakness mark."""
    value = request.headers.get("if-none-match")
    if not value:
        return None
    return value.strip().removeprefix("W/").strip('"')


def etag_header(etag: str) -> dict[str, str]:
    return {"ETag": f'"{etag}"'}
