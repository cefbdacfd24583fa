"""The web UI: server-rendered pages (Jinja2), a few JSON endpoints, and the service's own static
assets (CSS, scripts, icon; no CDN, no build step, nothing fetched from elsewhere).

A transport layer like hposteer.service.api: it calls the use cases in hposteer.service.operations and never the
store. ``install(app)`` adds it to the application; docs/ui.md describes it for users.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from hposteer.service.operations.monitoring.cache import MonitoringCache
from hposteer.service.ui import actions, data, pages
from hposteer.service.ui.rendering import STATIC, STATIC_URL

__all__ = ["install"]


class _Assets(StaticFiles):
    """Static files; their URLs carry a digest of the content (``?v=``), so they may be cached for good."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def install(app: FastAPI) -> None:
    """Mount the UI's assets and routes on ``app`` (its pages under /ui, ``/`` leading there)."""
    app.state.ui_cache = MonitoringCache()
    app.mount(STATIC_URL, _Assets(directory=STATIC), name="ui-static")
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.include_router(data.router)
    app.include_router(pages.fallback)  # last: /ui/... that nothing else serves is an HTML 404
