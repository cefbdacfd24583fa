"""Tailing an attempt's report file: new intermediate reports wait here until the service has them.

The payload appends report lines to its report file (docs/multi-fidelity.md) while it runs. The
lease thread calls :meth:`ReportTailer.poll` every 0.1 s; complete lines go through the shared
:class:`~hposteer.core.intermediate_reports.ReportReader` (a half-written line waits, a bad line is
refused and logged, in the pilot's log and in the attempt's log). The reports stay *pending* until a
heartbeat's answer acknowledges them (its ``last_step`` reaches their step), so a heartbeat that
failed sends them again; the reader's limit (10,000 reports per attempt) bounds the queue.

The file is opened without following a symbolic link and only read if it is a regular file: the
payload owns its directory, and a link to one of the pilot's files must not be forwarded.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from hposteer.client.pilot.logs import Logger
from hposteer.client.wire import Heartbeat, IntermediateReportBody
from hposteer.core.intermediate_reports import ReportReader

MAX_BATCH = 100  # reports per heartbeat (the service's limit)
MAX_REFUSED_FORWARDED = 20  # refused lines forwarded per attempt; the rest are only logged
MAX_REFUSED_CHARS = 500
READ_CHUNK = 256 * 1024
UNACKNOWLEDGED_LIMIT = 3  # answers that keep ignoring a report: it is dropped (logged), not sent forever


class ReportTailer:
    def __init__(self, path: Path, logger: Logger, label: str, attempt_log: Path | None = None):
        self.path = path
        self._log = logger
        self._label = label
        self._attempt_log = attempt_log
        self._reader = ReportReader()
        self._offset = 0
        self._pending: deque[IntermediateReportBody] = deque()
        self._refused: list[str] = []  # not yet acknowledged
        self._refused_forwarded = 0
        self._ignored = 0  # answers in a row that did not acknowledge the oldest pending report
        self._warned_unreadable = False
        self.read_reports = 0  # all accepted so far
        self.refused_lines = 0  # all refused so far

    # -- reading -------------------------------------------------------------------------------

    def poll(self) -> int:
        """Read what the payload appended since the last call; returns how many reports it added."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return 0  # no report yet, or a payload that never reports
        except OSError as exc:
            why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
            self._unreadable(why or str(exc))
            return 0
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                self._unreadable("it is not a regular file")
                return 0
            added = 0
            while True:
                chunk = os.pread(fd, READ_CHUNK, self._offset)
                if not chunk:
                    return added
                self._offset += len(chunk)
                added += self._feed(chunk)
        except OSError as exc:
            self._unreadable(exc.strerror or str(exc))
            return 0
        finally:
            os.close(fd)

    def _feed(self, chunk: bytes) -> int:
        reports, refused = self._reader.feed(chunk)
        for report in reports:
            self._pending.append({"step": report.step, "metrics": dict(report.metrics)})
        self.read_reports += len(reports)
        for line in refused:
            text = str(line)
            self.refused_lines += 1
            self._log.info(f"{self._label}: {self.path.name}: {text}")
            self._note_in_attempt_log(text)
            if self._refused_forwarded < MAX_REFUSED_FORWARDED:
                self._refused_forwarded += 1
                self._refused.append(text[:MAX_REFUSED_CHARS])
        return len(reports)

    def _note_in_attempt_log(self, text: str) -> None:
        if self._attempt_log is None:
            return
        try:
            with self._attempt_log.open("a", encoding="utf-8") as log:  # O_APPEND, like the payload's output
                log.write(f"hposteer pilot: {self.path.name}: {text}\n")
        except OSError:
            pass  # the attempt's log is a courtesy; the pilot's log has the line already

    def _unreadable(self, why: str) -> None:
        if not self._warned_unreadable:
            self._warned_unreadable = True
            message = f"cannot read the report file {self.path.name}: {why}; its reports are not forwarded"
            self._log.info(f"{self._label}: {message}")
            self._note_in_attempt_log(message)

    # -- forwarding ----------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """Whether something waits for the service: reports or refused lines."""
        return bool(self._pending or self._refused)

    def batch(self) -> tuple[list[IntermediateReportBody], list[str]]:
        """The next heartbeat's reports (the oldest, at most 100) and refused lines."""
        return [self._pending[i] for i in range(min(MAX_BATCH, len(self._pending)))], list(self._refused)

    def reject(self, sent: list[IntermediateReportBody], refused: list[str], why: str) -> None:
        """The service refused a heartbeat for what it carried (422): drop that batch, so that the
        next heartbeat, which keeps the lease, goes without it. Logged here and in the attempt's log."""
        del self._refused[: len(refused)]
        for _ in sent:
            self._pending.popleft()
        steps = f"steps {sent[0]['step']} to {sent[-1]['step']}" if sent else "refused-line messages"
        message = f"the service refused the reports it was sent ({steps}): {why}; they are dropped"
        self._log.info(f"{self._label}: {message}")
        self._note_in_attempt_log(message)

    def acknowledge(
        self, sent: list[IntermediateReportBody], refused: list[str], answer: Heartbeat | Mapping[str, object]
    ) -> None:
        """The service answered a heartbeat that carried ``sent`` and ``refused``.

        Without ``last_step`` (an older service) everything sent counts as stored. Otherwise the
        reports up to ``last_step`` are dropped; the rest go again with the next heartbeat.
        """
        del self._refused[: len(refused)]
        if not sent:
            return
        if "last_step" not in answer:
            for _ in sent:
                self._pending.popleft()
            return
        last_step = answer.get("last_step")
        before = len(self._pending)
        if isinstance(last_step, int):
            while self._pending and self._pending[0]["step"] <= last_step:
                self._pending.popleft()
        if len(self._pending) < before:
            self._ignored = 0
            return
        self._ignored += 1
        if self._ignored >= UNACKNOWLEDGED_LIMIT:
            self._ignored = 0
            dropped = [self._pending.popleft() for _ in sent]
            self._log.info(
                f"{self._label}: the service did not store steps {dropped[0]['step']} to {dropped[-1]['step']} "
                f"after {UNACKNOWLEDGED_LIMIT} heartbeats (it holds up to step {last_step}); they are dropped"
            )
