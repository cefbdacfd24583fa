"""Any optimiser of nevergrad's registry (default NGOpt), with every method of the format.

The normal family maps onto unbounded parameters whose standardised value z gives
``mu + sigma * z`` (normal) or ``base ** (mu + sigma * z)`` (lognormal), so nevergrad's
prior is the distribution the JSON asks for.
"""

from __future__ import annotations

import difflib
import gc
import math
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


def unknown_method(method: str) -> str | None:
    import nevergrad as ng

    if method in ng.optimizers.registry:
        return None
    close = difflib.get_close_matches(method, list(ng.optimizers.registry), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else " (see nevergrad.optimizers.registry)"
    return f"nevergrad has no optimizer {method!r}{hint}"


def unsupported(dim: Dimension) -> str | None:
    return None  # every method has a faithful nevergrad parameter


def _parameter(dim: Dimension) -> Any:
    import nevergrad as ng

    if isinstance(dim, Categorical):
        return ng.p.Choice(list(range(len(dim.categories))))
    if isinstance(dim, UniformInt):
        return ng.p.Scalar(lower=dim.low, upper=dim.high).set_integer_casting()
    if isinstance(dim, Uniform):
        return ng.p.Scalar(lower=dim.low, upper=dim.high)
    if isinstance(dim, LogUniform):
        return ng.p.Log(lower=dim.low, upper=dim.high)
    if isinstance(dim, Normal):
        return ng.p.Scalar(init=dim.mu).set_mutation(sigma=dim.sigma)
    if isinstance(dim, LogNormal):
        return ng.p.Log(init=dim.base**dim.mu, exponent=dim.base**dim.sigma)
    raise AssertionError(f"unsupported dimension reached the nevergrad adapter: {dim}")


class NevergradOptimizer:
    def __init__(self, codec: SpaceCodec, *, method: str, seed: int, budget: int, parallelism: int):
        import nevergrad as ng
        import numpy as np

        self._codec = codec
        parametrization = ng.p.Dict(**{d.name: _parameter(d) for d in codec.searched})
        parametrization.random_state = np.random.RandomState(seed)
        self._opt: Any = ng.optimizers.registry[method](
            parametrization=parametrization, budget=max(budget, 1), num_workers=max(parallelism, 1)
        )

    def ask(self, n: int) -> list[Suggestion]:
        out = []
        for _ in range(n):
            candidate = self._opt.ask()
            out.append(Suggestion(self._codec.decode(dict(candidate.value)), candidate))
        return out

    def adopt(self, params: Params) -> Handle:
        return self._opt.parametrization.spawn_child(new_value=self._codec.encode(params))

    def tell(self, handle: Handle, loss: float) -> None:
        self._opt.tell(handle, loss if math.isfinite(loss) else 1e300)

    def tell_failure(self, handle: Handle) -> None:
        return None  # nevergrad has no notion of a failed point; inventing a loss would mislead it

    def discard(self, handle: Handle) -> None:
        return None

    def close(self) -> None:
        # Some nevergrad optimisers (Cobyla, CmaFmin2 inside NGOpt) run a non-daemon thread
        # that only stops when the optimiser is garbage-collected: drop it now.
        self._opt = None
        gc.collect()
