"""What a pilot declares at registration: its CPU, each slot's GPUs, and whether payloads may use the network.

Detected on the pilot host: the CPU architecture (``platform.machine()``), vendor and flags
(``/proc/cpuinfo``), and the GPUs (``nvidia-smi --query-gpu=...``, when the command exists).
The site admin can override or complete what detection finds (``--gpu-model``, ``--gpu-memory``,
``--gpu-vendor``, ``--gpu-cuda``, ``--cpu-flags``, ``--allow-network``). The service matches
tasks' ``--architecture`` against this (docs/pilot.md, "Brokerage").
"""

from __future__ import annotations

import platform
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypedDict, cast

from hposteer.client.pilot.slots import Slot
from hposteer.client.wire import CapabilitiesDeclaration, CpuDeclaration, GpuInfo, SlotDeclaration

NVIDIA_SMI = (
    "nvidia-smi",
    "--query-gpu=index,name,memory.total,driver_version",
    "--format=csv,noheader,nounits",
)
MAX_FLAGS = 512

_ARCH = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "i386": "i686"}
_CPU_VENDOR = {"genuineintel": "intel", "authenticamd": "amd", "hygongenuine": "hygon", "0x41": "arm"}


class Declaration(TypedDict):
    """The ``slots`` and ``capabilities`` fields of a registration (client/wire.py, PilotRegistration)."""

    slots: list[SlotDeclaration]
    capabilities: CapabilitiesDeclaration


class CapabilityError(ValueError):
    """A capability override cannot be used; the message says why."""


@dataclass(frozen=True)
class Gpu:
    index: str
    vendor: str | None = None
    model: str | None = None
    memory_mb: int | None = None
    driver_version: str | None = None
    cuda_version: str | None = None

    def to_json(self) -> GpuInfo:
        return cast(GpuInfo, {k: v for k, v in self.__dict__.items() if v is not None})


@dataclass(frozen=True)
class Cpu:
    arch: str
    vendor: str | None = None
    flags: tuple[str, ...] = ()

    def to_json(self) -> CpuDeclaration:
        out: CpuDeclaration = {"arch": self.arch, "flags": list(self.flags)}
        if self.vendor:
            out["vendor"] = self.vendor
        return out


@dataclass(frozen=True)
class HostCapabilities:
    cpu: Cpu
    gpus: dict[str, Gpu] = field(default_factory=dict)  # by index, as nvidia-smi numbers them
    network: bool = False

    def slot_gpus(self, slot: Slot) -> list[Gpu]:
        """The GPUs of one slot, with what is known about each (the index alone when nothing is)."""
        return [self.gpus.get(index, Gpu(index=index)) for index in slot.gpus]

    def registration(self, slots: Sequence[Slot]) -> Declaration:
        """The ``slots`` and ``capabilities`` fields of POST /pilot/register."""
        return {
            "slots": [
                {"name": s.name, "gpus": list(s.gpus), "gpu_info": [g.to_json() for g in self.slot_gpus(s)]}
                for s in slots
            ],
            "capabilities": {"cpu": self.cpu.to_json(), "network": self.network},
        }


# -- detection -----------------------------------------------------------------------------------


def normalise_arch(machine: str) -> str:
    text = machine.strip().lower()
    return _ARCH.get(text, text) or "unknown"


def parse_cpuinfo(text: str) -> tuple[str | None, tuple[str, ...]]:
    """(vendor, flags) from /proc/cpuinfo: x86 ``vendor_id``/``flags``, ARM ``CPU implementer``/``Features``."""
    vendor: str | None = None
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key in ("vendor_id", "cpu implementer") and vendor is None:
            raw = value.strip().lower()
            vendor = _CPU_VENDOR.get(raw, raw or None)
        elif key in ("flags", "features"):
            flags.update(f for f in value.split() if re.fullmatch(r"[a-z0-9_.]{1,64}", f))
            if len(flags) > MAX_FLAGS:
                break
    return vendor, tuple(sorted(flags)[:MAX_FLAGS])


def detect_cpu(machine: str | None = None, cpuinfo: str | None = None) -> Cpu:
    """The host CPU; ``machine`` and ``cpuinfo`` replace ``platform.machine()`` and /proc/cpuinfo (tests)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    vendor, flags = parse_cpuinfo(cpuinfo)
    return Cpu(arch=normalise_arch(machine if machine is not None else platform.machine()), vendor=vendor, flags=flags)


def parse_nvidia_smi(output: str) -> dict[str, Gpu]:
    """GPUs from ``nvidia-smi --query-gpu=index,name,memory.total[,driver_version] --format=csv,noheader,nounits``."""
    gpus: dict[str, Gpu] = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 3 or not cells[0].isdigit():
            continue
        memory = cells[2].split()[0] if cells[2] else ""
        driver = cells[3] if len(cells) > 3 and re.fullmatch(r"\d+(\.\d+)*", cells[3]) else None
        gpus[str(int(cells[0]))] = Gpu(
            index=str(int(cells[0])),
            vendor="nvidia",
            model=cells[1][:128] or None,
            memory_mb=int(memory) if memory.isdigit() else None,
            driver_version=driver,
        )
    return gpus


Runner = Callable[[Sequence[str]], str | None]


def run_command(command: Sequence[str]) -> str | None:
    """The command's standard output, or None when it is missing, fails or hangs."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def detect_gpus(run: Runner = run_command) -> dict[str, Gpu]:
    """The host's NVIDIA GPUs by index (empty without ``nvidia-smi``); ``run`` is injectable for tests."""
    output = run(NVIDIA_SMI)
    return parse_nvidia_smi(output) if output else {}


