"""Optuna's TPE sampler used ask-and-tell on an in-memory study (the default optimiser).

TPE needs bounded distributions: the normal family is refused. Points still being
evaluated are real RUNNING trials and ``constant_liar`` is on, so TPE spreads the points of
a batch and of parallel evaluations instead of proposing the same region again. Failures
are FAIL trials, which TPE ignores, rather than invented losses.
"""

from __future__ import annotations

from typing import Any

from hposteer.core.searchspace import (
    Categorical,
    Dimension,
    LogNormal,
    LogUniform,
    Normal,
    Params,
    Uniform,
    UniformInt,
)
from hposteer.service.steering.optimizers.base import Handle, SpaceCodec, Suggestion


def unsupported(dim: Dimension) -> str | None:
    if isinstance(dim, Normal | LogNormal):
        return f"method {dim.json_method!r} is unbounded, and TPE samples bounded ranges only"
    return None


def _distribution(dim: Dimension) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(dim, Categorical):
        return CategoricalDistribution(list(range(len(dim.categories))))
    if isinstance(dim, UniformInt):
        return IntDistribution(dim.low, dim.high)
    if isinstance(dim, Uniform):
        return FloatDistribution(dim.low, dim.high)
    if isinstance(dim, LogUniform):
        return FloatDistribution(dim.low, dim.high, log=True)
    raise AssertionError(f"unsupported dimension reached the TPE adapter: {dim}")


class TpeOptimizer:
    def __init__(self, codec: SpaceCodec, *, seed: int):
        import optuna

        # Optuna logs every trial at INFO; the steering run records what matters.
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self._codec = codec
        self._distributions = {d.name: _distribution(d) for d in codec.searched}
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
        self._study: Any = optuna.create_study(sampler=sampler, direction="minimize")

    @property
    def study(self) -> Any:
        """The in-memory study (for diagnostics and tests)."""
        return self._study

    def ask(self, n: int) -> list[Suggestion]:
        out = []
        for _ in range(n):
            trial = self._study.ask(self._distributions)
            out.append(Suggestion(self._codec.decode(trial.params), trial))
        return out

    def adopt(self, params: Params) -> Handle:
        # enqueue + ask makes the point a RUNNING trial, which the constant liar takes into account.
        self._study.enqueue_trial(self._codec.encode(params), skip_if_exists=False)
        return self._study.ask(self._distributions)

    def tell(self, handle: Handle, loss: float) -> None:
        self._study.tell(handle, loss)

    def tell_failure(self, handle: Handle) -> None:
        self._fail(handle)

    def discard(self, handle: Handle) -> None:
        self._fail(handle)  # a FAIL trial is ignored by TPE, as if it had never been asked

    def _fail(self, handle: Handle) -> None:
        from optuna.trial import TrialState

        self._study.tell(handle, state=TrialState.FAIL)

    def close(self) -> None:
        self._study = None
