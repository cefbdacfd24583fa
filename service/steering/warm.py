"""The warm in-process runner: one optimiser per segment, told only what is new.

Each call receives the segment's full history (the stateless steering protocol). The runner
keeps the optimiser it built for the segment and diffs the history against what that
optimiser already knows: points it proposed are matched to their stored ids, points it never
saw (a replay after a restart) are adopted, and only results that appeared since the last
call are told. After a restart the optimiser is rebuilt from the history in one pass.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from service.core.optimizer_spec import OptimizerSpec
from service.core.searchspace import Params, SearchSpace, canonical
from service.core.steering import Observation
from service.steering import registry
from service.steering.base import AskTell, Handle


@dataclass
class _Known:
    handle: Handle
    params: Params
    told: bool = False


@dataclass
class _Segment:
    fingerprint: str
    optimizer: AskTell
    known: dict[int, _Known] = field(default_factory=dict)
    outstanding: dict[str, deque[Handle]] = field(default_factory=lambda: defaultdict(deque))
    tells: int = 0  # results told so far (for tests and diagnostics)
    adopted: int = 0


class WarmRunner:
    """Implements the steering loop's SegmentRunner: ``run`` per segment key, ``retain``, ``close``."""

    name = "in-process"

    def __init__(self, *, failures_as_losses: bool = False):
        self.failures_as_losses = failures_as_losses
        self._segments: dict[int, _Segment] = {}
        self._busy: set[int] = set()
        self._lock = threading.Lock()

    def run(
        self,
        *,
        key: int,
        spec: OptimizerSpec,
        space: SearchSpace,
        history: Sequence[Observation],
        n: int,
        seed: int,
        budget: int,
        parallelism: int,
    ) -> list[Params]:
        fingerprint = canonical([spec.name, spec.mode, space.to_json(), seed, budget, parallelism])
        with self._lock:
            state = self._segments.get(key)
            self._busy.add(key)
        try:
            if state is None or state.fingerprint != fingerprint or not self._consistent(state, history):
                if state is not None:
                    state.optimizer.close()
                state = _Segment(
                    fingerprint,
                    registry.create(spec, space, seed=seed, budget=budget, parallelism=parallelism),
                )
                with self._lock:
                    self._segments[key] = state
            self._catch_up(state, space, history, -1.0 if spec.mode == "max" else 1.0)
            suggestions = state.optimizer.ask(n) if n > 0 else []
            for suggestion in suggestions:
                state.outstanding[space.point_key(suggestion.params)].append(suggestion.handle)
            return [s.params for s in suggestions]
        finally:
            with self._lock:
                self._busy.discard(key)

    @staticmethod
    def _consistent(state: _Segment, history: Sequence[Observation]) -> bool:
        """Every point the optimiser knows is still in the history with the same values.

        Plain dict equality: canonical JSON keys for a thousand points cost more than the ask.
        """
        by_id = {obs.point_id: obs.params for obs in history}
        return all(by_id.get(point_id) == known.params for point_id, known in state.known.items())

    def _catch_up(self, state: _Segment, space: SearchSpace, history: Sequence[Observation], sign: float) -> None:
        for obs in history:
            known = state.known.get(obs.point_id)
            if known is None:
                queue = state.outstanding.get(space.point_key(obs.params))
                if queue:
                    handle = queue.popleft()
                else:
                    handle = state.optimizer.adopt(obs.params)
                    state.adopted += 1
                known = state.known[obs.point_id] = _Known(handle, obs.params)
            if known.told or (obs.loss is None and not obs.failed):
                continue
            if obs.failed and not self.failures_as_losses:
                state.optimizer.tell_failure(known.handle)
            else:
                assert obs.loss is not None
                state.optimizer.tell(known.handle, sign * obs.loss)
            known.told = True
            state.tells += 1
        # Suggestions of the previous run that were never stored (the run lost a race).
        for handles in state.outstanding.values():
            for handle in handles:
                state.optimizer.discard(handle)
        state.outstanding.clear()

    def retain(self, keys: set[int]) -> None:
        with self._lock:
            gone = [k for k in self._segments if k not in keys and k not in self._busy]
            dropped = [self._segments.pop(k) for k in gone]
        for state in dropped:
            state.optimizer.close()

    def close(self) -> None:
        with self._lock:
            states = list(self._segments.values())
            self._segments.clear()
        for state in states:
            state.optimizer.close()

    def stats(self, key: int) -> tuple[int, int] | None:
        """(results told, points adopted) for a segment, or None if it has no optimiser."""
        with self._lock:
            state = self._segments.get(key)
        return None if state is None else (state.tells, state.adopted)


def generate(
    spec: OptimizerSpec,
    space: SearchSpace,
    history: Sequence[Observation],
    n: int,
    seed: int,
    *,
    budget: int,
    parallelism: int = 1,
) -> list[Params]:
    """The stateless protocol: build, replay the history, ask, close (no cache)."""
    runner = WarmRunner()
    try:
        return runner.run(
            key=0,
            spec=spec,
            space=space,
            history=history,
            n=n,
            seed=seed,
            budget=budget,
            parallelism=parallelism,
        )
    finally:
        runner.close()
