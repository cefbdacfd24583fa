"""Task requirements (phpo ``--architecture``): parsing into one normalised dictionary.

Accepted forms of ``--architecture`` (PanDA's, see docs/phpo.md):

* ``""``: any slot.
* ``[PLATFORM][@BASE]#CPU_SPEC&GPU_SPEC``, either spec may be left out:
  ``CPU_SPEC = arch[-vendor[-instruction set]]`` (``*`` = any), e.g. ``#x86_64-*-avx2``;
  ``GPU_SPEC = vendor[-model][:KEY OP VALUE]...`` with keys vram (MB), cuda, driver, uarch,
  model (regular expression), count (GPUs in the slot), e.g. ``&nvidia:vram>=40960:model=.*A100.*``.
  PLATFORM and BASE (ATLAS software platform, base OS) are kept but not enforced, except that a
  platform starting with a CPU architecture (``x86_64-el9-gcc13-opt``) requires that architecture.
* A JSON dictionary of GPU attributes: ``{"model": ".*A100.*"}``, ``{"model": {"pattern": "P100",
  "excl": true}}``, ``{"vram": ">=40960"}``, ``{"version": ">=12.0"}`` (CUDA),
  ``{"driver_version": ">=575.0"}``, ``{"microarchitecture": ["Ampere", "Hopper"]}``, plus our
  ``count``, ``vendor`` and ``cpu`` (a CPU_SPEC string).
* hpogrid's shortcuts ``nvidia-gpu``, ``gpu``, ``nvidia``, ``amd``, and a bare architecture (``x86_64``).

``parse_architecture`` turns any of them into one normalised, JSON-serialisable dictionary
(stored in ``tasks.requirements``); ``core.offers`` matches it against a slot's offer::

    {"cpu": {"arch": "x86_64", "vendor": "intel", "flags": ["avx2", ...]},
     "gpus": [{"vendor": "nvidia", "model": "NVIDIA A100-SXM4-40GB", "memory_mb": 40960,
               "driver_version": "575.51.03", "cuda_version": "12.9", "uarch": "Ampere"}],
     "network": false}

Pure: no I/O, no service imports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

MAX_TEXT = 512  # tasks.architecture is VARCHAR(512)
MAX_PATTERN = 256

FORMS = (
    "accepted forms: '' (any slot); '#CPU&GPU' with CPU = arch[-vendor[-instruction set]] and "
    "GPU = vendor[-model][:key OP value]... (keys vram, cuda, driver, uarch, model, count; '*' = any), "
    "e.g. '#x86_64-*-avx2&nvidia' or '#&nvidia:vram>=40960'; "
    'or a JSON dict such as \'{"model": ".*A100.*", "vram": ">=40960"}\' '
    "(keys model, vram, version, driver_version, microarchitecture, count, vendor, cpu)"
)

ARCH_ALIASES = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "x64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "ppc64le": "ppc64le",
    "riscv64": "riscv64",
    "s390x": "s390x",
    "i686": "i686",
    "i386": "i686",
    "armv7l": "armv7l",
}
GPU_VENDORS = ("nvidia", "amd", "intel")
_ANY = ("", "*", "any")
_ANY_GPU = ("gpu", "*", "any", "")

_LEVEL_V2 = ("cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3")
_LEVEL_V3 = (*_LEVEL_V2, "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave")
_LEVEL_V4 = (*_LEVEL_V3, "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
# Instruction-set names as users write them -> the /proc/cpuinfo flags they need.
ISA_ALIASES: dict[str, tuple[str, ...]] = {
    "avx512": ("avx512f",),
    "sse4": ("sse4_1", "sse4_2"),
    "sse4.1": ("sse4_1",),
    "sse4.2": ("sse4_2",),
    "v2": _LEVEL_V2,
    "x86-64-v2": _LEVEL_V2,
    "v3": _LEVEL_V3,
    "x86-64-v3": _LEVEL_V3,
    "v4": _LEVEL_V4,
    "x86-64-v4": _LEVEL_V4,
}

_OPS = (">=", "<=", "==", "!=", ">", "<", "=")
_NUMERIC_KEYS = ("vram", "count")
_VERSION_KEYS = ("cuda", "driver")
_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")
_TOKEN = re.compile(r"^[a-z0-9_.]+$")


class RequirementsError(ValueError):
    """``--architecture`` cannot be understood; the message says what is wrong and the accepted forms."""


def _fail(text: str, problem: str) -> RequirementsError:
    return RequirementsError(f"--architecture {text!r}: {problem}; {FORMS}")


# -- parsing -----------------------------------------------------------------------------------


def parse_architecture(text: str) -> dict[str, Any] | None:
    """The task's requirements as a normalised dict, or None when any slot will do."""
    if not isinstance(text, str):
        raise RequirementsError(f"--architecture must be a string, not {type(text).__name__}; {FORMS}")
    source = text.strip()
    if not source:
        return None
    if len(source) > MAX_TEXT:
        raise _fail(source[:40] + "...", f"longer than {MAX_TEXT} characters")
    result = _parse_json(source) if source.startswith("{") else _parse_shorthand(source)
    if not result.get("cpu") and not result.get("gpu"):
        return None  # only a software platform: nothing a slot must offer
    return result


