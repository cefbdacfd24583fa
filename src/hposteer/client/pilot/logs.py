"""The pilot's log: one timestamped line per event on stderr; ``-v`` adds the details."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Logger:
    def __init__(self, verbose: bool = False, stream: TextIO | None = None):
        self.verbose = verbose
        self._stream = stream
        self._lock = threading.Lock()

    def info(self, message: str) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        line = f"{stamp} pilot: {message}\n"
        stream = self._stream or sys.stderr
        with self._lock:
            try:
                stream.write(line)
                stream.flush()
            except (OSError, ValueError):
                pass  # stderr closed or broken: the pilot keeps working

    def debug(self, message: str) -> None:
        if self.verbose:
            self.info(message)
