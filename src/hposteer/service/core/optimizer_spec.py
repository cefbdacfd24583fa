"""Which optimiser a task asked for, from ``--optimizer NAME`` or a bare ``hpogrid generate`` line.

Rules (docs/steering.md states them for users):

* ``--optimizer LIB[:METHOD]`` picks a builtin optimiser: ``tpe`` (the default, Optuna's TPE
  sampler), ``nevergrad[:NAME]`` (any nevergrad registry name, default ``NGOpt``),
  ``skopt[:GP|RF|ET|GBRT]`` (default ``GP``), ``random`` and ``grid``.
* A ``steeringExec`` that is a bare ``hpogrid generate ... -l LIB [--method M] [--mode max]``
  line runs the same library and method in-process. Its flags are read leniently
  (``-l x``, ``-l=x``, ``--lib=x``; ``-s`` optional), as in real configurations. hpogrid's
  own defaults apply: library ``nevergrad``, and for nevergrad the method ``RandomSearch``.
* Anything else in ``steeringExec`` needs a steering container.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Literal

Mode = Literal["min", "max"]

DEFAULT_LIBRARY = "tpe"
LIBRARY_ALIASES = {
    "tpe": "tpe",
    "optuna": "tpe",
    "nevergrad": "nevergrad",
    "skopt": "skopt",
    "scikit-optimize": "skopt",
    "random": "random",
    "grid": "grid",
}
DEFAULT_METHODS = {"tpe": "TPE", "nevergrad": "NGOpt", "skopt": "GP", "random": None, "grid": None}
SKOPT_METHODS = ("GP", "RF", "ET", "GBRT")

# hpogrid libraries we cannot run in-process, with the reason shown to the user.
HPOGRID_UNSUPPORTED = ("hyperopt", "ax", "bohb")
HPOGRID_DEFAULT_LIBRARY = "nevergrad"
HPOGRID_NEVERGRAD_DEFAULT_METHOD = "RandomSearch"


class OptimizerSpecError(ValueError):
    """The optimiser name or hpogrid line cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class OptimizerSpec:
    library: str  # one of LIBRARY_ALIASES' values
    method: str | None = None
    mode: Mode = "min"
    source: Literal["default", "option", "hpogrid"] = "default"

    @property
    def name(self) -> str:
        return f"{self.library}:{self.method}" if self.method else self.library


def supported_names() -> str:
    return "tpe, nevergrad[:NAME], skopt[:GP|RF|ET|GBRT], random, grid"


def parse_optimizer_name(text: str | None) -> OptimizerSpec:
    """Parse ``--optimizer`` (None gives the default, TPE)."""
    if text is None or not text.strip():
        return OptimizerSpec(DEFAULT_LIBRARY, DEFAULT_METHODS[DEFAULT_LIBRARY])
    raw_library, _, method = text.strip().partition(":")
    library = LIBRARY_ALIASES.get(raw_library.strip().lower())
    if library is None:
        raise OptimizerSpecError(f"unknown optimizer {text!r}; choose one of: {supported_names()}")
    chosen = method.strip() or DEFAULT_METHODS[library]
    return _checked(OptimizerSpec(library, chosen, source="option"), text)


def _checked(spec: OptimizerSpec, text: str) -> OptimizerSpec:
    if spec.library == "skopt" and spec.method is not None:
        upper = spec.method.upper()
        if upper not in SKOPT_METHODS:
            raise OptimizerSpecError(
                f"unknown scikit-optimize method {spec.method!r} in {text!r}; choose one of: {', '.join(SKOPT_METHODS)}"
            )
        return OptimizerSpec(spec.library, upper, spec.mode, spec.source)
    if spec.library in ("random", "grid") and spec.method is not None:
        raise OptimizerSpecError(f"optimizer {spec.library!r} takes no method, got {text!r}")
    if spec.library == "tpe" and spec.method not in (None, "TPE"):
        raise OptimizerSpecError(f"optimizer 'tpe' has no method {spec.method!r}; write just 'tpe'")
    return spec


