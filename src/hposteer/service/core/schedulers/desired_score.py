"""Clara AutoML's desired score: the task finishes once a point reaches a target value.

Points still running are stopped (they end stopped, not failed) and no more are generated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hposteer.service.core.schedulers.objective import Objective


@dataclass(frozen=True)
class DesiredScore:
    target: float
    objective: Objective = field(default_factory=Objective)

    def __post_init__(self) -> None:
        if isinstance(self.target, bool) or not isinstance(self.target, int | float) or not math.isfinite(self.target):
            raise ValueError(f"desired score: target must be a finite number, got {self.target!r}")

    def reached(self, value: float) -> bool:
        return math.isfinite(value) and self.objective.reached(value, self.target)
