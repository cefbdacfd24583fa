"""The fault tests' timings, search space and evaluation scripts (docs/reliability.md), shared with the
replica tests."""

from __future__ import annotations

from typing import Any

from bench.soak.supervisor import Timings

TIMINGS = Timings(lease_ttl_s=2.0, heartbeat_interval_s=0.5, reaper_interval_s=0.25, idle_poll_s=0.2)


SLACK_S = 0.75  # scheduling delays on a loaded 2-core machine, on top of TTL + reaper period


SPACE = {
    "x": {"method": "uniform", "dimension": {"low": -1, "high": 1}},
    "n": {"method": "uniformint", "dimension": {"low": 0, "high": 3}},
}


# The loss every evaluation below reports: the checker recomputes it from the stored params.
LOSS = "(p['x'] - 0.3) ** 2 + 0.1 * p['n']"


def loss_of(p: dict[str, Any]) -> float:
    return float((p["x"] - 0.3) ** 2 + 0.1 * p["n"])


# Prologue of every evaluation: the point, its attempt, and a marker file outside the working
# directory ($FAULT_DIR) so that the test knows which payload is running.
PROLOGUE = """
import json, os, sys, time
p = json.load(open("input.json"))
attempt = int(os.environ["HPOSTEER_ATTEMPT"])
point = os.environ["HPOSTEER_POINT_ID"]
marks = os.environ["FAULT_DIR"]
open(os.path.join(marks, f"running.{point}.{attempt}"), "w").write(str(os.getpid()))
def finish(message=""):
    json.dump({"status": 0, "loss": LOSS, "message": message}, open("output.json", "w"))
""".replace("LOSS", LOSS)


FLAKY = (
    PROLOGUE
    + """
counter = os.path.join(marks, f"count.{point}")  # outside the working directory: survives attempts
n = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
open(counter, "w").write(str(n))
if n < 3:
    json.dump({"status": 1, "message": f"planned failure {n}"}, open("output.json", "w"))
    print(f"failing on purpose, run {n}", flush=True)
    sys.exit(10 + n)
finish(f"succeeded on run {n}")
"""
)


ALWAYS_FAILS = PROLOGUE + "print('this evaluation always fails', flush=True)\nsys.exit(3)\n"


SLOW = PROLOGUE + "time.sleep(float(os.environ.get('EVAL_SLEEP_S', '3')))\nfinish()\n"


# Checkpoints (phpo --checkPointToSave ckpt --checkPointInterval <minutes>): a step counter in
# ckpt/step.txt every 0.2 s; a later attempt finds ckpt/ unpacked in its working directory.
CHECKPOINTED = (
    PROLOGUE
    + """
os.makedirs("ckpt", exist_ok=True)
step = int(open("ckpt/step.txt").read()) if os.path.exists("ckpt/step.txt") else 0
first = step
while step < 30:
    time.sleep(0.2)
    step += 1
    with open("ckpt/step.tmp", "w") as f:
        f.write(str(step))
    os.replace("ckpt/step.tmp", "ckpt/step.txt")
finish(f"resumed from step {first}")
"""
)
