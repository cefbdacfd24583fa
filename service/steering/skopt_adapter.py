"""scikit-optimize's Optimizer with a GP (default), RF, ET or GBRT surrogate.

The GP grows about n^2 per ask (0.5 s at 50 points, 18 s at 500 here); steering runs
outside the request path, in its own process, so the service does not feel it.
"""

from __future__ import annotations

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
            f"method {dim.json_method!r} is unbounded, and scikit-optimize searches bounded ranges only; "
            "use --optimizer nevergrad or random, or a bounded method"
        )
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
        import warnings

        from skopt import Optimizer

        self._codec = codec
        self._names = [d.name for d in codec.searched]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._opt = Optimizer(
                [_dimension(d) for d in codec.searched],
                base_estimator=_estimator(method, seed),
                random_state=seed,
                n_initial_points=max(1, min(10, budget // 2)),
            )

    def _internal(self, x: list[Any]) -> dict[str, Any]:
        return dict(zip(self._names, x, strict=True))

    def ask(self, n: int) -> list[Suggestion]:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xs = self._opt.ask(n_points=n) if n > 1 else [self._opt.ask()]
        return [Suggestion(self._codec.decode(self._internal(list(x))), list(x)) for x in xs[:n]]

    def adopt(self, params: Params) -> Handle:
        internal = self._codec.encode(params)
        return [internal[name] for name in self._names]

    def tell(self, handle: Handle, loss: float) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._opt.tell(handle, loss)

    def tell_failure(self, handle: Handle) -> None:
        return None  # skopt has no failed observations; the point is simply not modelled

    def discard(self, handle: Handle) -> None:
        return None

    def close(self) -> None:
        return None
