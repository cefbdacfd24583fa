"""The segment runner the steering loop uses: builtin optimisers kept warm in this process."""

from __future__ import annotations

from hposteer.service.steering.optimizers.warm import WarmRunner


def make_segment_runner() -> WarmRunner:
    return WarmRunner()
