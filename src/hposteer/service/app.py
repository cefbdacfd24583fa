"""``create_app(settings)``: the whole service, built from one Settings object.

Nothing is created at import time. The lifespan migrates the schema (unless told not to),
starts the event bus (docs/events.md), the steering host and the reaper, and stops them again on
shutdown.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hposteer.service import __version__
from hposteer.service.api import artifact_routes, dataset_routes, errors, metrics_route, pilot_routes, user_routes
from hposteer.service.api.errors import error_response
from hposteer.service.api.schemas import HealthOut
from hposteer.service.config import Settings
from hposteer.service.core.events import NoMeters, Shutdown, Startup
from hposteer.service.events import EventBus, build_event_bus
from hposteer.service.events.prometheus import ServiceMetrics
from hposteer.service.operations.context import Services, build_services
from hposteer.service.store.database import StoreBusy
from hposteer.service.store.migrate import prepare_schema, printable_url
from hposteer.service.ui import install as install_ui
from hposteer.service.workers.reaper import ReaperThread
from hposteer.service.workers.steering_host import ProcessSteeringHost, SteeringHost, ThreadSteeringHost

log = logging.getLogger("hposteer")

API_VERSION = "1"
VERSION_HEADER = b"x-hposteer-api"


class _LateTrigger:
    """Forwards notifications to the steering host once it exists (it needs the services first)."""

    def __init__(self) -> None:
        self.host: SteeringHost | None = None

    def notify(self, segment_ids: Iterable[int]) -> None:
        if self.host is not None:
            self.host.notify(segment_ids)


class ApiVersionMiddleware:
    """Refuses clients of another major API version and labels every answer with ours."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == VERSION_HEADER and value.decode().split(".")[0] != API_VERSION:
                response = error_response(
                    400,
                    "api_version",
                    f"this server speaks API version {API_VERSION}, the client {value.decode()}: "
                    "install a client of the server's version",
                )
                await response(scope, receive, send)
                return

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (VERSION_HEADER, API_VERSION.encode())]
            await send(message)

        await self.app(scope, receive, send_with_version)


def create_app(settings: Settings) -> FastAPI:
    trigger = _LateTrigger()
    services = build_services(settings, trigger)
    bus, metrics = _events_and_metrics(settings, services)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        where = printable_url(settings.resolved_database_url)
        await run_in_threadpool(
            lambda: prepare_schema(services.db.engine, auto_migrate=settings.auto_migrate, where=where)
        )
        bus.start()
        replica = f"{socket.gethostname()}:{os.getpid()}"
        bus.emit(Startup(replica, __version__, bus.handler_names, time.time()), wait_s=1.0)
        host: SteeringHost = (
            ProcessSteeringHost(settings, services.events, services.meters)
            if settings.steering_mode == "process"
            else ThreadSteeringHost(services, settings)
        )
        host.start()
        trigger.host = host
        reaper = ReaperThread(services, settings.reaper_interval_s)
        reaper.start()
        app.state.steering_host = host
        log.info("hposteer %s serving on %s", __version__, where)
        try:
            yield
        finally:
            reaper.stop()
            trigger.host = None
            await run_in_threadpool(host.stop)
            bus.emit(Shutdown(replica, time.time()), wait_s=1.0)
            await run_in_threadpool(bus.close)  # handlers finish their queues; they may read the database
            services.db.dispose()

    app = FastAPI(
        title="hposteer",
        version=__version__,
        description="Distributed hyperparameter-optimisation steering service (docs/api.md).",
        lifespan=lifespan,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.services = services
    app.state.settings = settings
    errors.install(app)
    app.include_router(user_routes.router)
    app.include_router(pilot_routes.router)
    app.include_router(dataset_routes.router)
    app.include_router(artifact_routes.router)
    install_ui(
        app
    )  # the web UI (src/hposteer/service/ui, docs/ui.md): pages under /ui, assets served from the repository
    _health(app, services)
    if metrics is not None:
        metrics_route.install(app, metrics)
    app.add_middleware(ApiVersionMiddleware)
    return app


def _events_and_metrics(settings: Settings, services: Services) -> tuple[EventBus, ServiceMetrics | None]:
    """The event bus with the configured handlers and the Prometheus meters, wired into ``services``."""
    bus = build_event_bus(settings, services.db, services.blobs)
    metrics = None
    if settings.metrics_enabled:
        window_s = settings.pilot_seen_window_min * 60
        metrics = ServiceMetrics(services.db, pilot_window_s=window_s, handler_stats=bus.stats)
    services.events = bus
    services.meters = metrics if metrics is not None else NoMeters()
    return bus, metrics


def _health(app: FastAPI, services: Services) -> None:
    @app.get("/healthz", response_model=HealthOut, tags=["health"])
    def healthz() -> HealthOut | Response:
        try:
            with services.db.read() as conn:
                conn.exec_driver_sql("SELECT 1")
        except StoreBusy:
            raise
        except Exception as exc:
            log.warning("health check: database unavailable: %s", exc)
            return _unhealthy(str(exc))
        return HealthOut(status="ok", database="ok", version=__version__)


def _unhealthy(reason: str) -> Response:
    return error_response(503, "unhealthy", f"the database does not answer: {reason}", headers={"Retry-After": "5"})
