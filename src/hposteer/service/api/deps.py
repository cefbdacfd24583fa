"""Request dependencies: the services and the caller's identity, checked by role."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from hposteer.service.operations.auth import authenticate, hash_token
from hposteer.service.operations.context import Services
from hposteer.service.operations.errors import Forbidden
from hposteer.service.operations.principal import Principal

# Dependencies are async so that FastAPI runs them on the event loop: a sync dependency
# costs a thread-pool hop per request, and these only read memory (or, on a token-cache
# miss, hand the database lookup to the thread pool themselves).


async def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


async def caller(request: Request, svc: Annotated[Services, Depends(services)]) -> Principal:
    secret = _bearer(request)
    cached = svc.tokens.get(hash_token(secret)) if secret else None
    if cached is not None:
        return cached
    return await run_in_threadpool(authenticate, svc.db, svc.tokens, secret)


async def user(principal: Annotated[Principal, Depends(caller)]) -> Principal:
    if principal.role not in ("user", "admin"):
        raise Forbidden(f"this route needs a user token; a {principal.role} token cannot call it")
    return principal


async def pilot(principal: Annotated[Principal, Depends(caller)]) -> Principal:
    if principal.role != "pilot":
        raise Forbidden(f"this route needs a pilot token; a {principal.role} token cannot call it")
    return principal


ServicesDep = Annotated[Services, Depends(services)]
UserDep = Annotated[Principal, Depends(user)]
PilotDep = Annotated[Principal, Depends(pilot)]
