"""Builtin optimisers by name: what each can honour, and how to build one.

One explicit table, no string-built imports; the heavy libraries are imported only inside
the adapter that uses them. ``validate`` is what submission calls: it refuses, naming the
parameter, the method and the optimisers that would honour it, every method an optimiser
cannot honour (never turning it into a constant, as hpogrid's nevergrad adapter did), then
builds the optimiser once and asks it for points, so that a library's own objection
surfaces at submit, not at the first steering run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hposteer.core.searchspace import Dimension, SearchSpace, SpaceIssue
from hposteer.service.core.optimizer_spec import OptimizerSpec
from hposteer.service.steering.optimizers import grid, nevergrad_adapter, optuna_tpe, random_search, skopt_adapter
from hposteer.service.steering.optimizers.base import AskTell, SpaceCodec, is_constant, unsupported_grid_search

Builder = Callable[[OptimizerSpec, SearchSpace, int, int, int], AskTell]  # spec, space, seed, budget, parallelism


@dataclass(frozen=True)
class Library:
    unsupported: Callable[[Dimension], str | None]  # why a dimension cannot be honoured, or None
    build: Builder
    honours_grid_search: bool = False
    method_problem: Callable[[str], str | None] | None = None  # why a method name cannot run, or None
    needs_a_searched_parameter: bool = True  # model-based optimisers have nothing to do with constants


def _tpe(spec: OptimizerSpec, space: SearchSpace, seed: int, budget: int, parallelism: int) -> AskTell:
    return optuna_tpe.TpeOptimizer(SpaceCodec(space), seed=seed)


def _nevergrad(spec: OptimizerSpec, space: SearchSpace, seed: int, budget: int, parallelism: int) -> AskTell:
    return nevergrad_adapter.NevergradOptimizer(
        SpaceCodec(space),
        method=spec.method or nevergrad_adapter.DEFAULT_METHOD,
        seed=seed,
        budget=budget,
        parallelism=parallelism,
    )


def _skopt(spec: OptimizerSpec, space: SearchSpace, seed: int, budget: int, parallelism: int) -> AskTell:
    return skopt_adapter.SkoptOptimizer(
        SpaceCodec(space), method=spec.method or skopt_adapter.DEFAULT_METHOD, seed=seed, budget=budget
    )


def _random(spec: OptimizerSpec, space: SearchSpace, seed: int, budget: int, parallelism: int) -> AskTell:
    return random_search.RandomOptimizer(space, seed=seed)


def _grid(spec: OptimizerSpec, space: SearchSpace, seed: int, budget: int, parallelism: int) -> AskTell:
    return grid.GridOptimizer(space)


LIBRARIES: dict[str, Library] = {
    "tpe": Library(optuna_tpe.unsupported, _tpe),
    "nevergrad": Library(nevergrad_adapter.unsupported, _nevergrad, method_problem=nevergrad_adapter.method_problem),
    "skopt": Library(skopt_adapter.unsupported, _skopt),
    "random": Library(random_search.unsupported, _random, needs_a_searched_parameter=False),
    "grid": Library(grid.unsupported, _grid, honours_grid_search=True, needs_a_searched_parameter=False),
}


def honoured_by(dim: Dimension) -> list[str]:
    """The builtin optimisers that can honour this dimension, in table order."""
    return [name for name, library in LIBRARIES.items() if library.unsupported(dim) is None]


def validate(spec: OptimizerSpec, space: SearchSpace) -> list[SpaceIssue]:
    """Everything that would stop this optimiser on this space (empty: it will run)."""
    library = LIBRARIES[spec.library]
    if library.method_problem is not None and spec.method:
        problem = library.method_problem(spec.method)
        if problem:
            return [SpaceIssue(None, "optimizer", problem)]
    issues: list[SpaceIssue] = []
    for dim in space:
        reason = library.unsupported(dim)
        if reason:
            others = ", ".join(honoured_by(dim)) or "none of the builtin optimizers"
            message = f"{spec.name} cannot honour it: {reason} (optimizers that honour {dim.json_method!r}: {others})"
            issues.append(SpaceIssue(dim.name, "method", message))
    if not library.honours_grid_search:
        issues += [SpaceIssue(p, k, m) for p, k, m in unsupported_grid_search(list(space), spec.name)]
    if not issues and library.needs_a_searched_parameter and all(is_constant(d) for d in space):
        issues.append(
            SpaceIssue(
                None,
                None,
                f"every parameter is fixed: there is nothing for {spec.name} to search "
                "(--optimizer grid evaluates the single point once)",
            )
        )
    return issues or _probe(spec, space)


def _probe(spec: OptimizerSpec, space: SearchSpace) -> list[SpaceIssue]:
    """Build the optimiser and ask it for a batch: a library's objection is reported at submit."""
    try:
        optimizer = create(spec, space, seed=0, budget=10, parallelism=2)
    except Exception as exc:
        return [SpaceIssue(None, "optimizer", f"{spec.name} cannot be built for this space: {exc}")]
    try:
        optimizer.ask(2)
    except Exception as exc:
        return [SpaceIssue(None, "optimizer", f"{spec.name} failed on this space: {type(exc).__name__}: {exc}")]
    finally:
        optimizer.close()
    return []


def create(spec: OptimizerSpec, space: SearchSpace, *, seed: int, budget: int, parallelism: int) -> AskTell:
    """A fresh optimiser; ``budget`` is the segment's maxPoints, ``parallelism`` its nParallelEvaluation."""
    return LIBRARIES[spec.library].build(spec, space, seed, budget, parallelism)
