"""``hpogrid generate`` for steering containers: iDDS's %IN in, %OUT out, our optimisers inside.

The steering images (steering_images/) run this as their ``hpogrid`` command, so a PanDA user's
``hpogrid generate --n_point %NUM_POINTS --infile /work/%IN --outfile /work/%OUT -l nevergrad``
works unchanged. Flags are read leniently (``-l x``, ``-l=x``, ``--lib=x``; ``-s`` optional with
``--infile``; docs/panda-compatibility.md#hpogrid-generate). The optimiser code is the in-process runner's
(``hposteer.service.steering.optimizers.warm.generate``), so with the same seed, budget (``--max_point``),
parallelism and history both give the same points. ``--seed`` and ``--parallelism`` are ours
(default 0 and 1); hpogrid has neither.

As hpogrid does: every point with a finite loss is told (a failed point arrives with
PanDA's 1e5 and is told as that loss), points with a null loss are pending, and
``n_point - pending`` new points are asked for, per model for segmented spaces. ``[]`` means
nothing is wanted now, or the optimiser is exhausted.

    python -m hposteer.service.steering.image_programs.hpogrid_generate generate -n 4 -i in.json -o out.json \
        -l nevergrad
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hposteer.core.searchspace import SearchSpaceError
from hposteer.core.space_json import parse_search_space
from hposteer.service.core.optimizer_spec import OptimizerSpecError, hpogrid_options, spec_from_hpogrid_options
from hposteer.service.core.steering import Observation
from hposteer.service.steering.optimizers.warm import generate

USAGE = "usage: hpogrid generate -n N [-i IN.json -o OUT.json | -s SPACE.json] [-l LIB] [--method M] [--mode min|max]"


class GenerateError(ValueError):
    """Bad options or a bad %IN: the message says which and how to fix it."""


def _int(values: dict[str, str], name: str, default: int | None = None) -> int:
    raw = values.get(name)
    if raw is None:
        if default is None:
            raise GenerateError(f"--{name} is required")
        return default
    try:
        return int(raw)
    except ValueError:
        raise GenerateError(f"--{name} must be an integer, got {raw!r}") from None


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise GenerateError(f"cannot read the {what} {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise GenerateError(f"the {what} {path} is not JSON: {exc}") from None


def _groups(points: Any, opt_space: Any) -> dict[int | None, tuple[Any, list[tuple[dict[str, Any], Any]]]]:
    """Model id (None: not segmented) -> (its raw space, its [point, loss] pairs)."""
    if not isinstance(points, list):
        raise GenerateError("'points' in the input file must be a list of [point, loss] pairs")
    if isinstance(opt_space, dict):
        groups: dict[int | None, tuple[Any, list[tuple[dict[str, Any], Any]]]] = {None: (opt_space, [])}
    elif isinstance(opt_space, list) and all(isinstance(e, dict) and "model_id" in e for e in opt_space):
        groups = {int(e["model_id"]): (e.get("search_space"), []) for e in opt_space}
    else:
        raise GenerateError("'opt_space' must be a search space or a list of {model_id, search_space}")
    for i, pair in enumerate(points):
        if not isinstance(pair, list) or len(pair) != 2:
            raise GenerateError(f"points[{i}] must be a [point, loss] pair")
        point, loss = pair
        model: int | None = None
        if isinstance(point, list) and len(point) == 2 and isinstance(point[1], dict):
            model, point = int(point[0]), point[1]
        if not isinstance(point, dict) or model not in groups:
            raise GenerateError(f"points[{i}] does not match opt_space (a dict, or [model_id, dict] when segmented)")
        groups[model][1].append((point, loss))
    return groups


def _history(pairs: list[tuple[dict[str, Any], Any]]) -> tuple[list[Observation], int]:
    history, pending = [], 0
    for number, (point, loss) in enumerate(pairs, start=1):
        if loss is None:
            pending += 1
            history.append(Observation(number, point, None))
        elif isinstance(loss, int | float) and math.isfinite(loss):
            history.append(Observation(number, point, float(loss)))
    return history, pending


def run(argv: Sequence[str]) -> list[Any]:
    """The new points for these ``generate`` arguments (what is written to the output file)."""
    if not argv or argv[0] != "generate":
        raise GenerateError(f"only the 'generate' command exists here\n{USAGE}")
    try:
        values = hpogrid_options(list(argv[1:]))
        spec = spec_from_hpogrid_options(values, "hpogrid generate " + " ".join(argv[1:]))
    except OptimizerSpecError as exc:
        raise GenerateError(str(exc)) from None
    n_point = _int(values, "n_point")
    seed, parallelism = _int(values, "seed", 0), _int(values, "parallelism", 1)
    if "infile" in values:
        content = _read_json(values["infile"], "input file (%IN)")
        if not isinstance(content, dict):
            raise GenerateError('the input file must hold {"points": [...], "opt_space": ...}')
        groups = _groups(content.get("points", []), content.get("opt_space"))
    elif "space" in values:
        groups = {None: (_read_json(values["space"], "search-space file"), [])}
    else:
        raise GenerateError(f"give --infile (iDDS's %IN) or -s SPACE.json\n{USAGE}")
    out: list[Any] = []
    for model, (raw_space, pairs) in groups.items():
        try:
            space = parse_search_space(raw_space)
        except SearchSpaceError as exc:
            where = "" if model is None else f" (model_id {model})"
            raise GenerateError(f"the search space{where} is not valid: {exc}") from None
        history, pending = _history(pairs)
        wanted = n_point - pending
        budget = _int(values, "max_point", max(len(pairs) + max(wanted, 0), 1))
        if wanted <= 0:
            continue
        seed_here = seed if model is None else seed + model  # the in-process runner's seed per segment
        new = generate(spec, space, history, wanted, seed_here, budget=budget, parallelism=parallelism)
        out.extend(new if model is None else [[model, p] for p in new])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        points = run(args)
        values = hpogrid_options(args[1:])
    except GenerateError as exc:
        print(f"hpogrid generate: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(points, indent=2)
    if "outfile" in values:
        Path(values["outfile"]).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
