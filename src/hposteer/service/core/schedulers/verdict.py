"""What a scheduler says about a running point after one of its reports."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    CONTINUE = "continue"  # keep training
    STOP = "stop"  # prune: the point ends in the `pruned` state with what it reported
    PAUSE = "pause"  # SuccessiveHalving: stop at the rung's budget, keep the checkpoint, wait for promotion


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str = ""

    @property
    def stops(self) -> bool:
        return self.action is not Action.CONTINUE


CONTINUE = Verdict(Action.CONTINUE)