_HPOGRID_VALUE_FLAGS = {
    "-l": "lib",
    "--lib": "lib",
    "--method": "method",
    "--mode": "mode",
    "--metric": "metric",
    "-n": "n_point",
    "--n_point": "n_point",
    "-m": "max_point",
    "--max_point": "max_point",
    "-i": "infile",
    "--infile": "infile",
    "-o": "outfile",
    "--outfile": "outfile",
    "-s": "space",
    "--space": "space",
    # hposteer's own, so that a steering image gives the in-process runner's points (docs/steering.md)
    "--seed": "seed",
    "--parallelism": "parallelism",
}


def is_hpogrid_line(steering_exec: str) -> bool:
    try:
        words = shlex.split(steering_exec)
    except ValueError:
        return False
    return len(words) >= 2 and words[0].rsplit("/", 1)[-1] == "hpogrid" and words[1] == "generate"


def hpogrid_options(words: list[str]) -> dict[str, str]:
    """The options of ``hpogrid generate`` (the words after it), read leniently, by their long names."""
    return _hpogrid_flags(words)


def _hpogrid_flags(words: list[str]) -> dict[str, str]:
    """hpogrid generate's options, read leniently: ``-l x``, ``-l=x``, ``--lib=x``."""
    values: dict[str, str] = {}
    i = 0
    while i < len(words):
        flag, eq, inline = words[i].partition("=")
        if flag not in _HPOGRID_VALUE_FLAGS:
            raise OptimizerSpecError(
                f"unknown hpogrid generate option {words[i]!r} in steeringExec; known options: "
                + ", ".join(sorted(set(_HPOGRID_VALUE_FLAGS)))
            )
        if not eq:
            i += 1
            if i >= len(words):
                raise OptimizerSpecError(f"hpogrid generate option {flag!r} needs a value")
            inline = words[i]
        values[_HPOGRID_VALUE_FLAGS[flag]] = inline
        i += 1
    return values


_HPOGRID_METHOD = {"skopt": "GP", "tpe": "TPE"}  # hpogrid's skopt generator ignores --method: always GP


def parse_hpogrid_line(steering_exec: str) -> OptimizerSpec:
    """Map a bare ``hpogrid generate`` line onto the builtin optimiser it names."""
    if not is_hpogrid_line(steering_exec):
        raise OptimizerSpecError(f"steeringExec is not an 'hpogrid generate' line: {steering_exec!r}")
    return spec_from_hpogrid_options(_hpogrid_flags(shlex.split(steering_exec)[2:]), steering_exec)


def spec_from_hpogrid_options(values: dict[str, str], source_text: str) -> OptimizerSpec:
    """The builtin optimiser that hpogrid's ``--lib``/``--method``/``--mode`` name."""
    raw_library = values.get("lib", HPOGRID_DEFAULT_LIBRARY).lower()
    if raw_library in HPOGRID_UNSUPPORTED:
        raise OptimizerSpecError(
            f"hpogrid library {raw_library!r} has no builtin equivalent; use one of -l nevergrad, "
            "skopt, optuna, grid, or --optimizer with one of: " + supported_names()
        )
    library = LIBRARY_ALIASES.get(raw_library)
    if library is None or library == "random":
        raise OptimizerSpecError(
            f"unknown hpogrid library {raw_library!r}; "
            "hpogrid knows grid, skopt, nevergrad, hyperopt, ax, bohb and optuna"
        )
    mode = values.get("mode", "min").lower()
    if mode not in ("min", "max"):
        raise OptimizerSpecError(f"hpogrid --mode must be 'min' or 'max', got {mode!r}")
    if library == "nevergrad":
        method: str | None = values.get("method") or HPOGRID_NEVERGRAD_DEFAULT_METHOD
    else:
        method = _HPOGRID_METHOD.get(library)
    spec = OptimizerSpec(library, method, "max" if mode == "max" else "min", source="hpogrid")
    return _checked(spec, source_text)
