"""`hposteer pilot`: the site admin's command (docs/pilot.md).

Exit codes: 0 after a drain (signal) or an idle exit; 1 when the server refused the pilot
(token, registration) or did not answer for ``--exit-when-idle`` and at least 60 s; 2 for bad options.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import threading
from pathlib import Path
from types import FrameType

from hposteer.client.http import ApiClient
from hposteer.client.pilot.agent import Pilot, PilotConfig
from hposteer.client.pilot.capabilities import CapabilityError, Overrides, describe, detect_host, parse_memory_mb
from hposteer.client.pilot.logs import Logger
from hposteer.client.pilot.runtimes.base import RuntimeOptions, RuntimeStartError
from hposteer.client.pilot.runtimes.container_args import ContainerLimits, ContainerSettingError, parse_size
from hposteer.client.pilot.runtimes.registry import RUNTIMES, make_runtime
from hposteer.client.pilot.slots import SlotSpecError, slots_from_options
from hposteer.client.settings import MISSING_TOKEN_HINT, SettingError, resolve_server, resolve_token


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help="service URL (default: $HPOSTEER_SERVER, else http://127.0.0.1:8750)")
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="file holding the pilot token (default: $HPOSTEER_TOKEN_FILE); the way to pass a token",
    )
    parser.add_argument("--token", help="pilot token (visible in `ps`: prefer --token-file; default: $HPOSTEER_TOKEN)")
    parser.add_argument("--site", default="LOCAL", help="site name, matched against tasks' --site (default LOCAL)")
    slots = parser.add_mutually_exclusive_group()
    slots.add_argument(
        "--workers",
        metavar="SPEC",
        help="GPU slots, Clara style: '0:1' = two slots with GPU 0 and GPU 1; '0,1:2,3' = two slots of two GPUs",
    )
    slots.add_argument("--slots", type=int, metavar="N", help="N CPU-only slots, no GPUs (default: 1)")
    parser.add_argument(
        "--runtime",
        default="local",
        help=f"how payloads run: {', '.join(sorted(RUNTIMES))} (default local; local has NO isolation)",
    )
    parser.add_argument(
        "--workdir",
        default="hposteer-pilot",
        help="root of the sandbox cache and working directories (default ./hposteer-pilot)",
    )
    parser.add_argument(
        "--exit-when-idle",
        type=float,
        metavar="SECONDS",
        help="exit once no slot has had work for this long; give up on a server that has not answered for "
        "this long and at least 60 s (default: wait for work forever)",
    )
    parser.add_argument(
        "--name", default=socket.gethostname(), help="pilot name shown with each attempt (default: host name)"
    )
    parser.add_argument("--clean-workdirs", action="store_true", help="delete each working directory once reported")
    parser.add_argument(
        "--threads-per-slot",
        type=int,
        metavar="N",
        help="CPU threads of numeric libraries per slot (OMP_NUM_THREADS...; default: cores / slots; "
        "variables already set in the environment win)",
    )
    brokerage = parser.add_argument_group("what the slots offer (detected; these override, see docs/pilot.md)")
    brokerage.add_argument("--gpu-model", metavar="NAME", help="model of every GPU, e.g. 'NVIDIA A100-SXM4-40GB'")
    brokerage.add_argument("--gpu-memory", metavar="MB", help="memory of every GPU in MB (or 40GB)")
    brokerage.add_argument("--gpu-vendor", choices=("nvidia", "amd", "intel"), help="vendor of every GPU")
    brokerage.add_argument("--gpu-cuda", metavar="VERSION", help="CUDA version the GPUs support, e.g. 12.4")
    brokerage.add_argument("--cpu-flags", metavar="F1,F2", help="CPU flags to declare on top of /proc/cpuinfo's")
    brokerage.add_argument(
        "--allow-network", action="store_true", help="this site lets payloads use the network (default: not)"
    )
    containers = parser.add_argument_group("containers (--runtime docker, podman, apptainer; see docs/pilot.md)")
    containers.add_argument(
        "--container-image",
        metavar="IMAGE",
        help="image for tasks that name no --evaluationContainer (default: such tasks fail); never pulled",
    )
    containers.add_argument(
        "--container-memory", default="4g", metavar="SIZE", help="memory of each container, no swap (default 4g)"
    )
    containers.add_argument(
        "--container-pids", type=int, default=4096, metavar="N", help="processes+threads per container (default 4096)"
    )
    containers.add_argument("--container-cpus", type=float, metavar="N", help="CPUs per container (default: no quota)")
    containers.add_argument(
        "--container-tmp", default="512m", metavar="SIZE", help="size of each container's /tmp (default 512m)"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log details: polls, heartbeats, downloads, commands"
    )


def run(args: argparse.Namespace) -> int:
    log = Logger(verbose=bool(getattr(args, "verbose", False)))
    try:
        token = resolve_token(args.token, getattr(args, "token_file", None))
        server = resolve_server(args.server)
    except SettingError as exc:
        log.info(f"error: {exc.message}")
        return 2
    if token is None:
        log.info(f"error: {MISSING_TOKEN_HINT} Pilots need a token with the pilot role (--role pilot).")
        return 2
    try:
        slots = slots_from_options(args.workers, args.slots)
        capabilities = detect_host(slots, _overrides(args))
        runtime = make_runtime(args.runtime, _runtime_options(args, log))
    except (SlotSpecError, RuntimeStartError, CapabilityError, ContainerSettingError) as exc:
        log.info(f"error: {exc}")
        return 2
    if args.exit_when_idle is not None and args.exit_when_idle < 0:
        log.info("error: --exit-when-idle must be 0 or more seconds")
        return 2
    if args.threads_per_slot is not None and args.threads_per_slot < 1:
        log.info("error: --threads-per-slot must be 1 or more")
        return 2
    config = PilotConfig(
        name=args.name,
        site=args.site,
        slots=slots,
        runtime=runtime,
        workdir=Path(args.workdir),
        exit_when_idle_s=args.exit_when_idle,
        clean_workdirs=args.clean_workdirs,
        verbose=log.verbose,
        threads_per_slot=args.threads_per_slot or max(1, (os.cpu_count() or 1) // len(slots)),
        capabilities=capabilities,
    )
    log.info(f"offers: {describe(capabilities, slots, isolates_network=args.runtime != 'local')}")
    if any(s.gpus for s in slots) and not any(g.vendor for g in capabilities.gpus.values()):
        log.info(
            "note: no GPU details found (no nvidia-smi?): tasks naming a GPU vendor, model or memory will not "
            "come to this pilot; declare them with --gpu-vendor, --gpu-model, --gpu-memory"
        )
    with ApiClient(server, token) as api:
        try:
            pilot = Pilot(api, config, log)
        except OSError as exc:
            log.info(f"error: cannot use --workdir {args.workdir}: {exc}")
            return 2

        def on_signal(signum: int, frame: FrameType | None) -> None:
            pilot.signal()

        in_main = threading.current_thread() is threading.main_thread()  # signals are for the main thread
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)} if in_main else {}
        if in_main and signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
            # Started under nohup: still immune to hangups, but by a handler, not SIG_IGN, which payloads
            # would inherit; their shell could then not trap the HUP that stops them when the pilot dies.
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, _ignore)
        try:
            return pilot.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A hangup does nothing to a pilot started under nohup (see run's signal set-up)."""


