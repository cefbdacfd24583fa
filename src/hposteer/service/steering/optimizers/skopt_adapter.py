"""scikit-optimize's Optimizer with a GP (default), RF, ET or GBRT surrogate.

skopt refits its surrogate on every ``tell``, so results are buffered and told in one call
just before the next ask: a rebuild from 500 points fits once, not 500 times. The GP still
grows about n^2 per fit (0.5 s at 50 points, 18 s at 500 here); steering runs outside the
request path, in its own process, and a warning is logged once a GP passes GP_SLOW_POINTS.
"""

from __future__ import annotations

import logging
import warnings
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

log = logging.getLogger("hposteer.steering.skopt")

DEFAULT_METHOD = "GP"
GP_SLOW_POINTS = 200


def unsupported(dim: Dimension) -> str | None:
    if isinstance(dim, Normal | LogNormal):
        return f"method {dim.json_method!r} is unbounded, and scikit-optimize searches bounded ranges only"
    return None


def _dimension(dim: Dimension) -> Any:
    from skopt.space import Categorical as SkCategorical
    from skopt.space import Integer, Real

    if isinstance(dim, Categorical):
        return SkCategorical(list(range(len(dim.categories))), name=dim.name)
    if isinstance(dim, UniformInt):
        return Integer(dim.low, dim.high, name=dim.name)
    if isinstance(dim, Uniform):
        return Real(dim.low, dim.high, name=dim.name)
    if isinstance(dim, LogUniform):
        return Real(dim.low, dim.high, prior="log-uniform", base=dim.base, name=dim.name)
    raise AssertionError(f"unsupported dimension reached the skopt adapter: {dim}")


def _estimator(method: str, seed: int) -> Any:
    """skopt's name for most surrogates; for GBRT an instance that newer scikit-learn accepts.

    scikit-learn >= 1.6 decides "is a regressor" from estimator tags, which skopt 0.10's
    GradientBoostingQuantileRegressor does not declare, so skopt refuses its own GBRT.
    """
    if method != "GBRT":
        return method
    from skopt.learning import GradientBoostingQuantileRegressor

    class _TaggedGBRT(GradientBoostingQuantileRegressor):  # type: ignore[misc]
        def __sklearn_tags__(self) -> Any:
            tags = super().__sklearn_tags__()
            tags.estimator_type = "regressor"
            return tags

    return _TaggedGBRT(random_state=seed)


class SkoptOptimizer:
    def __init__(self, codec: SpaceCodec, *, method: str, seed: int, budget: int):
        from skopt import Optimizer

        self._codec = codec
        self._method = method
        self._names = [d.name for d in codec.searched]
        self._xs: list[list[Any]] = []  # results not yet told (see the module docstring)
        self._ys: list[float] = []
        self._warned = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._opt: Any = Optimizer(
                [_dimension(d) for d in codec.searched],
                base_estimator=_estimator(method, seed),
                random_state=seed,
                n_initial_points=max(1, min(10, budget // 2)),
            )

    @property
    def optimizer(self) -> Any:
        """The skopt optimiser (for diagnostics and tests)."""
        return self._opt

    def _flush(self) -> None:
        if not self._xs:
            return
        xs, ys = self._xs, self._ys
        self._xs, self._ys = [], []
        with warnings.catch_warnings():
            # "The objective has been evaluated at this point before": a q-variant's rounding, harmless.
            warnings.simplefilter("ignore", UserWarning)
            self._opt.tell(xs, ys)
        told = len(self._opt.Xi)
        if self._method == "GP" and told > GP_SLOW_POINTS and not self._warned:
            self._warned = True
            log.warning("scikit-optimize's GP has %d points: each steering run now takes seconds", told)

    def ask(self, n: int) -> list[Suggestion]:
        if n <= 0:
            return []
        self._flush()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            xs = self._opt.ask(n_points=n) if n > 1 else [self._opt.ask()]
        return [Suggestion(self._codec.decode(dict(zip(self._names, x, strict=True))), list(x)) for x in xs[:n]]

    def adopt(self, params: Params) -> Handle:
        internal = self._codec.encode(params)
        return [internal[name] for name in self._names]

    def tell(self, handle: Handle, loss: float) -> None:
        self._xs.append(handle)
        self._ys.append(loss)

    def tell_failure(self, handle: Handle) -> None:
        return None  # skopt has no failed observations; the point is simply not modelled

    def discard(self, handle: Handle) -> None:
        return None

    def close(self) -> None:
        self._xs, self._ys = [], []
