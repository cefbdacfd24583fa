"""Rung budgets of successive halving, shared by ASHA, SuccessiveHalving and Hyperband.

With minimum resource ``r``, reduction factor ``eta`` and minimum early-stopping rate ``s``, the
rungs sit at ``r * eta**(s + k)`` for ``k = 0, 1, ...`` below the maximum resource ``R``, and the
last stage trains to ``R`` itself (Li et al., "A System for Massively Parallel Hyperparameter
Tuning", MLSys 2020; Jamieson and Talwalkar, AISTATS 2016). Resources are counted in the steps the
payload reports (epochs, say).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RungLadder:
    min_resource: int
    max_resource: int
    reduction_factor: int = 3
    min_early_stopping_rate: int = 0

    def __post_init__(self) -> None:
        problems = ladder_problems(
            self.min_resource, self.max_resource, self.reduction_factor, self.min_early_stopping_rate
        )
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def judged(self) -> tuple[int, ...]:
        """The resources at which points are compared (all below the maximum)."""
        eta, out = self.reduction_factor, []
        resource = self.min_resource * eta**self.min_early_stopping_rate
        while resource < self.max_resource:
            out.append(resource)
            resource *= eta
        return tuple(out)

    @property
    def budgets(self) -> tuple[int, ...]:
        """Every stage's training budget: the judged rungs, then the maximum resource."""
        return (*self.judged, self.max_resource)


def ladder_problems(min_resource: object, max_resource: object, eta: object, rate: object) -> list[str]:
    """What is wrong with these options, each as a sentence that says how to fix it (empty when fine)."""
    problems = []
    for name, value, least in (
        ("min_resource", min_resource, 1),
        ("max_resource", max_resource, 1),
        ("reduction_factor", eta, 2),
        ("min_early_stopping_rate", rate, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{name} must be a whole number, got {value!r}")
        elif value < least:
            why = " (each rung keeps 1/reduction_factor of its points)" if name == "reduction_factor" else ""
            problems.append(f"{name} must be at least {least}{why}, got {value}")
    if problems:
        return problems
    assert isinstance(min_resource, int) and isinstance(max_resource, int)
    assert isinstance(eta, int) and isinstance(rate, int)
    if min_resource > max_resource:
        problems.append(f"min_resource ({min_resource}) is above max_resource ({max_resource}); swap them")
    elif min_resource * eta**rate > max_resource:
        problems.append(
            f"the first rung, min_resource * reduction_factor ** min_early_stopping_rate = "
            f"{min_resource * eta**rate}, is above max_resource ({max_resource}): lower min_early_stopping_rate"
        )
    return problems
