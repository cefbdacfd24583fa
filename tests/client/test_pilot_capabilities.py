"""What a pilot declares: CPU from /proc/cpuinfo, GPUs from nvidia-smi (output injected), admin overrides."""

from __future__ import annotations

import argparse
import platform
from collections.abc import Sequence

import pytest

from hposteer.client.pilot.capabilities import (
    NVIDIA_SMI,
    CapabilityError,
    Cpu,
    Gpu,
    Overrides,
    Runner,
    describe,
    detect_cpu,
    detect_gpus,
    detect_host,
    infer_gpu_vendor,
    parse_cpuinfo,
    parse_memory_mb,
    parse_nvidia_smi,
)
from hposteer.client.pilot.command import _overrides, add_arguments
from hposteer.client.pilot.slots import cpu_slots, parse_workers

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz
flags\t\t: fpu vme sse4_2 avx avx2 fma avx512f avx512bw

processor\t: 1
vendor_id\t: GenuineIntel
flags\t\t: fpu vme sse4_2 avx avx2 fma avx512f avx512bw
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics
CPU implementer\t: 0x41
"""
SMI = """0, NVIDIA A100-SXM4-40GB, 40960, 575.51.03
1, NVIDIA A100-SXM4-40GB, 40960, 575.51.03
2, Tesla V100-SXM2-32GB, 32768, 575.51.03
"""


def fake_run(output: str | None) -> tuple[list[Sequence[str]], Runner]:
    calls: list[Sequence[str]] = []

    def run(command: Sequence[str]) -> str | None:
        calls.append(command)
        return output

    return calls, run


def test_cpu_from_cpuinfo_and_machine() -> None:
    flags = ("avx", "avx2", "avx512bw", "avx512f", "fma", "fpu", "sse4_2", "vme")
    assert parse_cpuinfo(X86_CPUINFO) == ("intel", flags)
    assert parse_cpuinfo(ARM_CPUINFO)[0] == "arm"
    assert "asimd" in parse_cpuinfo(ARM_CPUINFO)[1]
    assert detect_cpu("arm64", ARM_CPUINFO).arch == "aarch64"
    assert detect_cpu("AMD64", "").arch == "x86_64"
    assert parse_cpuinfo("garbage\n: :\nflags: AVX2 ok_flag") == (None, ("ok_flag",))


def test_this_host_is_detected_without_gpus() -> None:
    cpu = detect_cpu()
    assert cpu.arch == platform.machine().lower().replace("amd64", "x86_64")
    host = detect_host(cpu_slots(2))  # CPU-only slots: nvidia-smi is not even tried
    assert host.gpus == {} and host.network is False
    assert host.registration(cpu_slots(2))["slots"] == [
        {"name": "0", "gpus": [], "gpu_info": []},
        {"name": "1", "gpus": [], "gpu_info": []},
    ]


def test_gpus_from_nvidia_smi_output() -> None:
    calls, run = fake_run(SMI)
    gpus = detect_gpus(run)
    assert calls == [NVIDIA_SMI]
    assert gpus["0"] == Gpu("0", "nvidia", "NVIDIA A100-SXM4-40GB", 40960, "575.51.03")
    assert gpus["2"].model == "Tesla V100-SXM2-32GB" and gpus["2"].memory_mb == 32768
    assert parse_nvidia_smi("0, NVIDIA T4, [N/A]\nNo devices were found\n") == {"0": Gpu("0", "nvidia", "NVIDIA T4")}
    _, missing = fake_run(None)  # no nvidia-smi on this host
    assert detect_gpus(missing) == {}


def test_slots_declare_their_own_gpus() -> None:
    slots = parse_workers("0,1:2")
    _, run = fake_run(SMI)
    host = detect_host(slots, run=run, machine="x86_64", cpuinfo=X86_CPUINFO)
    body = host.registration(slots)
    assert [len(s["gpu_info"]) for s in body["slots"]] == [2, 1]
    assert body["slots"][1]["gpu_info"] == [
        {"index": "2", "vendor": "nvidia", "model": "Tesla V100-SXM2-32GB", "memory_mb": 32768,
         "driver_version": "575.51.03"}
    ]  # fmt: skip
    assert body["capabilities"]["cpu"]["arch"] == "x86_64"
    assert body["capabilities"]["cpu"]["vendor"] == "intel"
    assert "avx512f" in body["capabilities"]["cpu"]["flags"]
    assert "0=NVIDIA A100-SXM4-40GB 40960 MB" in describe(host, slots)


def test_overrides_complete_what_detection_cannot_see() -> None:
    slots = parse_workers("0:1")
    _, run = fake_run(None)  # GPUs given with --workers but no nvidia-smi here
    bare = detect_host(slots, run=run, machine="x86_64", cpuinfo="")
    assert bare.registration(slots)["slots"][0]["gpu_info"] == [{"index": "0"}]
    overrides = Overrides(gpu_model="NVIDIA H100 80GB HBM3", gpu_memory_mb=81559, gpu_cuda="12.4",
                          cpu_flags=("avx2",), allow_network=True)  # fmt: skip
    host = detect_host(slots, overrides, run=run, machine="x86_64", cpuinfo="")
    body = host.registration(slots)
    assert body["slots"][1]["gpu_info"] == [
        {"index": "1", "vendor": "nvidia", "model": "NVIDIA H100 80GB HBM3", "memory_mb": 81559, "cuda_version": "12.4"}
    ]
    assert body["capabilities"] == {"cpu": {"arch": "x86_64", "flags": ["avx2"]}, "network": True}
    assert host.cpu == Cpu("x86_64", None, ("avx2",))


def test_command_line_overrides() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--workers", "0", "--gpu-model", "AMD Instinct MI250X", "--gpu-memory", "64GB", "--cpu-flags", "AVX2, fma",
         "--allow-network"]
    )  # fmt: skip
    overrides = _overrides(args)
    assert overrides == Overrides(None, "AMD Instinct MI250X", 65536, None, ("avx2", "fma"), True)
    _, run = fake_run(None)
    host = detect_host(parse_workers("0"), overrides, run=run, cpuinfo="")
    assert host.gpus["0"].vendor == "amd"  # inferred from the model name
    assert _overrides(parser.parse_args([])) == Overrides()


def test_bad_overrides_are_refused_with_a_reason() -> None:
    with pytest.raises(CapabilityError, match="40GB"):
        parse_memory_mb("forty")
    with pytest.raises(CapabilityError, match="--gpu-cuda"):
        detect_host(cpu_slots(1), Overrides(gpu_cuda="twelve"))
    with pytest.raises(CapabilityError, match="--gpu-vendor"):
        detect_host(cpu_slots(1), Overrides(gpu_vendor="3dfx"))
    with pytest.raises(CapabilityError, match="--cpu-flags"):
        detect_host(cpu_slots(1), Overrides(cpu_flags=("AVX 2",)))
    assert parse_memory_mb("40960") == 40960 and parse_memory_mb("80G") == 81920
    assert infer_gpu_vendor("Tesla T4") == "nvidia" and infer_gpu_vendor("Radeon Pro") == "amd"
    assert infer_gpu_vendor("mystery") is None