def _parse_shorthand(text: str) -> dict[str, Any]:
    lowered = text.lower()
    if lowered in ("nvidia-gpu", "gpu", "nvidia", "amd", "amd-gpu", "intel-gpu"):  # hpogrid's shortcuts
        vendor = lowered.split("-")[0]
        return {"gpu": _gpu_spec(text, "*" if vendor == "gpu" else vendor)}
    match = re.fullmatch(r"([^@#&]*)(@[^#&]*)?(#[^&]*)?(&.*)?", text)
    if match is None:
        raise _fail(text, "the parts must come in the order PLATFORM@BASE#CPU&GPU")
    platform, base, cpu, gpu = match.groups()
    out: dict[str, Any] = {}
    if platform or base:
        out["platform"] = (platform or "") + (base or "")
    cpu_req: dict[str, Any] = {}
    if platform:
        cpu_req = _platform_arch(text, platform)
    if cpu is not None:
        from_spec = _cpu_spec(text, cpu[1:])
        if cpu_req and from_spec.get("arch") not in (None, cpu_req["arch"]):
            raise _fail(text, f"the platform says {cpu_req['arch']} but the CPU spec says {from_spec['arch']}")
        cpu_req = {**cpu_req, **from_spec}
    if cpu_req:
        out["cpu"] = cpu_req
    if gpu is not None:
        out["gpu"] = _gpu_spec(text, gpu[1:])
    return out


def _platform_arch(text: str, platform: str) -> dict[str, Any]:
    """``x86_64-el9-gcc13-opt`` or ``aarch64`` -> that architecture; anything else is an error."""
    head = platform.split("-", maxsplit=1)[0].lower()
    if head in ARCH_ALIASES:
        return {"arch": ARCH_ALIASES[head]}
    raise _fail(
        text,
        f"{platform!r} is neither a CPU architecture ({', '.join(sorted(set(ARCH_ALIASES.values())))}) nor a "
        "software platform starting with one; put CPU and GPU requirements after '#' and '&'",
    )


def _cpu_spec(text: str, spec: str) -> dict[str, Any]:
    parts = spec.split("-", 2)
    arch, vendor, isa = [*parts, "", "", ""][:3]
    out: dict[str, Any] = {}
    arch = arch.strip().lower()
    if arch not in _ANY:
        if arch not in ARCH_ALIASES:
            known = ", ".join(sorted(set(ARCH_ALIASES.values())))
            raise _fail(text, f"unknown CPU architecture {arch!r} (known: {known}, or '*')")
        out["arch"] = ARCH_ALIASES[arch]
    vendor = vendor.strip().lower()
    if vendor not in _ANY:
        if not _TOKEN.match(vendor):
            raise _fail(text, f"CPU vendor {vendor!r} must be a word such as intel or amd (or '*')")
        out["vendor"] = vendor
    isa = isa.strip().lower()
    if isa not in _ANY:
        out["isa"] = isa
        out["flags"] = _flags(text, isa)
    return out


def _flags(text: str, isa: str) -> list[str]:
    flags: set[str] = set()
    for raw in re.split(r"[+,]", isa):
        name = raw.strip()
        if name in ISA_ALIASES:
            flags.update(ISA_ALIASES[name])
        elif name and _TOKEN.match(name):
            flags.add(name.replace(".", "_"))
        else:
            raise _fail(text, f"instruction set {name!r} must be a CPU flag (avx2, avx512, ...) or x86-64-v2/v3/v4")
    return sorted(flags)


