"""hposteer.client.payload, the payload author's helper: what it writes is what the pilot's reader
accepts, the stop file and the budget file are read as documented, and it runs copied on its own."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hposteer.client import payload
from hposteer.core.intermediate_reports import ReportReader


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for variable in ("HPOSTEER_REPORT_FILE", "HPOSTEER_STOP_FILE", "HPOSTEER_BUDGET_FILE"):
        monkeypatch.delenv(variable, raising=False)
    payload._last_step.clear()
    return tmp_path


def test_reports_are_lines_the_pilot_reads(workdir: Path) -> None:
    payload.report(1, 0.9, accuracy=0.5)
    payload.report(2, accuracy=0.6)
    reports, refused = ReportReader().feed((workdir / payload.REPORT_FILE).read_bytes())
    assert not refused
    assert [r.as_json() for r in reports] == [{"step": 1, "loss": 0.9, "accuracy": 0.5}, {"step": 2, "accuracy": 0.6}]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: payload.report(-1, 0.5), "step must be a whole number"),
        (lambda: payload.report(1), "report at least one metric"),
        (lambda: payload.report(1, float("nan")), "metric 'loss' must be a finite number"),
        (lambda: payload.report(1, 0.5, acc="high"), "metric 'acc' must be a finite number"),  # type: ignore[arg-type]
    ],
)
def test_mistakes_raise_in_the_payload(workdir: Path, call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
    assert not (workdir / payload.REPORT_FILE).exists()


def test_a_step_that_does_not_increase_raises(workdir: Path) -> None:
    payload.report(3, 0.5)
    with pytest.raises(ValueError, match="step 3 after step 3"):
        payload.report(3, 0.4)


def test_stop_and_budget_files(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not payload.should_stop() and payload.stop_reason() is None
    assert payload.budget() == payload.Budget(None, 0, None)
    (workdir / payload.STOP_FILE).write_text(json.dumps({"action": "stop", "reason": "asha rung 3"}))
    assert payload.should_stop() and payload.stop_reason() == "asha rung 3"
    (workdir / "elsewhere.json").write_text(json.dumps({"max_steps": 9, "start_step": 3, "rung": 1}))
    monkeypatch.setenv("HPOSTEER_BUDGET_FILE", str(workdir / "elsewhere.json"))
    assert payload.budget() == payload.Budget(9, 3, 1)


def test_the_helper_runs_copied_alone_with_only_the_standard_library(tmp_path: Path) -> None:
    shutil.copy(payload.__file__, tmp_path / "hposteer_payload.py")
    (tmp_path / payload.BUDGET_FILE).write_text('{"max_steps": 3}')
    script = (
        "import hposteer_payload as h\n"
        "plan = h.budget()\n"
        "for step in range(plan.start_step + 1, plan.max_steps + 1):\n"
        "    h.report(step, 1.0 / step)\n"
        "    if step == 2:\n"
        "        open(h.STOP_FILE, 'w').write('{\"reason\": \"pruned\"}')\n"
        "    if h.should_stop():\n"
        "        print('stopped at', step, h.stop_reason())\n"
        "        break\n"
    )
    run = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, '.'); {script}"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "stopped at 2 pruned"
    reports, _ = ReportReader().feed((tmp_path / payload.REPORT_FILE).read_bytes())
    assert [(r.step, r.metrics["loss"]) for r in reports] == [(1, 1.0), (2, 0.5)]
