"""Event handlers by name: one explicit table, resolved once from the settings at start-up.

``HPOSTEER_EVENT_HANDLERS='["log","mlflow"]'`` (or ``log,mlflow``) builds those handlers in that
order; each declares the settings it cannot do without, checked before anything starts (the
server commands and ``create_app`` call ``check_handler_settings``), so a typo or a missing
tracking URI stops the service with one line naming the setting. A deployment's own handler is
one more entry. The settings module itself knows nothing of handlers: events depend on the
settings, never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hposteer.service.core.events import EventHandler
from hposteer.service.events.handlers import JsonLinesHandler, LogHandler
from hposteer.service.store.blobs.base import BlobStore
from hposteer.service.store.database import Database

if TYPE_CHECKING:
    from hposteer.service.config import Settings


@dataclass(frozen=True)
class HandlerContext:
    """What a handler may use besides the settings: the database and blobs, to read what events point at."""

    db: Database
    blobs: BlobStore


@dataclass(frozen=True)
class HandlerSpec:
    build: Callable[[Settings, HandlerContext], EventHandler]
    summary: str
    requires: tuple[str, ...] = ()  # settings that must be set for this handler


def _log(settings: Settings, context: HandlerContext) -> EventHandler:
    return LogHandler()


def _jsonl(settings: Settings, context: HandlerContext) -> EventHandler:
    assert settings.events_jsonl_path is not None  # checked with the settings
    return JsonLinesHandler(settings.events_jsonl_path)


def _mlflow(settings: Settings, context: HandlerContext) -> EventHandler:
    from hposteer.service.events.mlflow_handler import MlflowHandler

    assert settings.mlflow_tracking_uri is not None  # checked with the settings
    return MlflowHandler(
        settings.mlflow_tracking_uri,
        settings.mlflow_experiment_prefix,
        context.db,
        context.blobs,
        retry_s=settings.mlflow_retry_s,
        catchup_s=settings.mlflow_catchup_days * 86400.0,
    )


EVENT_HANDLERS: dict[str, HandlerSpec] = {
    "log": HandlerSpec(_log, "one log line per event (logger hposteer.events)"),
    "jsonl": HandlerSpec(_jsonl, "one JSON line per event, appended to EVENTS_JSONL_PATH", ("events_jsonl_path",)),
    "mlflow": HandlerSpec(_mlflow, "one MLflow run per evaluated point", ("mlflow_tracking_uri",)),
}


def check_handler_settings(names: Sequence[str], settings: Settings) -> None:
    """Raise ValueError for an unknown handler, a repeated one, or a handler's missing setting."""
    known = ", ".join(sorted(EVENT_HANDLERS))
    for name in names:
        spec = EVENT_HANDLERS.get(name)
        if spec is None:
            raise ValueError(f"unknown event handler {name!r}; known handlers: {known}")
        for setting in spec.requires:
            if getattr(settings, setting) in (None, ""):
                raise ValueError(f"event handler {name!r} needs the setting HPOSTEER_{setting.upper()}")
    if len(set(names)) != len(names):
        raise ValueError(f"an event handler is listed twice: {', '.join(names)}")


def build_handlers(settings: Settings, context: HandlerContext) -> list[tuple[str, EventHandler]]:
    """The configured handlers, built in their order."""
    check_handler_settings(settings.event_handlers, settings)
    return [(name, EVENT_HANDLERS[name].build(settings, context)) for name in settings.event_handlers]
