"""The reaper thread: expires lapsed leases every ``reaper_interval_s``."""

from __future__ import annotations

import logging
import threading

from hposteer.service.operations.context import Services
from hposteer.service.operations.reaper import reap_expired
from hposteer.service.store.database import StoreBusy

log = logging.getLogger("hposteer.reaper")


class ReaperThread:
    def __init__(self, services: Services, interval_s: float):
        self._services = services
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                expired = reap_expired(self._services)
            except StoreBusy as exc:
                log.warning("reaper pass skipped, database busy: %s", exc)
                continue
            except Exception:
                log.exception("reaper pass failed")
                continue
            if expired:
                log.info("expired %d lease(s); their points are pending again or failed", expired)