def _gpu_spec(text: str, spec: str) -> dict[str, Any]:
    head, *conditions = spec.split(":")
    vendor, _, model = head.partition("-")
    vendor = vendor.strip().lower()
    out: dict[str, Any] = {"count": 1}
    if vendor not in _ANY_GPU:
        if vendor not in GPU_VENDORS:
            raise _fail(text, f"unknown GPU vendor {vendor!r} (known: {', '.join(GPU_VENDORS)}, or '*')")
        out["vendor"] = vendor
    if model.strip() and model.strip().lower() != "gpu":  # "nvidia-gpu" names no model
        _add_model(text, out, re.escape(model.strip()), exclude=False)
    for condition in conditions:
        _gpu_condition(text, out, condition.strip())
    return out


def _gpu_condition(text: str, out: dict[str, Any], condition: str) -> None:
    match = re.fullmatch(r"([a-z_]+)\s*(>=|<=|==|!=|>|<|=)\s*(.+)", condition, flags=re.IGNORECASE)
    if match is None:
        raise _fail(text, f"GPU condition {condition!r} must be KEY OP VALUE, e.g. vram>=40960")
    key, op, value = match.group(1).lower(), match.group(2), match.group(3).strip()
    key = {"version": "cuda", "driver_version": "driver", "microarchitecture": "uarch", "memory": "vram"}.get(key, key)
    if key == "model":
        if op not in ("=", "==", "!="):
            raise _fail(text, f"model takes = (a regular expression) or != (exclusion), not {op}")
        _add_model(text, out, value, exclude=op == "!=")
    elif key == "uarch":
        if op not in ("=", "==", "!="):
            raise _fail(text, f"uarch takes = or !=, not {op}")
        names = [v.strip() for v in re.split(r"[|,]", value) if v.strip()]
        out["uarch" if op != "!=" else "uarch_excluded"] = _uarch_names(text, names)
    elif key in _NUMERIC_KEYS:
        _add_condition(text, out, key, op, _number(text, key, value))
    elif key in _VERSION_KEYS:
        if not _VERSION.match(value):
            raise _fail(text, f"{key} must be a version such as 12.4, got {value!r}")
        _add_condition(text, out, key, op, value)
    elif key == "vendor":
        if value.lower() not in GPU_VENDORS or op not in ("=", "=="):
            raise _fail(text, f"vendor must be = one of {', '.join(GPU_VENDORS)}")
        out["vendor"] = value.lower()
    else:
        raise _fail(text, f"unknown GPU key {key!r} (keys: vram, cuda, driver, uarch, model, count)")


