"""--architecture parsing (PanDA's strings and JSON dict) and matching against slot offers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hposteer.core.requirements import RequirementsError, parse_architecture
from hposteer.service.core.offers import describe, describe_offer, explain, gpu_uarch, satisfies

CPU_AVX2 = {"cpu": {"arch": "x86_64", "vendor": "intel", "flags": ["sse4_2", "avx", "avx2", "fma"]}, "gpus": []}
CPU_AVX512 = {"cpu": {"arch": "x86_64", "vendor": "amd", "flags": ["avx2", "avx512f", "avx512bw"]}, "gpus": []}
ARM = {"cpu": {"arch": "aarch64", "flags": ["asimd"]}, "gpus": []}
A100 = {
    "cpu": CPU_AVX2["cpu"],
    "gpus": [
        {"index": "0", "vendor": "nvidia", "model": "NVIDIA A100-SXM4-40GB", "memory_mb": 40960,
         "driver_version": "575.51.03", "cuda_version": "12.9"},
    ],
}  # fmt: skip
P100 = {"vendor": "nvidia", "model": "Tesla P100-PCIE-16GB", "memory_mb": 16280}
TWO_P100 = {"cpu": CPU_AVX2["cpu"], "gpus": [{"index": str(i), **P100} for i in (0, 1)]}
MI250 = {
    "cpu": CPU_AVX2["cpu"],
    "gpus": [{"index": "0", "vendor": "amd", "model": "AMD Instinct MI250X", "memory_mb": 65536}],
}
UNKNOWN_GPU = {"cpu": CPU_AVX2["cpu"], "gpus": [{"index": "0"}]}  # a --workers slot without details
OFFERS: dict[str, dict[str, Any]] = {
    "cpu_avx2": CPU_AVX2,
    "cpu_avx512": CPU_AVX512,
    "arm": ARM,
    "a100": A100,
    "2xp100": TWO_P100,
    "mi250": MI250,
    "unknown_gpu": UNKNOWN_GPU,
}


@pytest.mark.parametrize("text", ["", "   ", "@el9", "x86_64-el9-gcc13-opt@el9#*"])
def test_no_hardware_requirement_is_none(text: str) -> None:
    assert parse_architecture(text) in (None, {"platform": "x86_64-el9-gcc13-opt@el9", "cpu": {"arch": "x86_64"}})


@pytest.mark.parametrize(
    ("text", "who"),
    [
        ("#x86_64-*-avx2&nvidia", {"a100", "2xp100"}),
        ("#x86_64", {"cpu_avx2", "cpu_avx512", "a100", "2xp100", "mi250", "unknown_gpu"}),
        ("#aarch64", {"arm"}),
        ("#*-amd", {"cpu_avx512"}),
        ("#x86_64-*-avx512", {"cpu_avx512"}),
        ("#x86_64-*-x86-64-v3", set()),  # nobody declares all of v3's flags (bmi1, movbe, ...)
        ("#&nvidia", {"a100", "2xp100"}),
        ("#&amd", {"mi250"}),
        ("&gpu", {"a100", "2xp100", "mi250", "unknown_gpu"}),  # any GPU, even one without details
        ("nvidia-gpu", {"a100", "2xp100"}),  # hpogrid's form
        ("#&nvidia-A100", {"a100"}),
        ("#&nvidia:vram>=40960", {"a100"}),
        ("#&nvidia:vram>=40GB:driver>=575.0:model=.*A100.*", {"a100"}),
        ("#&nvidia:model!=.*P100.*", {"a100"}),
        ("#&nvidia:cuda>=12.4", {"a100"}),  # the P100s do not declare a CUDA version
        ("#&*:uarch=Pascal", {"2xp100"}),
        ("#&nvidia:count>=2", {"2xp100"}),
        ("x86_64-el9-gcc13-opt#&nvidia", {"a100", "2xp100"}),
        ('{"model": ".*A100.*"}', {"a100"}),
        ('{"model": {"pattern": ".*P100.*", "excl": true}}', {"a100", "mi250"}),
        ('{"vram": ">=16000"}', {"a100", "2xp100", "mi250"}),
        ('{"vram": "==40960"}', {"a100"}),
        ('{"version": ">=12.0"}', {"a100"}),
        ('{"driver_version": "==575.51.03"}', {"a100"}),
        ('{"microarchitecture": ["Ampere", "Hopper"]}', {"a100"}),
        ('{"count": 2, "vendor": "nvidia"}', {"2xp100"}),
        ('{"cpu": "x86_64-*-avx512", "model": "MI250"}', set()),
        ('{"cpu": "x86_64", "gpu": "amd"}', {"mi250"}),
    ],
)
def test_who_satisfies_what(text: str, who: set[str]) -> None:
    requirements = parse_architecture(text)
    assert requirements is not None
    assert json.loads(json.dumps(requirements)) == requirements  # stored as JSON
    matched = {name for name, offer in OFFERS.items() if satisfies(requirements, offer)}
    assert matched == who, describe(requirements)
    for name, offer in OFFERS.items():
        assert (explain(requirements, offer) == "") == (name in who)


def test_explanations_say_what_is_missing() -> None:
    gpu = parse_architecture("#x86_64-*-avx2&nvidia:vram>=40960")
    assert explain(gpu, CPU_AVX2) == "needs 1 nvidia GPU (memory >= 40960 MB), the slot has no GPU"
    assert "Tesla P100-PCIE-16GB 16280 MB" in explain(gpu, TWO_P100)
    assert "GPU memory >= 40960 MB" in explain(gpu, TWO_P100)
    assert explain(parse_architecture("#x86_64-*-avx512"), CPU_AVX2) == (
        "needs CPU flags avx512f (avx512), the slot lacks them"
    )
    assert explain(parse_architecture("#aarch64"), CPU_AVX2) == "needs a aarch64 CPU, the slot has x86_64"
    assert describe_offer(TWO_P100) == "x86_64, 2x Tesla P100-PCIE-16GB 16280 MB"
    assert describe_offer(CPU_AVX2) == "x86_64, no GPU"
    assert satisfies(None, CPU_AVX2) and explain(None, {}) == ""


def test_gpu_microarchitecture_from_the_model_name() -> None:
    assert gpu_uarch("NVIDIA A100-SXM4-40GB") == "Ampere"
    assert gpu_uarch("NVIDIA H100 80GB HBM3") == "Hopper"
    assert gpu_uarch("Tesla V100-SXM2-32GB") == "Volta"
    assert gpu_uarch("NVIDIA GeForce RTX 4090") == "Ada"
    assert gpu_uarch("Tesla T4") == "Turing"
    assert gpu_uarch("mystery card") is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("#sparc64", "unknown CPU architecture 'sparc64'"),
        ("#&matrox", "unknown GPU vendor 'matrox'"),
        ("#&nvidia:vram>=lots", "vram must be a whole number"),
        ("#&nvidia:colour=green", "unknown GPU key 'colour'"),
        ("#&nvidia:vram", "must be KEY OP VALUE"),
        ("#&nvidia:model=(", "is not a regular expression"),
        ("#&nvidia:cuda>=twelve", "cuda must be a version"),
        ("#x86_64-*-avx 2", "instruction set 'avx 2'"),
        ("power9", "neither a CPU architecture"),
        ("{", "not valid JSON"),
        ('["x86_64"]', "neither a CPU architecture"),
        ("[1]", "neither a CPU architecture"),
        ('{"ram": 4}', "unknown key(s) 'ram'"),
        ('{"vram": true}', "vram must be"),
        ('{"model": 3}', "model must be a regular expression"),
        ('{"microarchitecture": []}', "needs at least one name"),
        ("#x86_64" + "-" * 600, "longer than 512"),
    ],
)
def test_junk_is_refused_with_the_accepted_forms(text: str, fragment: str) -> None:
    with pytest.raises(RequirementsError) as info:
        parse_architecture(text)
    message = str(info.value)
    assert fragment in message
    assert "accepted forms" in message and "#x86_64-*-avx2&nvidia" in message
    assert isinstance(info.value, ValueError)


_PIECES = st.sampled_from(["#", "&", "@", "-", ":", "*", "x86_64", "aarch64", "avx2", "avx512", "nvidia", "amd",
                           "gpu", "vram", ">=", "=", "!=", "model", ".*A100.*", "40960", "cuda", "12.4", "{", "}",
                           '"', ",", "uarch", "Ampere", "count", "2", " "])  # fmt: skip


def _check(text: str) -> None:
    try:
        requirements = parse_architecture(text)
    except RequirementsError as exc:
        message = str(exc)
        assert "accepted forms" in message
        return
    if requirements is not None:
        assert json.loads(json.dumps(requirements)) == requirements
    for offer in OFFERS.values():
        assert satisfies(requirements, offer) == (explain(requirements, offer) == "")
    describe(requirements)


@given(st.text(max_size=80))
def test_any_text_parses_or_gives_a_typed_error(text: str) -> None:
    _check(text)


@given(st.lists(_PIECES, max_size=12).map("".join))
def test_near_miss_strings_parse_or_give_a_typed_error(text: str) -> None:
    _check(text)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=12),
    _containers,
    max_leaves=8,
)
_KEYS = st.sampled_from(["model", "vram", "version", "driver_version", "microarchitecture", "count", "vendor", "cpu",
                         "gpu", "sw_platform", "excl", "pattern"])  # fmt: skip


@given(st.dictionaries(_KEYS, _JSON_VALUES, max_size=4))
def test_any_json_dict_parses_or_gives_a_typed_error(data: dict[str, Any]) -> None:
    _check(json.dumps(data))
