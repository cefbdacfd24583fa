"""The soak's evaluation, copied into each task's sandbox as ``eval.py`` (standard library only).

Outcomes are drawn from a hash of ($SOAK_SEED, the point's params, the attempt), so a run can
be replayed and the checker knows what each point must end as:

* it sleeps U(0.2, 1.5) s (in 0.1 s steps, so that a checkpoint is written along the way);
* 2 % of points always fail (exit 3); 15 % of the other attempts fail (exit 4);
* otherwise it reports ``loss = loss_of(params)``, which the checker recomputes;
* it keeps ``ckpt/progress.json`` up to date and, if an earlier attempt's checkpoint was handed
  over, resumes from it (the message says from where).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from typing import Any

ALWAYS_FAIL_RATE = 0.02
ATTEMPT_FAIL_RATE = 0.15
SLEEP_S = (0.2, 1.5)
SPACE = {
    "x": {"method": "uniform", "dimension": {"low": -1, "high": 1}},
    "y": {"method": "uniform", "dimension": {"low": 0, "high": 1}},
    "n": {"method": "uniformint", "dimension": {"low": 0, "high": 3}},
}


def loss_of(params: Any) -> float:
    return float((params["x"] - 0.3) ** 2 + math.sin(3 * params["y"]) + 0.1 * params["n"])


def _uniform(seed: int, params: Any, salt: str) -> float:
    key = f"{seed}:{json.dumps(params, sort_keys=True)}:{salt}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64


def always_fails(params: Any, seed: int) -> bool:
    return _uniform(seed, params, "always") < ALWAYS_FAIL_RATE


def attempt_fails(params: Any, seed: int, attempt: int) -> bool:
    return _uniform(seed, params, f"attempt{attempt}") < ATTEMPT_FAIL_RATE


def duration_s(params: Any, seed: int, attempt: int) -> float:
    low, high = SLEEP_S
    return low + (high - low) * _uniform(seed, params, f"sleep{attempt}")


def main() -> int:
    with open("input.json") as f:
        params = json.load(f)
    seed = int(os.environ.get("SOAK_SEED", "0"))
    attempt = int(os.environ.get("HPOSTEER_ATTEMPT", "1"))
    os.makedirs("ckpt", exist_ok=True)
    done = 0.0
    if os.path.exists("ckpt/progress.json"):
        with open("ckpt/progress.json") as f:
            done = float(json.load(f)["done_s"])
    resumed = done
    total = duration_s(params, seed, attempt)
    while done < total:
        time.sleep(0.1)
        done += 0.1
        with open("ckpt/progress.tmp", "w") as f:
            json.dump({"done_s": done}, f)
        os.replace("ckpt/progress.tmp", "ckpt/progress.json")
    if always_fails(params, seed):
        print("this point always fails", flush=True)
        return 3
    if attempt_fails(params, seed, attempt):
        print(f"attempt {attempt} fails (seeded)", flush=True)
        return 4
    with open("output.json", "w") as f:
        json.dump({"status": 0, "loss": loss_of(params), "message": f"resumed at {resumed:.1f} s"}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
