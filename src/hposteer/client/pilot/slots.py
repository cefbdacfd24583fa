"""Slot specifications, Clara style: ``--workers 0,1:2,3`` is two slots, GPUs 0,1 and GPUs 2,3.

Slots are separated by ``:``, the GPU ids of one slot by ``,``; ``--slots N`` gives N
CPU-only slots instead. Each slot evaluates one point at a time and exports its GPU ids to
the payload as ``CUDA_VISIBLE_DEVICES`` (empty for a CPU-only slot). Slots are named by
their position: "0", "1", ...
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_SLOTS = 1024  # what the service accepts in one registration


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
    groups = spec.split(":")
    if len(groups) > MAX_SLOTS:
        raise SlotSpecError(f"--workers {spec!r} gives {len(groups)} slots; at most {MAX_SLOTS}")
    slots: list[Slot] = []
    owner: dict[str, int] = {}
    for index, group in enumerate(groups):
        ids = [g.strip() for g in group.split(",")]
        if not group.strip() or any(not i for i in ids):
            raise SlotSpecError(
                f"--workers {spec!r}: slot {index} has an empty GPU list; separate slots with ':' and the "
                "GPUs of one slot with ',' (e.g. 0,1:2,3)"
            )
        gpus: list[str] = []
        for text in ids:
            if not (text.isascii() and text.isdigit()):
                raise SlotSpecError(
                    f"--workers {spec!r}: GPU id {text!r} of slot {index} is not a non-negative integer"
                )
            gpu = str(int(text))
            if gpu in owner:
                where = f"twice in slot {index}" if owner[gpu] == index else f"in slot {owner[gpu]} and slot {index}"
                raise SlotSpecError(f"--workers {spec!r}: GPU {gpu} appears {where}; a GPU belongs to one slot")
            owner[gpu] = index
            gpus.append(gpu)
        slots.append(Slot(str(index), tuple(gpus)))
    return slots


def cpu_slots(count: int) -> list[Slot]:
    """``--slots N``: N slots without GPUs."""
    if not 1 <= count <= MAX_SLOTS:
        raise SlotSpecError(f"--slots must be between 1 and {MAX_SLOTS}, got {count}")
    return [Slot(str(i), ()) for i in range(count)]


def slots_from_options(workers: str | None, slots: int | None) -> list[Slot]:
    """The slots of ``--workers`` or ``--slots`` (one CPU-only slot when neither is given)."""
    if workers is not None and slots is not None:
        raise SlotSpecError("give either --workers (GPU slots) or --slots (CPU-only slots), not both")
    if workers is not None:
        return parse_workers(workers)
    return cpu_slots(1 if slots is None else slots)
