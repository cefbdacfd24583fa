"""The report file's line format and its incremental reader (what the pilot tails)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hposteer.core.intermediate_reports import (
    MAX_LINE_BYTES,
    ReportLineError,
    ReportReader,
    parse_line,
)


def test_a_line_with_a_step_and_metrics() -> None:
    report = parse_line(b'{"step": 3, "loss": 0.41, "val/accuracy": 87}')
    assert report.step == 3 and report.metrics == {"loss": 0.41, "val/accuracy": 87.0}
    assert report.as_json() == {"step": 3, "loss": 0.41, "val/accuracy": 87.0}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"step=3 loss=0.4", "the line is not JSON"),
        (b"[3, 0.4]", "a report must be a JSON object"),
        (b'{"loss": 0.4}', "'step' must be a whole number"),
        (b'{"step": 1.5, "loss": 0.4}', "'step' must be a whole number"),
        (b'{"step": -1, "loss": 0.4}', "'step' must not be negative"),
        (b'{"step": 1}', "reports no metric"),
        (b'{"step": 1, "loss": NaN}', "NaN is not a number JSON allows"),
        (b'{"step": 1, "loss": -Infinity}', "-Infinity is not a number JSON allows"),
        (b'{"step": 1, "loss": 1e999}', "metric 'loss' is inf"),
        (b'{"step": 1, "loss": "0.4"}', "metric 'loss' must be a number"),
        (b'{"step": 1, "loss": true}', "metric 'loss' must be a number"),
        (b'{"step": 1, "a b": 1}', "metric name 'a b' is not allowed"),
        (b'{"step": 1, "loss": 0.4}\xff', "not UTF-8"),
    ],
)
def test_bad_lines_are_refused_with_what_to_do(line: bytes, message: str) -> None:
    with pytest.raises(ReportLineError, match=message.replace("(", r"\(")):
        parse_line(line)


def test_steps_must_increase() -> None:
    with pytest.raises(ReportLineError, match="step 2 after step 2: steps must increase"):
        parse_line(b'{"step": 2, "loss": 1}', last_step=2)
    with pytest.raises(ReportLineError, match="step 1 after step 5"):
        parse_line(b'{"step": 1, "loss": 1}', last_step=5)


def test_the_reader_waits_for_the_newline_and_skips_refused_lines() -> None:
    reader = ReportReader()
    reports, refused = reader.feed(b'{"step": 1, "loss": 0.9}\n{"step": 2, "lo')
    assert [r.step for r in reports] == [1] and not refused
    reports, refused = reader.feed(b'ss": 0.8}\nnot json\n{"step": 2, "loss": 0.7}\n\n{"step": 4, "loss": 0.5}\n')
    assert [r.step for r in reports] == [2, 4]
    assert str(refused[0]).startswith("report file line 3: the line is not JSON")
    assert "report file line 4: step 2 after step 2" in str(refused[1])


def test_the_reader_bounds_line_length_and_report_count() -> None:
    reader = ReportReader(max_reports=3)
    reports, refused = reader.feed(b"x" * (MAX_LINE_BYTES + 10))
    assert not reports and "longer than 4096 bytes" in str(refused[0])
    reports, refused = reader.feed(b"yyyy\n" + b"".join(b'{"step": %d, "loss": 1}\n' % i for i in range(5)))
    assert [r.step for r in reports] == [0, 1, 2]  # the rest of the long line was skipped, not refused again
    assert [str(r) for r in refused] == ["report file line 5: more than 3 reports in one attempt; the rest are ignored"]


lines = st.lists(
    st.tuples(
        st.integers(0, 3), st.dictionaries(st.sampled_from(["loss", "acc", "f1"]), st.floats(-1e6, 1e6), min_size=1)
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(lines, st.lists(st.integers(1, 64), min_size=1, max_size=20))
def test_chunking_does_not_change_what_is_read(raw: list[tuple[int, dict[str, float]]], cuts: list[int]) -> None:
    step, text = -1, b""
    for gap, metrics in raw:
        step += gap  # a gap of 0 repeats the step: refused in both readings
        text += json.dumps({"step": step, **metrics}).encode() + b"\n"
    whole = ReportReader().feed(text)
    reader, got, refused, at = ReportReader(), [], [], 0
    for cut in cuts * (len(text) // max(sum(cuts), 1) + 1):
        reports, bad = reader.feed(text[at : at + cut])
        got += reports
        refused += bad
        at += cut
    assert at >= len(text)
    assert (got, refused) == whole
