"""Slot specifications, Clara style: ``--workers 0,1:2,3`` is two slots, GPUs 0,1 and GPUs 2,3."""

from __future__ import annotations

from dataclasses import dataclass


class SlotSpecError(ValueError):
    """The slot specification cannot be used; the message says why and how to write it."""


@dataclass(frozen=True)
class Slot:
    name: str
    gpus: tuple[str, ...]

    @property
    def cuda_visible_devices(self) -> str:
        return ",".join(self.gpus)


def parse_workers(spec: str) -> list[Slot]:
    """``0:1`` -> slots "0" (GPU 0) and "1" (GPU 1); ``0,1:2,3`` -> two slots of two GPUs."""
    if not spec.strip():
        raise SlotSpecError("--workers is empty; write e.g. --workers 0:1 (two slots, GPU 0 and GPU 1)")
    slots: list[Slot] = []
    owner: dict[str, int] = {}
    for index, group in enumerate(spec.split(":")):
        ids = [g.strip() for g in group.split(",")]
        if not group.strip() or any(not i for i in ids):
            raise SlotSpecError(
                f"--workers {spec!r}: slot {index} has an empty GPU list; separate slots with ':' and the "
                "GPUs of one slot with ',' (e.g. 0,1:2,3)"
            )
        for gpu in ids:
            if not gpu.isdigit():
                raise SlotSpecError(f"--workers {spec!r}: GPU id {gpu!r} of slot {index} is not a non-negative integer")
            if gpu in owner:
                raise SlotSpecError(
                    f"--workers {spec!r}: GPU {gpu} is given to slot {owner[gpu]} and slot {index}; "
                    "a GPU belongs to one slot"
                )
            owner[gpu] = index
        slots.append(Slot(str(index), tuple(ids)))
    return slots


def cpu_slots(count: int) -> list[Slot]:
    if count < 1:
        raise SlotSpecError(f"--slots must be 1 or more, got {count}")
    return [Slot(str(i), ()) for i in range(count)]
