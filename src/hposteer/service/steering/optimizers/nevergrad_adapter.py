"""Any optimiser of nevergrad's registry (default NGOpt), with every method of the format.

Parameters: Choice (categories, by index), bounded Scalar (uniform; uniformint with integer
casting over [low - ½, high + ½] so both ends are as likely as the rest), Log (loguniform),
and for the normal family unbounded parameters whose prior is the JSON's distribution:
``Scalar(init=mu).set_mutation(sigma=sigma)`` draws mu + sigma·z, and
``Log(init=base**mu, exponent=base**sigma)`` draws (base**sigma) ** (mu/sigma + z) =
base ** (mu + sigma·z). Both need ``mutable_sigma=False``: nevergrad's default self-adapts
sigma, which widens a random draw about 2.6-fold.

Two traps handled here:

* Sequential wrappers (Cobyla, BOBYQA, scipy's methods, CmaFmin2...) run the wrapped library
  in a thread and block on a second ask until the first point is told. Our points come in
  batches, some fail and are never told, so they would hang the steering run: they are
  refused, and ``num_workers`` is at least 2, which keeps NGOpt from choosing them.
* Those threads are non-daemon and stop only when the optimiser is garbage-collected:
  ``close()`` drops it.
"""

from __future__ import annotations

import difflib
import gc
import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
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

log = logging.getLogger("hposteer.steering.nevergrad")

DEFAULT_METHOD = "NGOpt"
MIN_WORKERS = 2  # see the module docstring: keeps NGOpt away from sequential wrappers
PARALLEL_EXAMPLES = "NGOpt (the default), TwoPointsDE, CMA, DE, PSO, OnePlusOne or RandomSearch"


def unsupported(dim: Dimension) -> str | None:
    return None  # every method has a faithful nevergrad parameter


def method_problem(method: str) -> str | None:
    """Why ``method`` cannot run here (unknown, sequential, missing package), or None."""
    import nevergrad as ng

    registry = ng.optimizers.registry
    if method not in registry:
        same = [name for name in registry if name.lower() == method.lower()]
        close = same or difflib.get_close_matches(method, list(registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else " (see nevergrad.optimizers.registry)"
        return f"nevergrad has no optimizer {method!r}{hint}"
    if _is_sequential(registry[method]):
        return _sequential_message(method)
    # Build it as the steering run will; chains of a sequential wrapper only fail here.
    probe = ng.p.Dict(x=ng.p.Scalar(lower=0, upper=1), y=ng.p.Scalar(lower=0, upper=1))
    try:
        optimizer = registry[method](parametrization=probe, budget=10, num_workers=MIN_WORKERS)
    except ImportError as exc:
        return f"nevergrad's {method!r} needs a package that is not installed here ({exc})"
    except ValueError as exc:
        if "parallel" in str(exc):
            return _sequential_message(method)
        return f"nevergrad's {method!r} cannot be built: {exc}"
    except Exception as exc:
        return f"nevergrad's {method!r} cannot be built: {type(exc).__name__}: {exc}"
    del optimizer
    return None


def _is_sequential(entry: Any) -> bool:
    """True for a registry entry whose class declares it cannot run in parallel.

    Checked on the class, since building such an optimiser with num_workers > 1 fails half-way
    and its destructor then reports an AttributeError on stderr.
    """
    cls = entry if isinstance(entry, type) else getattr(entry, "_OptimizerClass", None)
    return bool(getattr(cls, "no_parallelization", False))


def _sequential_message(method: str) -> str:
    return (
        f"nevergrad's {method!r} is a sequential wrapper: each point must be told before the next "
        "is asked, so batches, parallel evaluations, failed points and restarts would block it; "
        f"choose {PARALLEL_EXAMPLES}"
    )


def _parameter(dim: Dimension) -> Any:
    import nevergrad as ng

    if isinstance(dim, Categorical):
        return ng.p.Choice(list(range(len(dim.categories))))
    if isinstance(dim, UniformInt):
        # Rounding [low - ½, high + ½] gives every integer the same share (the ends included).
        return ng.p.Scalar(lower=dim.low - 0.499999, upper=dim.high + 0.499999).set_integer_casting()
    if isinstance(dim, Uniform):
        return ng.p.Scalar(lower=dim.low, upper=dim.high)
    if isinstance(dim, LogUniform):
        return ng.p.Log(lower=dim.low, upper=dim.high)
    if isinstance(dim, Normal):
        return ng.p.Scalar(init=dim.mu, mutable_sigma=False).set_mutation(sigma=dim.sigma)
    if isinstance(dim, LogNormal):
        return ng.p.Log(init=dim.base**dim.mu, exponent=dim.base**dim.sigma, mutable_sigma=False)
    raise AssertionError(f"unsupported dimension reached the nevergrad adapter: {dim}")


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the numerical RuntimeWarnings (overflow, invalid value) of the line searches some
    nevergrad optimisers run through scipy: they are the optimiser's business, and nevergrad's
    own catch_warnings blocks reset the "once per location" registry, so they would flood logs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


class NevergradOptimizer:
    def __init__(self, codec: SpaceCodec, *, method: str, seed: int, budget: int, parallelism: int):
        import nevergrad as ng
        import numpy as np

        self._codec = codec
        self._not_told = ng.errors.TellNotAskedNotSupportedError
        parametrization = ng.p.Dict(**{d.name: _parameter(d) for d in codec.searched})
        parametrization.random_state = np.random.RandomState(seed)
        self._opt: Any = ng.optimizers.registry[method](
            parametrization=parametrization,
            budget=max(budget, 1),
            num_workers=max(parallelism, MIN_WORKERS),
        )
        self.untold_adopted = 0  # adopted results the optimiser could not take (see tell)

    @property
    def optimizer(self) -> Any:
        """The nevergrad optimiser (for diagnostics and tests); None once closed."""
        return self._opt

    def ask(self, n: int) -> list[Suggestion]:
        out = []
        with _quiet():
            for _ in range(n):
                candidate = self._opt.ask()
                out.append(Suggestion(self._codec.decode(dict(candidate.value)), candidate))
        return out

    def adopt(self, params: Params) -> Handle:
        return self._opt.parametrization.spawn_child(new_value=self._codec.encode(params))

    def tell(self, handle: Handle, loss: float) -> None:
        try:
            with _quiet():
                self._opt.tell(handle, loss if math.isfinite(loss) else 1e300)
        except self._not_told:
            # A few optimisers (EDA/EMNA family) learn only from points they asked for: after a
            # restart they start afresh rather than fail the steering run.
            self.untold_adopted += 1
            log.debug("nevergrad %s cannot take a point it did not ask for", type(self._opt).__name__)

    def tell_failure(self, handle: Handle) -> None:
        return None  # nevergrad has no notion of a failed point; inventing a loss would mislead it

    def discard(self, handle: Handle) -> None:
        return None

    def close(self) -> None:
        # Some nevergrad optimisers run a non-daemon thread that only stops when the optimiser
        # is garbage-collected: drop it now, so that the process can exit.
        self._opt = None
        gc.collect()