def _overrides(args: argparse.Namespace) -> Overrides:
    memory = getattr(args, "gpu_memory", None)
    flags = getattr(args, "cpu_flags", None) or ""
    return Overrides(
        gpu_vendor=getattr(args, "gpu_vendor", None),
        gpu_model=getattr(args, "gpu_model", None),
        gpu_memory_mb=parse_memory_mb(memory) if memory else None,
        gpu_cuda=getattr(args, "gpu_cuda", None),
        cpu_flags=tuple(f.strip().lower() for f in flags.split(",") if f.strip()),
        allow_network=bool(getattr(args, "allow_network", False)),
    )


def _runtime_options(args: argparse.Namespace, log: Logger) -> RuntimeOptions:
    pids = int(getattr(args, "container_pids", 4096))
    cpus = getattr(args, "container_cpus", None)
    if pids < 16:
        raise ContainerSettingError(f"--container-pids {pids}: at least 16 (a shell, the payload and a few helpers)")
    if cpus is not None and not 0 < cpus <= 4096:
        raise ContainerSettingError(f"--container-cpus {cpus:g}: give a positive number of CPUs (e.g. 1 or 0.5)")
    limits = ContainerLimits(
        memory_bytes=parse_size(getattr(args, "container_memory", "4g"), "--container-memory"),
        pids=pids,
        cpus=cpus,
        tmp_bytes=parse_size(getattr(args, "container_tmp", "512m"), "--container-tmp"),
    )
    image = getattr(args, "container_image", None)
    return RuntimeOptions(pilot_name=args.name, default_image=image or None, limits=limits, log=log.info)
