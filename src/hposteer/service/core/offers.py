"""What a pilot slot offers, matched against a task's parsed requirements (``core.requirements``),
and both described for people (``task show``'s brokerage note).

Pure: no I/O, no service imports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from hposteer.core.requirements import ARCH_ALIASES

# GPU microarchitecture from the model name, for slots that do not declare it (checked in order).
_UARCH_BY_MODEL = (
    (r"\b(b100|b200|gb200|rtx 50\d\d|rtx pro 6000 blackwell)\b", "Blackwell"),
    (r"\b(h100|h200|gh200|h800)\b", "Hopper"),
    (r"\b(l4|l40s?|rtx 40\d\d|rtx [0-9]+ ada)\b|\bada\b", "Ada"),
    (r"\b(a100|a800|a10g?|a16|a30|a40|a2|rtx 30\d\d|rtx a\d{4})\b", "Ampere"),
    (r"\b(t4|rtx 20\d\d|quadro rtx|titan rtx|gtx 16\d\d)\b", "Turing"),
    (r"\b(v100|titan v)\b", "Volta"),
    (r"\b(p100|p40|p4|gtx 10\d\d|titan xp?)\b", "Pascal"),
    (r"\bmi3\d\d", "CDNA3"),
    (r"\bmi2\d\d", "CDNA2"),
    (r"\bmi100\b", "CDNA"),
)

# -- matching ----------------------------------------------------------------------------------


def gpu_uarch(model: str) -> str | None:
    """The microarchitecture of a GPU model name (``NVIDIA A100-SXM4-40GB`` -> Ampere), if known."""
    name = model.lower().replace("-", " ")
    for pattern, uarch in _UARCH_BY_MODEL:
        if re.search(pattern, name):
            return uarch
    return None


def _version(value: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", value)[:4])


def _compare(have: tuple[int, ...] | int, op: str, want: tuple[int, ...] | int) -> bool:
    if isinstance(have, tuple) and isinstance(want, tuple):
        width = max(len(have), len(want))
        have, want = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
    results = {
        ">=": have >= want,  # type: ignore[operator]
        "<=": have <= want,  # type: ignore[operator]
        ">": have > want,  # type: ignore[operator]
        "<": have < want,  # type: ignore[operator]
        "==": have == want,
        "!=": have != want,
    }
    return results[op]


def _gpu_problem(gpu_req: Mapping[str, Any], gpu: Mapping[str, Any]) -> str | None:
    """Why this GPU does not match the GPU requirement, or None when it does."""
    vendor = gpu_req.get("vendor")
    if vendor and str(gpu.get("vendor") or "").lower() != vendor:
        return f"a {vendor} GPU"
    model = str(gpu.get("model") or "")
    for rule in gpu_req.get("model", ()):
        found = re.search(rule["pattern"], model, re.IGNORECASE) is not None
        if not model or found == bool(rule["exclude"]):  # an undeclared model satisfies no model rule
            return ("a GPU model other than " if rule["exclude"] else "a GPU model matching ") + repr(rule["pattern"])
    for rule in gpu_req.get("vram", ()):
        memory = gpu.get("memory_mb")
        if not isinstance(memory, int) or not _compare(memory, rule["op"], int(rule["value"])):
            return f"GPU memory {rule['op']} {rule['value']} MB"
    for key, field, label in (("cuda", "cuda_version", "CUDA"), ("driver", "driver_version", "driver")):
        for rule in gpu_req.get(key, ()):
            have = gpu.get(field)
            if not have or not _compare(_version(str(have)), rule["op"], _version(str(rule["value"]))):
                return f"{label} version {rule['op']} {rule['value']}"
    uarch = gpu.get("uarch") or gpu_uarch(model)
    wanted = gpu_req.get("uarch")
    if wanted and (uarch is None or uarch.lower() not in {w.lower() for w in wanted}):
        return f"a GPU microarchitecture among {', '.join(wanted)}"
    excluded = gpu_req.get("uarch_excluded")
    if excluded and (uarch is None or uarch.lower() in {w.lower() for w in excluded}):
        return f"a GPU microarchitecture other than {', '.join(excluded)}"
    return None


def explain(requirements: Mapping[str, Any] | None, offer: Mapping[str, Any]) -> str:
    """Why the offer does not satisfy the requirements ("" when it does)."""
    if not requirements:
        return ""
    problems: list[str] = []
    cpu_req = requirements.get("cpu") or {}
    cpu = offer.get("cpu") or {}
    if cpu_req.get("arch") and ARCH_ALIASES.get(str(cpu.get("arch") or "").lower()) != cpu_req["arch"]:
        problems.append(f"needs a {cpu_req['arch']} CPU, the slot has {cpu.get('arch') or 'an undeclared one'}")
    if cpu_req.get("vendor") and str(cpu.get("vendor") or "").lower() != cpu_req["vendor"]:
        problems.append(f"needs a {cpu_req['vendor']} CPU, the slot has {cpu.get('vendor') or 'an undeclared vendor'}")
    missing = sorted(set(cpu_req.get("flags", ())) - set(cpu.get("flags") or ()))
    if missing:
        problems.append(f"needs CPU flags {' '.join(missing)} ({cpu_req.get('isa', '')}), the slot lacks them")
    gpu_req = requirements.get("gpu")
    if gpu_req:
        problems.extend(_gpu_problems(gpu_req, offer.get("gpus") or ()))
    return "; ".join(problems)


def _gpu_problems(gpu_req: Mapping[str, Any], gpus: Iterable[Mapping[str, Any]]) -> list[str]:
    gpus = list(gpus)
    count = int(gpu_req.get("count", 1))
    reasons = [_gpu_problem(gpu_req, g) for g in gpus]
    matching = sum(1 for r in reasons if r is None)
    if matching >= count and not (gpu_req.get("count_exact") and len(gpus) != count):
        return []
    wanted = describe({"gpu": gpu_req})
    if not gpus:
        return [f"needs {wanted}, the slot has no GPU"]
    first = next((r for r in reasons if r is not None), None)
    detail = f" (needs {first})" if first else ""
    have = ", ".join(describe_gpu(g) for g in gpus)
    return [f"needs {wanted}, the slot has {have}{detail}"]


def satisfies(requirements: Mapping[str, Any] | None, offer: Mapping[str, Any]) -> bool:
    """True when a slot offering ``offer`` can run a task with ``requirements`` (None: any slot)."""
    return not explain(requirements, offer)


# -- descriptions for people --------------------------------------------------------------------


def describe(requirements: Mapping[str, Any] | None) -> str:
    """``x86_64 CPU with avx2, 1 nvidia GPU with memory >= 40960 MB``-style text."""
    if not requirements:
        return "any slot"
    parts: list[str] = []
    cpu = requirements.get("cpu") or {}
    if cpu:
        words = [w for w in (cpu.get("vendor"), cpu.get("arch")) if w]
        text = " ".join([*words, "CPU"])
        if cpu.get("isa"):
            text += f" with {cpu['isa']}"
        parts.append(text)
    gpu = requirements.get("gpu")
    if gpu:
        count = int(gpu.get("count", 1))
        text = f"{count} {gpu.get('vendor', '')} GPU{'s' if count != 1 else ''}".replace("  ", " ")
        details = [f"model {'not ' if m['exclude'] else ''}~ {m['pattern']}" for m in gpu.get("model", ())]
        details += [f"memory {r['op']} {r['value']} MB" for r in gpu.get("vram", ())]
        details += [f"CUDA {r['op']} {r['value']}" for r in gpu.get("cuda", ())]
        details += [f"driver {r['op']} {r['value']}" for r in gpu.get("driver", ())]
        if gpu.get("uarch"):
            details.append("uarch " + "|".join(gpu["uarch"]))
        if gpu.get("uarch_excluded"):
            details.append("uarch not " + "|".join(gpu["uarch_excluded"]))
        parts.append(text + (f" ({', '.join(details)})" if details else ""))
    return ", ".join(parts) or "any slot"


def describe_gpu(gpu: Mapping[str, Any]) -> str:
    model = gpu.get("model") or f"{gpu.get('vendor') or 'unknown'} GPU"
    memory = gpu.get("memory_mb")
    return f"{model} {memory} MB" if isinstance(memory, int) else str(model)


def describe_offer(offer: Mapping[str, Any]) -> str:
    """``x86_64, 2x NVIDIA A100 40960 MB``-style text."""
    cpu = offer.get("cpu") or {}
    gpus = list(offer.get("gpus") or ())
    words = [str(cpu.get("arch") or "unknown CPU")]
    if gpus:
        names = [describe_gpu(g) for g in gpus]
        unique = sorted(set(names))
        words.append(", ".join(f"{names.count(n)}x {n}" if names.count(n) > 1 else n for n in unique))
    else:
        words.append("no GPU")
    return ", ".join(words)
