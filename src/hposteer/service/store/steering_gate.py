"""At most one steering run per segment at a time, across every service process on the database.

Replicas each run a steering loop; without a gate, two of them notified of the same completion
would both run the optimiser (or start the segment's steering container) for one segment. The
unique (segment, iteration) key already keeps a losing run from storing points; the gate keeps it
from running at all.

The lock belongs to the process holding it and goes with it: a replica that is killed mid-run
loses its locks at once, and another replica steers the segment at its next scan.

* PostgreSQL: a session-level advisory lock, ``pg_try_advisory_lock``, on a connection held for
  the run (the server drops it when that connection's process dies).
* SQLite (one host): a POSIX record lock on byte ``segment id`` of one lock file beside the
  database (the kernel drops it when the process dies). Record locks are per process, so the
  gate also keeps a set of the segments this process holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine, text

ADVISORY_BASE = 0x6870_7374_0000_0000  # "hpst" in the high half: keeps clear of other users' keys


class SteeringGate(Protocol):
    def hold(self, segment_id: int) -> contextlib.AbstractContextManager[bool]:
        """True inside when this process may steer the segment now; False if another run holds it."""
        ...


class AdvisoryGate:
    """PostgreSQL advisory locks."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @contextlib.contextmanager
    def hold(self, segment_id: int) -> Iterator[bool]:
        key = ADVISORY_BASE + segment_id
        with self.engine.connect() as conn:
            held = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar_one())
            conn.commit()  # the lock is the session's: it outlives this transaction
            try:
                yield held
            finally:
                if held:
                    try:
                        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                        conn.commit()
                    except Exception:
                        conn.invalidate()  # never return a connection that may still hold the lock
                        raise


class _LockFile:
    """One open lock file per path and process: closing any descriptor of a file drops all of the
    process's record locks on it, so it is opened once and kept open."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.held: set[int] = set()  # record locks are per process: this set tells our threads apart
        self.lock = threading.Lock()


_LOCK_FILES: dict[Path, _LockFile] = {}
_LOCK_FILES_LOCK = threading.Lock()


class FileGate:
    """POSIX record locks on one file, for the processes sharing a SQLite database on this host."""

    def __init__(self, path: Path):
        self.path = path.resolve()

    def _file(self) -> _LockFile:
        with _LOCK_FILES_LOCK:
            if self.path not in _LOCK_FILES:
                _LOCK_FILES[self.path] = _LockFile(self.path)
            return _LOCK_FILES[self.path]

    @contextlib.contextmanager
    def hold(self, segment_id: int) -> Iterator[bool]:
        locks = self._file()
        with locks.lock:
            held = segment_id not in locks.held
            if held:
                try:
                    fcntl.lockf(locks.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, segment_id)
                except OSError:
                    held = False
                else:
                    locks.held.add(segment_id)
        try:
            yield held
        finally:
            if held:
                with locks.lock:
                    fcntl.lockf(locks.fd, fcntl.LOCK_UN, 1, segment_id)
                    locks.held.discard(segment_id)


def gate_for(engine: Engine, data_dir: Path) -> SteeringGate:
    """The gate of this database: advisory locks on PostgreSQL, a lock file beside a SQLite file."""
    if engine.dialect.name == "postgresql":
        return AdvisoryGate(engine)
    database = engine.url.database
    if database and database != ":memory:":
        return FileGate(Path(database).with_name(Path(database).name + ".steering-locks"))
    return FileGate(data_dir / "steering.locks")
