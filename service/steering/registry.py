"""Builtin optimisers by name: what each can honour, and how to build one.

One explicit table; the heavy libraries are imported only when their optimiser is used.
``validate`` is what submission calls: it refuses, with the parameter and the reason,
every method an optimiser cannot honour, and it builds the optimiser once and asks it
for a point, so that a library's own objection surfaces at submit, not at the first
steering run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service.core.optimizer_spec import OptimizerSpec
from service.core.searchspace import Dimension, SearchSpace, SpaceIssue
from service.steering import grid, nevergrad_adapter, optuna_tpe, random_search, skopt_adapter
from service.steering.base import AskTell, SpaceCodec, is_constant, unsupported_grid_search


@dataclass(frozen=True)
class Library:
    unsupported: Callable[[Dimension], str | None]
    build: Callable[[OptimizerSpec, SearchSpace, int, int, int], AskTell]
    honours_grid_search: bool = False
    unknown_method: Callable[[str], str | None] | None = None


def _tpe(spec: OptimizerSpec, space: SearchSpace, seed: int, budget: int, parallelism: int) -> AskTell:
    return optuna_tpe.TpeOptimizer(SpaceCodec(space), seed=seed, parallelism=parallelism)


def _nevergrad(spec: OptimizerSpec, space: SearchSpace, seed: int, budget: int, parallelism: int) -> AskTell:
    return nevergrad_adapter.NevergradOptimizer(
        SpaceCodec(space), method=spec.method or "NGOpt", seed=seed, budget=budget, parallelism=parallelism
    )


def _skopt(spec: OptimizerSpec, space: SearchSpace, seed: int, budget: int, parallelism: int) -> AskTell:
    return skopt_adapter.SkoptOptimizer(SpaceCodec(space), method=spec.method or "GP", seed=seed, budget=budget)


def _random(spec: OptimizerSpec, space: SearchSpace, seed: int, budget: int, parallelism: int) -> AskTell:
    return random_search.RandomOptimizer(space, seed=seed)


def _grid(spec: OptimizerSpec, space: SearchSpace, seed: int, budget: int, parallelism: int) -> AskTell:
    return grid.GridOptimizer(space)


LIBRARIES: dict[str, Library] = {
    "tpe": Library(optuna_tpe.unsupported, _tpe),
    "nevergrad": Library(nevergrad_adapter.unsupported, _nevergrad, unknown_method=nevergrad_adapter.unknown_method),
    "skopt": Library(skopt_adapter.unsupported, _skopt),
    "random": Library(random_search.unsupported, _random),
    "grid": Library(grid.unsupported, _grid, honours_grid_search=True),
}

# For messages: who honours what.
_HONOURED_BY = {
    "normal": "nevergrad, random",
    "qnormal": "nevergrad, random",
    "lognormal": "nevergrad, random",
    "qlognormal": "nevergrad, random",
}


def validate(spec: OptimizerSpec, space: SearchSpace) -> list[SpaceIssue]:
    """Everything that would stop this optimiser on this space (empty: it will run)."""
    library = LIBRARIES[spec.library]
    issues: list[SpaceIssue] = []
    if library.unknown_method is not None and spec.method:
        problem = library.unknown_method(spec.method)
        if problem:
            return [SpaceIssue(None, "optimizer", problem)]
    for dim in space:
        reason = library.unsupported(dim)
        if reason:
            also = _HONOURED_BY.get(dim.json_method)
            suffix = f" (optimizers that honour it: {also})" if also else ""
            issues.append(SpaceIssue(dim.name, "method", f"{spec.name} cannot honour it: {reason}{suffix}"))
    if not library.honours_grid_search:
        issues += [SpaceIssue(p, k, m) for p, k, m in unsupported_grid_search(list(space), spec.name)]
    if not issues and all(is_constant(d) for d in space) and spec.library not in ("grid", "random"):
        issues.append(SpaceIssue(None, None, f"every parameter is fixed: there is nothing for {spec.name} to search"))
    if not issues:
        issues += _probe(spec, space)
    return issues


def _probe(spec: OptimizerSpec, space: SearchSpace) -> list[SpaceIssue]:
    """Build the optimiser and ask it once: a library's objection is reported at submit."""
    try:
        optimizer = create(spec, space, seed=0, budget=10, parallelism=1)
    except Exception as exc:
        return [SpaceIssue(None, "optimizer", f"{spec.name} cannot be built for this space: {exc}")]
    try:
        optimizer.ask(1)
    except Exception as exc:
        return [SpaceIssue(None, "optimizer", f"{spec.name} failed on this space: {type(exc).__name__}: {exc}")]
    finally:
        optimizer.close()
    return []


def create(spec: OptimizerSpec, space: SearchSpace, *, seed: int, budget: int, parallelism: int) -> AskTell:
    return LIBRARIES[spec.library].build(spec, space, seed, budget, parallelism)
