"""Request dependencies: the services and the caller's identity, checked by role."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.operations.auth import authenticate
from service.operations.context import Services
from service.operations.errors import Forbidden
from service.operations.principal import Principal


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def caller(request: Request, svc: Annotated[Services, Depends(services)]) -> Principal:
    return authenticate(svc.db, svc.tokens, _bearer(request))


def user(principal: Annotated[Principal, Depends(caller)]) -> Principal:
    if principal.role not in ("user", "admin"):
        raise Forbidden(f"this route needs a user token; a {principal.role} token cannot call it")
    return principal


def pilot(principal: Annotated[Principal, Depends(caller)]) -> Principal:
    if principal.role != "pilot":
        raise Forbidden(f"this route needs a pilot token; a {principal.role} token cannot call it")
    return principal


ServicesDep = Annotated[Services, Depends(services)]
UserDep = Annotated[Principal, Depends(user)]
PilotDep = Annotated[Principal, Depends(pilot)]
