"""`make soak`: python -m bench.soak [--seconds S] [--db sqlite|postgresql] [--seed N] [--short]

SOAK_SECONDS, SOAK_DB and SOAK_SEED set the defaults. Prints the figures and the invariant
verdicts; exits 1 on any violation (the run directory is kept then, and with --keep).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

from bench.soak.run import SHORT, Profile, run_soak


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "180")))
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default=os.environ.get("SOAK_DB", "sqlite"))
    seed = os.environ.get("SOAK_SEED")
    parser.add_argument("--seed", type=int, default=int(seed) if seed else random.randrange(2**31))
    parser.add_argument("--short", action="store_true", help="the small profile of tests/e2e/test_soak_short.py")
    parser.add_argument("--no-checkpoints", action="store_true", help="tasks do not save checkpoints")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep logs, timeline and database in DIR")
    args = parser.parse_args()
    base = SHORT if args.short else replace(Profile(), seconds=args.seconds)
    profile = replace(base, db=args.db, seed=args.seed, checkpoints=not args.no_checkpoints)
    started = time.monotonic()
    print(f"command: {' '.join(['python -m bench.soak', *sys.argv[1:]])}  (SOAK_SEED={profile.seed} replays it)")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}", flush=True)
    outcome = run_soak(profile, args.keep, log=lambda text: print(text, flush=True))
    print(outcome.text())
    print(f"wall time: {time.monotonic() - started:.0f} s")
    if not outcome.ok:
        print(f"FAILED (seed {profile.seed}); logs and timeline in {outcome.run_dir}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
