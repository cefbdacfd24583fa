"""The intermediate-results file: the line format a payload reports in, and its incremental reader.

A payload appends one JSON object per line to its report file (docs/multi-fidelity.md)::

    {"step": 3, "loss": 0.41, "accuracy": 0.87}

``step`` is a whole number, at least 0, strictly increasing within one attempt; every other key
names a metric (letters, digits and ``_ . : / -``, at most 64 characters) whose value is a finite
number. A line is read only once its newline is written, so a half-written line is never seen.
The pilot reads the file with :class:`ReportReader` and the service checks what it receives with
:func:`parse_report`: both refuse the same lines with the same messages.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_LINE_BYTES = 4096
MAX_METRICS = 32
METRIC_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")


@dataclass(frozen=True)
class IntermediateReport:
    step: int
    metrics: Mapping[str, float]

    def as_json(self) -> dict[str, float | int]:
        return {"step": self.step, **self.metrics}


class ReportLineError(ValueError):
    """A line of the report file that cannot be used; the message says what is wrong and how to fix it."""


def _refuse_constant(name: str) -> float:
    raise ReportLineError(f"{name} is not a number JSON allows; report only finite values (skip a step instead)")


def parse_report(raw: object, last_step: int | None = None) -> IntermediateReport:
    """One report from its decoded JSON object; ``last_step`` is the attempt's previous step, if any."""
    if not isinstance(raw, dict):
        raise ReportLineError(f'a report must be a JSON object such as {{"step": 1, "loss": 0.5}}, got {raw!r:.80}')
    step = raw.get("step")
    if isinstance(step, bool) or not isinstance(step, int):
        raise ReportLineError(f"'step' must be a whole number (the epoch or iteration), got {step!r:.40}")
    if step < 0:
        raise ReportLineError(f"'step' must not be negative, got {step}")
    if last_step is not None and step <= last_step:
        raise ReportLineError(f"step {step} after step {last_step}: steps must increase within an attempt")
    metrics: dict[str, float] = {}
    for name, value in raw.items():
        if name == "step":
            continue
        if not METRIC_NAME.fullmatch(name):
            raise ReportLineError(f"metric name {name!r:.80} is not allowed: use 1 to 64 letters, digits or _ . : / -")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ReportLineError(f"metric {name!r} must be a number, got {value!r:.40}")
        if not math.isfinite(value):
            raise ReportLineError(f"metric {name!r} is {value}: report only finite values (skip a step instead)")
        metrics[name] = float(value)
    if not metrics:
        raise ReportLineError(f'step {step} reports no metric: add at least one, such as "loss"')
    if len(metrics) > MAX_METRICS:
        raise ReportLineError(f"step {step} reports {len(metrics)} metrics; at most {MAX_METRICS} are kept per step")
    return IntermediateReport(step, metrics)


def parse_line(line: bytes, last_step: int | None = None) -> IntermediateReport:
    """One line of the report file (without its newline)."""
    if len(line) > MAX_LINE_BYTES:
        raise ReportLineError(f"the line has {len(line)} bytes; a report line may have at most {MAX_LINE_BYTES}")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportLineError(f"the line is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        raw = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ReportLineError(f"the line is not JSON ({exc.msg} at column {exc.colno}): {text!r:.80}") from None
    return parse_report(raw, last_step)


@dataclass(frozen=True)
class RefusedLine:
    line_no: int
    message: str

    def __str__(self) -> str:
        return f"report file line {self.line_no}: {self.message}"


@dataclass
class ReportReader:
    """Reads a growing report file in chunks: complete lines become reports, bad lines are refused
    (and skipped: the lines after them still count), a trailing partial line waits for its newline.

    ``max_reports`` bounds what one attempt may report; lines past it are refused once, together.
    """

    max_reports: int = 10_000
    last_step: int | None = None
    line_no: int = 0
    accepted: int = 0
    _tail: bytes = b""
    _over_limit: int = field(default=0)
    _skipping: bool = False

    def feed(self, chunk: bytes) -> tuple[list[IntermediateReport], list[RefusedLine]]:
        reports: list[IntermediateReport] = []
        refused: list[RefusedLine] = []
        if self._skipping:  # the rest of a line already refused as too long
            if b"\n" not in chunk:
                return reports, refused
            chunk = chunk.split(b"\n", 1)[1]
            self._skipping = False
        *lines, self._tail = (self._tail + chunk).split(b"\n")
        for line in lines:
            self.line_no += 1
            if not line.strip():
                continue
            if self.accepted >= self.max_reports:
                self._over_limit += 1
                if self._over_limit == 1:
                    message = f"more than {self.max_reports} reports in one attempt; the rest are ignored"
                    refused.append(RefusedLine(self.line_no, message))
                continue
            try:
                report = parse_line(line.rstrip(b"\r"), self.last_step)
            except ReportLineError as exc:
                refused.append(RefusedLine(self.line_no, str(exc)))
                continue
            self.last_step = report.step
            self.accepted += 1
            reports.append(report)
        if len(self._tail) > MAX_LINE_BYTES:  # no newline in sight: refuse it now, skip to the next newline
            self.line_no += 1
            refused.append(RefusedLine(self.line_no, f"a line longer than {MAX_LINE_BYTES} bytes; it is skipped"))
            self._tail, self._skipping = b"", True
        return reports, refused
