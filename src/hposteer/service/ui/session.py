"""Who is looking: the session cookie, and CSRF tokens for the forms that change something.

**The cookie holds the user's API token itself** (HttpOnly, SameSite=Strict, Path=/, Secure over
HTTPS; a browser-session cookie). Why not a signed session:

* the service has no signing key, and replicas share only the database: a key would have to be
  created, stored and rotated for every replica alike;
* a token revoked with ``hposteer token revoke`` ends its browser sessions too (within
  ``token_cache_s``), and an expired token expires them, with no second credential to track;
* HttpOnly keeps the token away from page scripts (the pages run no inline script at all: a
  strict Content-Security-Policy), SameSite=Strict keeps every cross-site request without it.

**CSRF.** Forms that change something (kill, retry, log out) carry a per-session token: an HMAC
of a fixed label keyed with the session's secret, checked in constant time; with SameSite=Strict
this is defence in depth. The login form itself has no session yet: it uses a double-submit
token, a random value in a short-lived SameSite=Strict cookie that the form must repeat, so that
another site cannot log a browser in under the attacker's token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from fastapi import Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from hposteer.service.operations.auth import authenticate, hash_token
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Unauthorized
from hposteer.service.operations.principal import Principal

COOKIE = "hposteer_session"
LOGIN_COOKIE = "hposteer_login"
_CSRF_LABEL = b"hposteer-ui-csrf-v1"
MAX_FORM_BYTES = 16 * 1024


class LoginRequired(Exception):
    """No valid session: pages send the browser to the login page, JSON answers 401."""

    def __init__(self, reason: str = ""):
        super().__init__(reason)
        self.reason = reason


class BadForm(Exception):
    """A form that is malformed or fails its CSRF check (403)."""


@dataclass(frozen=True)
class Viewer:
    principal: Principal
    csrf: str

    @property
    def owner(self) -> str:
        return self.principal.owner

    @property
    def is_admin(self) -> bool:
        return self.principal.sees_all


def csrf_for(secret: str) -> str:
    return hmac.new(secret.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()[:32]


def services_of(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def principal_for(svc: Services, secret: str) -> Principal:
    """The principal behind a token (the token cache first), or Unauthorized."""
    cached = svc.tokens.get(hash_token(secret))
    if cached is not None:
        return cached
    return await run_in_threadpool(authenticate, svc.db, svc.tokens, secret)


async def viewer(request: Request) -> Viewer:
    secret = request.cookies.get(COOKIE)
    if not secret:
        raise LoginRequired()
    try:
        principal = await principal_for(services_of(request), secret)
    except Unauthorized as exc:
        raise LoginRequired("your session ended: the token is unknown, expired or revoked; log in again") from exc
    if principal.role not in ("user", "admin"):
        raise LoginRequired(f"a {principal.role} token cannot use the web UI; log in with a user token")
    return Viewer(principal, csrf_for(secret))


ViewerDep = Annotated[Viewer, Depends(viewer)]


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body (small; the UI's forms have a few short fields)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise BadForm("the form must be sent as application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BadForm("the form is too large")
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in fields.items()}


def check_same_origin(request: Request) -> None:
    """Refuse a form posted from another origin (when the browser says where it came from)."""
    origin = request.headers.get("origin")
    # Hosts only: behind a proxy that ends TLS the scheme differs, the Host header does not.
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", request.url.netloc):
        raise BadForm(f"the form was posted from another site ({origin})")


def check_csrf(request: Request, form: dict[str, str], current: Viewer) -> None:
    check_same_origin(request)
    if not hmac.compare_digest(form.get("csrf", ""), current.csrf):
        raise BadForm("the form's CSRF token is missing or wrong: reload the page and try again")


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def check_login_nonce(request: Request, form: dict[str, str]) -> None:
    check_same_origin(request)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(form.get("nonce", ""), cookie):
        raise BadForm("the login form expired or came from elsewhere: open the login page again")


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session(response: Response, request: Request, secret: str) -> None:
    response.set_cookie(COOKIE, secret, httponly=True, samesite="strict", secure=_secure(request), path="/")
    response.delete_cookie(LOGIN_COOKIE, path="/ui/login")


def set_login_nonce(response: Response, request: Request, nonce: str) -> None:
    response.set_cookie(
        LOGIN_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict", secure=_secure(request), path="/ui/login"
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
