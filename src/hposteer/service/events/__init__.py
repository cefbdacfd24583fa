"""What the service tells the outside: Clara-style events to handler plugins (docs/events.md).

The events themselves are in ``hposteer.service.core.events``; here are the bus that hands them to the
handlers off the request path (``bus``), the handler table (``registry``), the builtin handlers
(``handlers``, ``mlflow_handler``), the relay from the steering child process (``forward``) and the
Prometheus metrics (``prometheus``, imported by the app on its own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hposteer.service.events.bus import EventBus, HandlerStats
from hposteer.service.events.registry import (
    EVENT_HANDLERS,
    HandlerContext,
    HandlerSpec,
    build_handlers,
    check_handler_settings,
)
from hposteer.service.store.blobs.base import BlobStore
from hposteer.service.store.database import Database

if TYPE_CHECKING:
    from hposteer.service.config import Settings

__all__ = [
    "EVENT_HANDLERS",
    "EventBus",
    "HandlerContext",
    "HandlerSpec",
    "HandlerStats",
    "build_event_bus",
    "build_handlers",
    "check_handler_settings",
]


def build_event_bus(settings: Settings, db: Database, blobs: BlobStore) -> EventBus:
    """The bus with the configured handlers (not started: the app's lifespan starts it)."""
    return EventBus(build_handlers(settings, HandlerContext(db, blobs)), settings.event_queue_size)
