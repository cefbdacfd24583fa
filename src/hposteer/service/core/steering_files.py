"""The files a steering container reads and writes: iDDS's ``%IN`` and ``%OUT`` (docs/steering.md).

``%IN`` is ``{"points": [[point, loss], ...], "opt_space": ...}`` with every point of the segment
so far, in order; ``loss`` is null while unevaluated, and a point that failed all its attempts
carries its failure loss (PanDA's 1e5), with nothing marking it as a failure. A segmented task's
point is ``[model_id, {...}]`` and its ``opt_space`` is ``[{"model_id": N, "search_space": {...}}]``
for the segment being steered; otherwise the point is the dict and ``opt_space`` the space as
submitted.

``%OUT`` must be a JSON list of new points in the same shape: ``[]`` means the optimiser is
exhausted; anything else that is not such a list, or a point outside the space, fails the run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from hposteer.core.searchspace import Params, SearchSpace
from hposteer.service.core.steering import Observation, SteeringError

PANDA_FAILURE_LOSS = 1e5


def input_document(history: Sequence[Observation], raw_space: Any, *, segmented: bool, model_id: int) -> dict[str, Any]:
    points: list[list[Any]] = []
    for obs in history:
        loss = obs.loss
        if obs.failed and (loss is None or not math.isfinite(loss)):
            loss = PANDA_FAILURE_LOSS
        point: Any = [model_id, dict(obs.params)] if segmented else dict(obs.params)
        points.append([point, loss])
    opt_space = [{"model_id": model_id, "search_space": raw_space}] if segmented else raw_space
    return {"points": points, "opt_space": opt_space}


def input_text(history: Sequence[Observation], raw_space: Any, *, segmented: bool, model_id: int) -> str:
    return json.dumps(input_document(history, raw_space, segmented=segmented, model_id=model_id))


def parse_output(text: str, space: SearchSpace, *, segmented: bool, model_id: int) -> list[Params]:
    """The new points of ``%OUT``, checked against the segment's space; ``[]``: exhausted."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SteeringError(f"the output file is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise SteeringError(f"the output file must hold a JSON list of points, not {_kind(data)}")
    return [_point(i, entry, space, segmented=segmented, model_id=model_id) for i, entry in enumerate(data)]


def _point(i: int, entry: Any, space: SearchSpace, *, segmented: bool, model_id: int) -> Params:
    where = f"point {i} of the output"
    if segmented:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)):
            raise SteeringError(f"{where} must be [model_id, {{...}}] for a segmented task, not {_short(entry)}")
        if entry[0] != model_id or isinstance(entry[0], bool):
            raise SteeringError(f"{where} is for model_id {_short(entry[0])}, but this run steers model_id {model_id}")
        params = entry[1]
    else:
        if not isinstance(entry, dict):
            raise SteeringError(f"{where} must be a dict of hyperparameters, not {_short(entry)}")
        params = entry
    problem = _outside(params, space)
    if problem:
        raise SteeringError(f"{where} is outside the search space: {problem}")
    return dict(params)


def _outside(params: dict[str, Any], space: SearchSpace) -> str | None:
    missing = [n for n in space.names if n not in params]
    if missing:
        return "missing " + ", ".join(repr(n) for n in missing)
    unknown = [n for n in params if n not in space.names]
    if unknown:
        return "unknown parameter " + ", ".join(repr(n) for n in unknown)
    for dim in space:
        if not dim.contains(params[dim.name]):
            return f"{dim.name}={_short(params[dim.name])} is not in {_short(dim.to_json())}"
    return None


def _kind(data: Any) -> str:
    return {dict: "an object", str: "a string", bool: "a boolean", type(None): "null"}.get(type(data), "a number")


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 120 else text[:117] + "..."