def _number(text: str, key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise _fail(text, f"{key} must be a number, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        match = re.fullmatch(r"(\d{1,9})\s*(mb|m|gb|g)?", str(value).strip().lower())
        if match is None:
            unit = " in MB (or with a GB suffix)" if key == "vram" else ""
            raise _fail(text, f"{key} must be a whole number{unit}, got {value!r}")
        number = int(match.group(1)) * (1024 if match.group(2) in ("gb", "g") else 1)
    if not 0 <= number <= 10**9:
        raise _fail(text, f"{key} {number} is out of range")
    return number


def _add_condition(text: str, out: dict[str, Any], key: str, op: str, value: int | str) -> None:
    op = "==" if op == "=" else op
    if key == "count":
        if op not in (">=", "=="):
            raise _fail(text, f"count takes >= or =, not {op}")
        out["count"] = int(value)
        if op == "==":
            out["count_exact"] = True
        return
    out.setdefault(key, []).append({"op": op, "value": value})


def _add_model(text: str, out: dict[str, Any], pattern: str, *, exclude: bool) -> None:
    if not pattern or len(pattern) > MAX_PATTERN:
        raise _fail(text, f"a model pattern must have 1 to {MAX_PATTERN} characters")
    try:
        re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise _fail(text, f"model {pattern!r} is not a regular expression ({exc})") from None
    out.setdefault("model", []).append({"pattern": pattern, "exclude": exclude})


def _uarch_names(text: str, names: Iterable[Any]) -> list[str]:
    out = []
    for name in names:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.]{1,32}", name.strip()):
            raise _fail(text, f"microarchitecture {name!r} must be a name such as Ampere or Hopper")
        out.append(name.strip())
    if not out:
        raise _fail(text, "microarchitecture needs at least one name")
    return out


_JSON_GPU_KEYS = ("model", "vram", "version", "cuda", "driver_version", "driver", "microarchitecture", "uarch",
                  "count", "vendor", "gpu")  # fmt: skip
_JSON_OTHER_KEYS = ("cpu", "sw_platform", "encoded_platform")


def _parse_json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _fail(text, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _fail(text, "the JSON form must be a dictionary")
    unknown = sorted(str(k) for k in data if k not in _JSON_GPU_KEYS + _JSON_OTHER_KEYS)
    if unknown:
        raise _fail(text, f"unknown key(s) {', '.join(map(repr, unknown))}")
    out: dict[str, Any] = {}
    platform = data.get("sw_platform") or data.get("encoded_platform")
    if platform:
        out["platform"] = str(platform)[:MAX_TEXT]
    cpu = data.get("cpu")
    if cpu is not None:
        if not isinstance(cpu, str):
            raise _fail(text, "cpu must be a CPU spec string such as 'x86_64-*-avx2'")
        spec = _cpu_spec(text, cpu.lstrip("#"))
        if spec:
            out["cpu"] = spec
    if any(k in data for k in _JSON_GPU_KEYS):
        out["gpu"] = _json_gpu(text, data)
    return out


def _json_gpu(text: str, data: Mapping[str, Any]) -> dict[str, Any]:
    gpu = data.get("gpu")
    if isinstance(gpu, str):
        out = _gpu_spec(text, gpu.lstrip("&"))
    elif gpu is None or gpu is True:
        out = {"count": 1}
    else:
        raise _fail(text, "gpu must be true or a GPU spec string such as 'nvidia:vram>=40960'")
    vendor = data.get("vendor")
    if vendor is not None:
        if not isinstance(vendor, str) or vendor.lower() not in GPU_VENDORS:
            raise _fail(text, f"vendor must be one of {', '.join(GPU_VENDORS)}")
        out["vendor"] = vendor.lower()
    _json_models(text, out, data.get("model"))
    for key, name in (("vram", "vram"), ("count", "count")):
        if key in data:
            _json_condition(text, out, name, data[key], numeric=True)
    for key, name in (("version", "cuda"), ("cuda", "cuda"), ("driver_version", "driver"), ("driver", "driver")):
        if key in data:
            _json_condition(text, out, name, data[key], numeric=False)
    for key in ("microarchitecture", "uarch"):
        if key in data:
            value = data[key]
            out["uarch"] = _uarch_names(text, value if isinstance(value, list) else [value])
    return out


def _json_models(text: str, out: dict[str, Any], models: Any) -> None:
    for model in models if isinstance(models, list) else ([] if models is None else [models]):
        if isinstance(model, str):
            _add_model(text, out, model, exclude=False)
        elif isinstance(model, dict) and isinstance(model.get("pattern"), str) and set(model) <= {"pattern", "excl"}:
            _add_model(text, out, model["pattern"], exclude=bool(model.get("excl", False)))
        else:
            raise _fail(text, 'model must be a regular expression or {"pattern": ..., "excl": true}')


def _json_condition(text: str, out: dict[str, Any], key: str, value: Any, *, numeric: bool) -> None:
    op: str
    rest: Any
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        op, rest = ">=", value
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*(>=|<=|==|!=|>|<|=)?\s*(.+?)\s*", value)
        if match is None:
            raise _fail(text, f"{key} {value!r} must be an optional operator and a value, e.g. '>=40960'")
        op, rest = match.group(1) or ">=", match.group(2)
    else:
        raise _fail(text, f"{key} must be a string such as '>=40960' or a number, got {value!r}")
    if numeric:
        _add_condition(text, out, key, op, _number(text, key, rest))
    else:
        version = str(rest)
        if not _VERSION.match(version):
            raise _fail(text, f"{key} must be a version such as 12.4, got {value!r}")
        _add_condition(text, out, key, op, version)
