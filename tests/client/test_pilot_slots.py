"""Slot specifications: Clara-style --workers and CPU-only --slots."""

from __future__ import annotations

import pytest

from hposteer.client.pilot.slots import Slot, SlotSpecError, cpu_slots, parse_workers, slots_from_options


def test_clara_style_slot_specs() -> None:
    assert parse_workers("0:1") == [Slot("0", ("0",)), Slot("1", ("1",))]
    assert parse_workers("0,1:2,3") == [Slot("0", ("0", "1")), Slot("1", ("2", "3"))]
    assert parse_workers("3") == [Slot("0", ("3",))]
    assert parse_workers(" 4 , 5 ")[0].cuda_visible_devices == "4,5"
    assert parse_workers("07:1")[0].gpus == ("7",)


def test_cpu_only_slots_have_no_gpus() -> None:
    assert cpu_slots(2) == [Slot("0", ()), Slot("1", ())]
    assert cpu_slots(1)[0].cuda_visible_devices == ""


def test_options_choose_between_workers_and_slots() -> None:
    assert slots_from_options(None, None) == [Slot("0", ())]
    assert slots_from_options(None, 3) == cpu_slots(3)
    assert slots_from_options("0:1", None) == parse_workers("0:1")
    with pytest.raises(SlotSpecError, match=r"either --workers .* or --slots"):
        slots_from_options("0", 2)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "--workers is empty"),
        ("  ", "--workers is empty"),
        ("0::1", "slot 1 has an empty GPU list"),
        ("0:", "slot 1 has an empty GPU list"),
        (":0", "slot 0 has an empty GPU list"),
        ("0,:1", "slot 0 has an empty GPU list"),
        ("a:1", "GPU id 'a' of slot 0 is not a non-negative integer"),
        ("0:1.5", "GPU id '1.5' of slot 1"),
        ("0:-1", "GPU id '-1' of slot 1"),
        ("0:GPU-3f2a", "GPU id 'GPU-3f2a'"),
        ("0:²", "GPU id '²'"),
        ("0,1:1,2", "GPU 1 appears in slot 0 and slot 1; a GPU belongs to one slot"),
        ("0:00", "GPU 0 appears in slot 0 and slot 1"),
        ("2,2", "GPU 2 appears twice in slot 0"),
        (":".join(str(i) for i in range(1025)), "1025 slots; at most 1024"),
    ],
)
def test_bad_slot_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(SlotSpecError, match=message):
        parse_workers(spec)


@pytest.mark.parametrize("count", [0, -1, 1025])
def test_bad_slot_counts(count: int) -> None:
    with pytest.raises(SlotSpecError, match=f"between 1 and 1024, got {count}"):
        cpu_slots(count)
