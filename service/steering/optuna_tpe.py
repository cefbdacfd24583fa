"""Optuna's TPE sampler used ask-and-tell on an in-memory study (the default optimiser).

TPE needs bounded distributions: the normal family is refused. Points still being
evaluated are real RUNNING trials, so TPE's constant liar spreads parallel suggestions.
"""

from __future__ import annotations

import warnings
from typing import Any

from service.core.searchspace import (
    Categorical,
    Dimension,
    LogNormal,
    LogUniform,
    Normal,
    Params,
    Uniform,
    UniformInt,
)
from service.steering.base import Handle, SpaceCodec, Suggestion


def unsupported(dim: Dimension) -> str | None:
    if isinstance(dim, Normal | LogNormal):
        return (
            f"method {dim.json_method!r} is unbounded, and TPE samples bounded ranges only; "
            "use --optimizer nevergrad or random, or a bounded method (uniform, loguniform)"
        )
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
    def __init__(self, codec: SpaceCodec, *, seed: int, parallelism: int):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._codec = codec
        self._distributions = {d.name: _distribution(d) for d in codec.searched}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # multivariate/constant_liar are flagged experimental
            sampler = optuna.samplers.TPESampler(
                seed=seed,
                multivariate=True,
                group=True,
                constant_liar=parallelism > 1,
                warn_independent_sampling=False,
            )
        self._study = optuna.create_study(sampler=sampler, direction="minimize")

    def ask(self, n: int) -> list[Suggestion]:
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(n):
                trial = self._study.ask(self._distributions)
                out.append(Suggestion(self._codec.decode(trial.params), trial))
        return out

    def adopt(self, params: Params) -> Handle:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._study.enqueue_trial(self._codec.encode(params), skip_if_exists=False)
            return self._study.ask(self._distributions)

    def tell(self, handle: Handle, loss: float) -> None:
        self._study.tell(handle, loss)

    def tell_failure(self, handle: Handle) -> None:
        from optuna.trial import TrialState

        self._study.tell(handle, state=TrialState.FAIL)

    def discard(self, handle: Handle) -> None:
        self.tell_failure(handle)

    def close(self) -> None:
        return None
