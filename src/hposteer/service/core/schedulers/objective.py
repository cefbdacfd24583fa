"""The metric a scheduler ranks points by, and which way is better."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Direction = Literal["min", "max"]
DIRECTIONS: tuple[Direction, ...] = ("min", "max")


@dataclass(frozen=True)
class Objective:
    """``metric`` names a reported value (``loss`` or any other); ``direction`` says which way is better."""

    metric: str = "loss"
    direction: Direction = "min"

    def cost(self, value: float) -> float:
        """The value turned so that lower is always better (every scheduler compares costs)."""
        return value if self.direction == "min" else -value

    def reached(self, value: float, target: float) -> bool:
        """Whether ``value`` is at least as good as ``target``."""
        return value <= target if self.direction == "min" else value >= target


def parse_objective(metric: object, direction: object, where: str) -> Objective:
    """An :class:`Objective` from user options, or ``ValueError`` saying which option is wrong and how to fix it."""
    if not isinstance(metric, str) or not metric.strip():
        raise ValueError(f"{where}: metric must be the name of a reported value such as 'loss', got {metric!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"{where}: direction must be 'min' or 'max', got {direction!r}")
    return Objective(metric.strip(), direction)


def finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))
