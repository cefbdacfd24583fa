"""Templates, security headers, and the two route classes that turn failures into answers.

Pages (``PageRoute``) answer failures with an HTML error page, or send the browser to the login
page; the UI's JSON endpoints (``DataRoute``) answer with the API's error envelope. Both add the
headers every UI answer carries: a strict Content-Security-Policy (only this service's own
scripts, styles and images; no inline script), no framing, no sniffing, and no caching of pages
(they hold CSRF tokens and the user's data).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Coroutine
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from hposteer.service.operations.errors import Conflict, Forbidden, Invalid, NotFound, OperationError, Unauthorized
from hposteer.service.operations.monitoring.cache import StoreBusy
from hposteer.service.ui import formatting
from hposteer.service.ui.session import BadForm, LoginRequired

log = logging.getLogger("hposteer.ui")

HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_URL = "/ui/static"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_STATUS: dict[type[OperationError], tuple[int, str]] = {
    NotFound: (404, "Not found"),
    Conflict: (409, "Conflict"),
    Unauthorized: (401, "Not logged in"),
    Forbidden: (403, "Not allowed"),
    Invalid: (422, "Invalid request"),
}


@cache
def _static_version(name: str) -> str:
    """A digest of the file, so that a new release's assets are never taken from a stale cache."""
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:10]


def static_url(name: str) -> str:
    return f"{STATIC_URL}/{name}?v={_static_version(name)}"


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = static_url
    env.filters.update(formatting.FILTERS)
    return env


def render(
    template: str, status_code: int = 200, headers: dict[str, str] | None = None, **context: Any
) -> HTMLResponse:
    html = environment().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers={**SECURITY_HEADERS, **(headers or {})})


def error_page(status: int, title: str, message: str, headers: dict[str, str] | None = None) -> HTMLResponse:
    return render("error.html", status, headers, status=status, title=title, message=message, viewer=None)


def login_redirect(request: Request, reason: str) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = f"/ui/login?next={quote(target, safe='')}"
    if reason:
        url += f"&reason={quote(reason, safe='')}"
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def _validation_summary(exc: RequestValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class PageRoute(APIRoute):
    """A page: failures become HTML error pages; no session sends the browser to log in."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired as exc:
                return login_redirect(request, exc.reason)
            except BadForm as exc:
                return error_page(403, "Form refused", str(exc))
            except RequestValidationError as exc:
                return error_page(422, "Invalid request", f"the address is not valid: {_validation_summary(exc)}")
            except OperationError as exc:
                status, title = next((v for cls, v in _STATUS.items() if isinstance(exc, cls)), (400, "Bad request"))
                return error_page(status, title, exc.message)
            except StoreBusy as exc:
                log.warning("database busy, answering 503: %s", exc)
                return error_page(503, "Busy", "the server is busy; reload in a moment", {"Retry-After": "1"})
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return page


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=status,
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


class DataRoute(APIRoute):
    """A JSON endpoint of the UI (cookie session): failures use the API's error envelope."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def data(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired as exc:
                return json_error(401, "login_required", exc.reason or "log in at /ui/login")
            except RequestValidationError as exc:
                return json_error(422, "invalid_request", f"the request is not valid: {_validation_summary(exc)}")
            except OperationError as exc:
                status = next((v[0] for cls, v in _STATUS.items() if isinstance(exc, cls)), 400)
                return json_error(status, exc.code, exc.message)
            except StoreBusy:
                return json_error(503, "busy", "the server is busy; retry shortly", {"Retry-After": "1"})
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return data
