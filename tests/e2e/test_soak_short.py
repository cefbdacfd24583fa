"""A short chaos soak inside `make test` (the full one is `make soak`, docs/reliability.md):
2 tasks x 30 points, 2 pilot processes x 2 slots, a pilot SIGKILL every 4 ± 1 s and a
service SIGKILL about every 9 s for 20 s, then a drain and every invariant on the database."""

from __future__ import annotations

import os
import random
from dataclasses import replace
from pathlib import Path

from bench.soak.run import SHORT, run_soak

LOGS = "no unhandled exception or 500 in the logs"


def test_a_short_soak_keeps_every_invariant(tmp_path: Path) -> None:
    seed = int(os.environ.get("SOAK_SEED") or random.randrange(2**31))
    print(f"SOAK_SEED={seed}")
    outcome = run_soak(replace(SHORT, seed=seed), tmp_path / "soak")
    print(outcome.text())
    invariants = [v for v in outcome.report.verdicts if v.name != LOGS]
    assert all(v.ok for v in invariants), f"seed {seed}:\n{outcome.report.describe()}"
    figures = outcome.figures
    assert figures["pilot_kills"] >= 3 and figures["service_kills"] >= 1
    assert figures["points"] == 60
    logs = outcome.report.verdict(LOGS)
    assert logs.ok, logs.line()