# -- overrides -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overrides:
    """What the site admin says on the command line; wins over detection."""

    gpu_vendor: str | None = None
    gpu_model: str | None = None
    gpu_memory_mb: int | None = None
    gpu_cuda: str | None = None
    cpu_flags: tuple[str, ...] = ()
    allow_network: bool = False


def infer_gpu_vendor(model: str) -> str | None:
    name = model.lower()
    if re.search(r"nvidia|tesla|geforce|quadro|titan|\b(rtx|gtx|[ahlbtvp]\d{1,3}s?)\b", name):
        return "nvidia"
    if re.search(r"\bamd\b|radeon|instinct|\bmi\d{2,3}", name):
        return "amd"
    if re.search(r"intel|\barc\b|max \d{4}", name):
        return "intel"
    return None


def parse_memory_mb(text: str) -> int:
    """``40960``, ``40960MB``, ``40GB``/``40G`` -> megabytes."""
    match = re.fullmatch(r"\s*(\d{1,9})\s*(mb|m|mib|gb|g|gib)?\s*", text.lower())
    if match is None or int(match.group(1)) == 0:
        raise CapabilityError(f"--gpu-memory {text!r}: give the memory of one GPU in MB, or with a GB suffix (40GB)")
    return int(match.group(1)) * (1024 if (match.group(2) or "").startswith("g") else 1)


def apply_overrides(detected: dict[str, Gpu], slots: Sequence[Slot], overrides: Overrides) -> dict[str, Gpu]:
    """Every slot GPU, with the overrides applied on top of what was detected."""
    vendor = overrides.gpu_vendor.lower() if overrides.gpu_vendor else None
    if vendor is None and overrides.gpu_model:
        vendor = infer_gpu_vendor(overrides.gpu_model)
    out = dict(detected)
    for index in (g for s in slots for g in s.gpus):
        gpu = out.get(index, Gpu(index=index))
        changes: dict[str, Any] = {}
        if vendor:
            changes["vendor"] = vendor
        if overrides.gpu_model:
            changes["model"] = overrides.gpu_model
        if overrides.gpu_memory_mb is not None:
            changes["memory_mb"] = overrides.gpu_memory_mb
        if overrides.gpu_cuda:
            changes["cuda_version"] = overrides.gpu_cuda
        out[index] = replace(gpu, **changes)
    return out


def detect_host(
    slots: Sequence[Slot],
    overrides: Overrides | None = None,
    *,
    run: Runner = run_command,
    machine: str | None = None,
    cpuinfo: str | None = None,
) -> HostCapabilities:
    """What this host offers: detection, then the admin's overrides. GPUs are looked for only for GPU slots."""
    overrides = overrides or Overrides()
    if overrides.gpu_vendor and overrides.gpu_vendor.lower() not in ("nvidia", "amd", "intel"):
        raise CapabilityError(f"--gpu-vendor {overrides.gpu_vendor!r}: use nvidia, amd or intel")
    if overrides.gpu_cuda and not re.fullmatch(r"\d+(\.\d+){0,3}", overrides.gpu_cuda):
        raise CapabilityError(f"--gpu-cuda {overrides.gpu_cuda!r}: give a version such as 12.4")
    bad = [f for f in overrides.cpu_flags if not re.fullmatch(r"[a-z0-9_.]{1,64}", f)]
    if bad:
        raise CapabilityError(f"--cpu-flags: {', '.join(bad)} are not CPU flag names (lower-case, e.g. avx2)")
    cpu = detect_cpu(machine, cpuinfo)
    if overrides.cpu_flags:
        cpu = replace(cpu, flags=tuple(sorted(set(cpu.flags) | set(overrides.cpu_flags)))[:MAX_FLAGS])
    detected = detect_gpus(run) if any(s.gpus for s in slots) else {}
    gpus = apply_overrides(detected, slots, overrides)
    return HostCapabilities(cpu=cpu, gpus=gpus, network=overrides.allow_network)


def describe(capabilities: HostCapabilities, slots: Sequence[Slot], *, isolates_network: bool = True) -> str:
    """One line for the pilot's start-up log; ``isolates_network`` is False for the local runtime, whose
    payloads have this machine's network whatever --allow-network says."""
    gpu_text = []
    for slot in slots:
        for gpu in capabilities.slot_gpus(slot):
            memory = f" {gpu.memory_mb} MB" if gpu.memory_mb else ""
            gpu_text.append(f"{gpu.index}={gpu.model or gpu.vendor or 'unknown GPU'}{memory}")
    gpus = ", ".join(gpu_text) if gpu_text else "no GPU"
    if not isolates_network:
        network = "network not isolated (local runtime: payloads use this machine's network)"
    else:
        network = "network allowed" if capabilities.network else "network not allowed"
    return f"CPU {capabilities.cpu.arch} ({len(capabilities.cpu.flags)} flags); GPUs: {gpus}; {network}"
