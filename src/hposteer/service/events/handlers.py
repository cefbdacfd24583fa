"""The small builtin handlers: ``log`` (one log line per event) and ``jsonl`` (one JSON line per event).

``jsonl`` is the handler for everything we do not ship: an append-only file that another
program tails (or a log shipper forwards), written with one ``write`` per event on a file
opened in append mode, so replicas may share the file without interleaving lines.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from hposteer.service.core.events import Event, event_dict

log = logging.getLogger("hposteer.events")


def _compact(event: Event) -> str:
    return json.dumps(event_dict(event), separators=(",", ":"), ensure_ascii=False, default=str)


class LogHandler:
    """Logs every event at INFO on the ``hposteer.events`` logger."""

    def __init__(self) -> None:
        # `hposteer serve` leaves the service's loggers unconfigured (uvicorn logs only its own), so the
        # handler someone asked for by name makes sure its lines reach stderr.
        if not log.hasHandlers():
            stream = logging.StreamHandler()
            stream.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
            log.addHandler(stream)
            log.setLevel(logging.INFO)

    def handle(self, event: Event) -> None:
        log.info("event %s", _compact(event))

    def close(self) -> None:
        return None


class JsonLinesHandler:
    """Appends every event as one JSON line to a file."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND: each write lands at the current end, whoever else appends to the file.
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._lock = threading.Lock()

    def handle(self, event: Event) -> None:
        line = (_compact(event) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
