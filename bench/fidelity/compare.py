"""(g) The side-by-side comparison on the tabulated curves, and its metrics (docs/benchmarks.md, (g)).

Per dataset, every side of bench/fidelity/sides.py runs on ``seeds`` seeds in the slot simulator:

* **target**: the no-stopping side's final median quality, the median over seeds of its best
  validation loss once ``BUDGET_TRAININGS`` full trainings' worth of epochs were spent;
* **epochs to target**, per side: the median over seeds of the epochs spent when its best loss first
  reached the target (``inf`` when it did not within ``CAP_TRAININGS`` trainings' worth), and its ratio
  to the no-stopping side's (the issue's target: at most 35 %);
* **quality at equal epochs**: each side's best loss once ``trainings`` full trainings' worth of
  epochs were spent, for each of ``CHECKPOINTS`` (the budget among them: on a grid of a few hundred
  configurations every stopping side finds the grid's best well before it, so the earlier
  checkpoints are where sides differ); at each, hposteer's best scheduler and Optuna's best pruner
  (lowest median over seeds, then lowest mean) are compared with a two-sided Mann-Whitney U test.

"Best loss" counts every report (a stopped point's intermediate value is a model one could keep);
the same figures counting only points trained to the last epoch are under ``full_trainings``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

from bench.fidelity.sides import HPOSTEER_SIDES, OPTUNA_SIDES, SIDES, make_side
from bench.fidelity.simulate import SLOTS, Run, simulate
from bench.fidelity.tabulate import DATASETS, TABLES, Table, load

BUDGET_TRAININGS = 60
CHECKPOINTS = (5, 10, 20, 60)  # trainings' worth of epochs at which quality is compared
CAP_TRAININGS = 180  # how far a side may run past the budget to reach the target
TARGET_RATIO = 0.35
SEEDS = 10
QUICK_SEEDS = 3


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def _number(value: float, digits: int = 5) -> float | str:
    """JSON has no infinity: an unreached target is written as the string "inf"."""
    return "inf" if math.isinf(value) else round(value, digits)


def compare_dataset(
    table: Table,
    seeds: Sequence[int],
    *,
    sides: Sequence[str] = SIDES,
    budget_trainings: int = BUDGET_TRAININGS,
    cap_trainings: int = CAP_TRAININGS,
    slots: int = SLOTS,
    workers: int = 1,
) -> dict[str, Any]:
    """Every side on every seed of one table, and the metrics; ``sides`` must start with ``no-stopping``.

    ``workers`` > 1 runs the seeds of a side in that many processes (the runs do not depend on each other).
    """
    if sides[0] != "no-stopping":
        raise ValueError("the no-stopping side comes first: it sets the target")
    budget, cap = budget_trainings * table.epochs, cap_trainings * table.epochs
    runs: dict[str, list[Run]] = {}
    seconds: dict[str, float] = {}
    target = target_full = math.inf
    with ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        mapped = pool.map if pool is not None else map
        for key in sides:
            started = time.perf_counter()
            # the no-stopping side runs to the cap (it sets the target, never "reached" before); the others
            # until they reached it
            aim = (-math.inf, -math.inf) if key == "no-stopping" else (target, target_full)
            runs[key] = list(mapped(partial(_one, key, table, cap=cap, budget=budget, slots=slots, aim=aim), seeds))
            seconds[key] = round(time.perf_counter() - started, 1)
            if key == "no-stopping":
                target = _median([r.best_at(budget) for r in runs[key]])
                target_full = _median([r.best_at(budget, full=True) for r in runs[key]])
    checkpoints = sorted({*(k for k in CHECKPOINTS if k < budget_trainings), budget_trainings})
    rows = {
        key: _side_row(runs[key], budget, target, target_full)
        | {
            f"loss_at_{k}_trainings_median": round(_median([r.best_at(k * table.epochs) for r in runs[key]]), 5)
            for k in checkpoints
        }
        | {"seconds": seconds[key]}
        for key in sides
    }
    for full in (False, True):
        metric = "epochs_to_target_full" if full else "epochs_to_target"
        base = rows["no-stopping"][metric + "_median"]
        for row in rows.values():
            mine = row[metric + "_median"]
            ratio = mine / base if not isinstance(mine, str) and not isinstance(base, str) else math.inf
            row[metric + "_ratio"] = _number(ratio, 3)
    return {
        "dataset": table.dataset,
        "configurations": len(table.configs),
        "epochs_per_training": table.epochs,
        "slots": slots,
        "seeds": list(seeds),
        "budget_epochs": budget,
        "cap_epochs": cap,
        "target_loss": round(target, 5),
        "target_loss_full_trainings": round(target_full, 5),
        "target_ratio": TARGET_RATIO,
        "sides": rows,
        "checkpoints_trainings": list(checkpoints),
        "quality_test": {str(k): _quality_test(runs, k * table.epochs, full=False) for k in checkpoints},
        "quality_test_full_trainings": {str(k): _quality_test(runs, k * table.epochs, full=True) for k in checkpoints},
    }


def _one(key: str, table: Table, seed: int, *, cap: int, budget: int, slots: int, aim: tuple[float, float]) -> Run:
    """One side on one seed; it stops early once the budget is spent and both targets (``aim``) are reached."""
    target, target_full = aim

    def done(run: Run) -> bool:
        reached = run.best[-1][1] <= target and bool(run.best_full) and run.best_full[-1][1] <= target_full
        return run.epochs >= budget and reached

    return simulate(make_side(key, table, seed), table, cap, slots=slots, budget=budget, done=done)


def _side_row(runs: Sequence[Run], budget: int, target: float, target_full: float) -> dict[str, Any]:
    to_target = [r.epochs_to(target) for r in runs]
    to_target_full = [r.epochs_to(target_full, full=True) for r in runs]
    at_budget = [r.best_at(budget) for r in runs]
    return {
        "epochs_to_target_median": _number(_median(to_target), 1),
        "epochs_to_target": [_number(v, 1) for v in to_target],
        "not_reached": sum(math.isinf(v) for v in to_target),
        "loss_at_budget_median": round(_median(at_budget), 5),
        "loss_at_budget": [round(v, 5) for v in at_budget],
        "epochs_to_target_full_median": _number(_median(to_target_full), 1),
        "loss_at_budget_full_median": _number(_median([r.best_at(budget, full=True) for r in runs])),
    } | {f"{name}_at_budget_median": _median([r.at_budget[name] for r in runs]) for name in runs[0].at_budget}


def _quality_test(runs: dict[str, list[Run]], budget: int, *, full: bool) -> dict[str, Any] | None:
    """hposteer's best scheduler against Optuna's best pruner at the budget: two-sided Mann-Whitney U."""
    from scipy.stats import mannwhitneyu

    def at_budget(key: str) -> list[float]:
        return [r.best_at(budget, full=full) for r in runs[key]]

    ours = [k for k in HPOSTEER_SIDES if k in runs]
    theirs = [k for k in OPTUNA_SIDES if k in runs]
    if not ours or not theirs:
        return None

    def rank(key: str) -> tuple[float, float]:
        return _median(at_budget(key)), statistics.fmean(at_budget(key))

    best_ours, best_theirs = min(ours, key=rank), min(theirs, key=rank)
    x, y = at_budget(best_ours), at_budget(best_theirs)
    if any(math.isinf(v) for v in x + y):
        return {"hposteer": best_ours, "optuna": best_theirs, "skipped": "a run had no value at the budget"}
    if len(set(x + y)) == 1:  # every run found the same value: no difference to test (scipy would divide by 0)
        return {"hposteer": best_ours, "optuna": best_theirs, "hposteer_median": x[0], "optuna_median": y[0],
                "U": len(x) * len(y) / 2, "p": 1.0, "note": "every value ties"}  # fmt: skip
    result = mannwhitneyu(x, y, alternative="two-sided")
    return {
        "hposteer": best_ours,
        "optuna": best_theirs,
        "hposteer_median": round(_median(x), 5),
        "optuna_median": round(_median(y), 5),
        "U": float(result.statistic),
        "p": round(float(result.pvalue), 4),
    }


def run(
    *, quick: bool = False, datasets: Sequence[str] = DATASETS, tables: Path = TABLES, workers: int = 2
) -> dict[str, Any]:
    """The bench section: every dataset's comparison, printed as it finishes (two processes: the machine's cores)."""
    seeds = list(range(QUICK_SEEDS if quick else SEEDS))
    out: dict[str, Any] = {
        "what": "pure scheduler core in a simulator, not yet through the service",
        "budget_trainings": BUDGET_TRAININGS,
        "datasets": {},
    }
    for dataset in datasets:
        started = time.perf_counter()
        result = compare_dataset(load(dataset, tables), seeds, workers=workers)
        result["seconds"] = round(time.perf_counter() - started, 1)
        out["datasets"][dataset] = result
        print(format_result(result), flush=True)
    return out


def format_result(result: dict[str, Any]) -> str:
    lines = [
        f"fidelity {result['dataset']}: target loss {result['target_loss']} (no-stopping median at "
        f"{result['budget_epochs']} epochs, {len(result['seeds'])} seeds, {result['seconds']} s)"
    ]
    for key, row in result["sides"].items():
        lines.append(
            f"  {key:<19} epochs to target {row['epochs_to_target_median']!s:>7} "
            f"({row['epochs_to_target_ratio']!s:>5} of no-stopping, {row['not_reached']} not reached)  "
            f"loss at budget {row['loss_at_budget_median']:<8} points {row['points_at_budget_median']}"
        )
    for trainings, test in result["quality_test"].items():
        if test and "U" in test:
            lines.append(
                f"  at {trainings:>2} trainings' epochs: {test['hposteer']} {test['hposteer_median']} vs "
                f"{test['optuna']} {test['optuna_median']}: Mann-Whitney U {test['U']}, p {test['p']}"
            )
    return "\n".join(lines)


def main() -> None:
    """One dataset or a few, outside ``make bench``: ``python -m bench.fidelity.compare digits --out FILE``."""
    parser = argparse.ArgumentParser(prog="python -m bench.fidelity.compare")
    parser.add_argument("datasets", nargs="*", help=f"default: {' '.join(DATASETS)}")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SEEDS} seeds instead of {SEEDS}")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the results there as JSON")
    args = parser.parse_args()
    unknown = set(args.datasets) - set(DATASETS)
    if unknown:
        parser.error(f"unknown datasets {sorted(unknown)}; the tables are {', '.join(DATASETS)}")
    result = run(quick=args.quick, datasets=args.datasets or DATASETS, workers=args.workers)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
