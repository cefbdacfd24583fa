"""`hposteer pilot`: the site admin's command (docs/pilot.md)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
from pathlib import Path
from types import FrameType

from client.http import ApiClient
from client.pilot.agent import Pilot, PilotConfig, log
from client.pilot.runtime import RUNTIMES, RuntimeStartError, make_runtime
from client.pilot.slots import SlotSpecError, cpu_slots, parse_workers
from client.settings import MISSING_TOKEN_HINT, resolve_server, resolve_token


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help="service URL (default: $HPOSTEER_SERVER or http://127.0.0.1:8750)")
    parser.add_argument("--token", help="pilot token (default: $HPOSTEER_TOKEN or the file $HPOSTEER_TOKEN_FILE)")
    parser.add_argument("--site", default="LOCAL", help="site name matched against tasks' --site (default LOCAL)")
    slots = parser.add_mutually_exclusive_group()
    slots.add_argument(
        "--workers",
        help="GPU slots, Clara style: '0:1' = two slots with GPU 0 and GPU 1; '0,1:2,3' = two slots of two GPUs",
    )
    slots.add_argument("--slots", type=int, help="number of CPU-only slots (no GPUs); default 1")
    parser.add_argument(
        "--runtime", default="local", help=f"how payloads run: {', '.join(sorted(RUNTIMES))} (default local)"
    )
    parser.add_argument("--workdir", default="hposteer-pilot", help="root of the working directories")
    parser.add_argument(
        "--exit-when-idle",
        type=float,
        metavar="SECONDS",
        help="exit once no slot has had work for this long (default: wait for work forever)",
    )
    parser.add_argument("--name", default=socket.gethostname(), help="pilot name shown with each attempt")
    parser.add_argument("--clean-workdirs", action="store_true", help="delete each working directory after use")
    parser.add_argument(
        "--threads-per-slot",
        type=int,
        metavar="N",
        help="CPU threads of numeric libraries per slot (OMP_NUM_THREADS...; default: cores / slots, "
        "unless those variables are already set)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")


def run(args: argparse.Namespace) -> int:
    token = resolve_token(args.token)
    if token is None:
        log(f"error: {MISSING_TOKEN_HINT}")
        return 2
    try:
        slots = parse_workers(args.workers) if args.workers else cpu_slots(args.slots or 1)
        runtime = make_runtime(args.runtime)
    except (SlotSpecError, RuntimeStartError) as exc:
        log(f"error: {exc}")
        return 2
    if args.exit_when_idle is not None and args.exit_when_idle < 0:
        log("error: --exit-when-idle must be 0 or more seconds")
        return 2
    config = PilotConfig(
        name=args.name,
        site=args.site,
        slots=slots,
        runtime=runtime,
        workdir=Path(args.workdir),
        exit_when_idle_s=args.exit_when_idle,
        clean_workdirs=args.clean_workdirs,
        verbose=args.verbose,
        threads_per_slot=args.threads_per_slot or max(1, (os.cpu_count() or 1) // len(slots)),
    )
    with ApiClient(resolve_server(args.server), token) as api:
        pilot = Pilot(api, config)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            pilot.signal()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        return pilot.run()
