"""Builtin optimisers behind one ask-and-tell protocol, and the runners that drive them.

What the rest of the service uses:

* ``validate(spec, space)`` -> list of ``SpaceIssue`` (empty: the optimiser will run);
* ``create(spec, space, seed=, budget=, parallelism=)`` -> an ``AskTell`` adapter;
* ``WarmRunner`` (one optimiser kept per segment, told only what is new) and
  ``StatelessSteering`` / ``generate`` (the core ``Steering`` protocol, rebuilt per call).
"""

from hposteer.service.steering.optimizers.base import AskTell, Suggestion
from hposteer.service.steering.optimizers.registry import LIBRARIES, create, honoured_by, validate
from hposteer.service.steering.optimizers.warm import StatelessSteering, WarmRunner, generate

__all__ = [
    "LIBRARIES",
    "AskTell",
    "StatelessSteering",
    "Suggestion",
    "WarmRunner",
    "create",
    "generate",
    "honoured_by",
    "validate",
]
