"""`make bench`: run the benchmarks and print (and save) their results.

python -m bench [--only latency|throughput|isolation|containers|replicas|ui|fidelity] [--quick]

With --only, the other sections of the results file are kept (merged), and the section's own date
and command are recorded under "runs".
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from bench import containers, isolation, latency, replicas, throughput, ui
from bench.fidelity import compare as fidelity
from bench.harness import machine, postgres_unavailable, running_service

RESULTS = Path(__file__).parent / "results"
SECTIONS = ("latency", "throughput", "isolation", "containers", "replicas", "ui", "fidelity")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "--only", choices=["latency", "throughput", "isolation", "containers", "replicas", "ui", "fidelity"]
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run, not for the docs)")
    args = parser.parse_args()
    report: dict[str, object] = {
        "machine": machine(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": "make bench",
    }
    if args.only in (None, "latency"):
        rows = []
        histories = (100, 200) if args.quick else (100, 1000)
        samples = 20 if args.quick else 100
        for optimizer in ("tpe", "nevergrad:NGOpt"):
            for history in histories:
                with running_service() as service:
                    row = latency.measure(service, optimizer, history, samples)
                print(
                    f"latency  {optimizer:<16} history {history:>5}: p50 {row['p50_ms']:>6} ms  "
                    f"p95 {row['p95_ms']:>6} ms  max {row['max_ms']:>6} ms  ({samples} iterations)",
                    flush=True,
                )
                rows.append(row)
        report["latency"] = rows
    if args.only in (None, "throughput"):
        with running_service() as service:
            row = throughput.measure(service, duration_s=5.0 if args.quick else 20.0)
        print(
            f"control plane: {row['evaluations_per_s']} zero-work evaluations/s with {row['slots']} slots",
            flush=True,
        )
        report["throughput"] = row
    if args.only in (None, "isolation"):
        rows = []
        for mode in ("process", "thread"):
            with running_service(steering_mode=mode) as service:
                row = isolation.measure(service, points=30 if args.quick else 80)
            row["steering_mode"] = mode
            print(
                f"isolation steering in a {mode:<7}: heartbeat p50 {row['heartbeat_p50_ms']} ms, "
                f"p95 {row['heartbeat_p95_ms']} ms, max {row['heartbeat_max_ms']} ms while skopt GP steered "
                f"{row['gp_points']} points ({row['gp_seconds']} s)",
                flush=True,
            )
            rows.append(row)
        report["isolation"] = rows
    if args.only in (None, "containers"):
        report["containers"] = _containers(only=args.only == "containers", quick=args.quick)
    if args.only in (None, "replicas"):
        report["replicas"] = _replicas(only=args.only == "replicas", quick=args.quick)
    if args.only in (None, "ui"):  # (f); its PostgreSQL part skips itself when no server answers
        report["ui"] = ui.run(quick=args.quick)
    if args.only in (None, "fidelity"):  # (g): the pure scheduler core in a simulator, no service yet
        report["fidelity"] = fidelity.run(quick=args.quick)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("quick.json" if args.quick else "latest.json")
    if args.only is not None:
        report = _merged(out, args.only, report)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {out}")


def _containers(*, only: bool, quick: bool) -> dict[str, object]:
    """(d) needs a Docker engine and the images: without them, `--only containers` fails and `make bench` skips it."""
    reason = containers.unavailable()
    if reason is None:
        return containers.run(quick=quick)
    if only:
        raise SystemExit(f"containers: cannot run: {reason}")
    print(f"containers: skipped ({reason})", flush=True)
    return {"skipped": reason}


def _replicas(*, only: bool, quick: bool) -> dict[str, object]:
    """(e) needs a PostgreSQL server: without one, `--only replicas` fails and `make bench` skips it."""
    reason = postgres_unavailable()
    if reason is None:
        return replicas.run(quick=quick)
    if only:
        raise SystemExit(f"replicas: cannot run: {reason} (set HPOSTEER_BENCH_POSTGRES_URL)")
    print(f"replicas: skipped ({reason})", flush=True)
    return {"skipped": reason}


def _merged(path: Path, section: str, report: dict[str, object]) -> dict[str, object]:
    """The results already in ``path`` with ``section`` replaced; when and how it ran goes under "runs"."""
    try:
        merged: dict[str, object] = json.loads(path.read_text())
    except (OSError, ValueError):
        merged = {key: report[key] for key in ("machine", "platform", "date", "command")}
    merged[section] = report[section]
    runs = merged.get("runs")
    runs = dict(runs) if isinstance(runs, dict) else {}
    runs[section] = {
        "machine": report["machine"],
        "date": report["date"],
        "command": f"python -m bench --only {section}",
    }
    merged["runs"] = runs
    return merged


if __name__ == "__main__":
    main()
