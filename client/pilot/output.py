"""Reading the evaluation's result file (output.json), per panda_protocol.md §6.5.

Success needs all of: exit code 0, the file present, a JSON object, ``status`` missing or
0, and a finite numeric ``loss`` (a numeric string is accepted, as PanDA's float() does).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Result:
    outcome: str  # success | failure
    loss: float | None = None
    failure_class: str | None = None
    message: str = ""


def _failure(failure_class: str, message: str) -> Result:
    return Result("failure", None, failure_class, message)


def read_result(path: Path, exit_code: int) -> Result:
    name = path.name
    document = None
    problem = None
    if path.is_file():
        try:
            document = json.loads(path.read_text(errors="replace"))
        except json.JSONDecodeError as exc:
            problem = f"{name} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    if exit_code != 0:
        detail = ""
        if isinstance(document, dict) and document.get("message"):
            detail = f"; {name} says: {document['message']}"
        return _failure("payload_error", f"the evaluation exited with code {exit_code}{detail}")
    if problem is not None:
        return _failure("invalid_output", problem)
    if not path.is_file():
        return _failure("missing_output", f"the evaluation exited 0 but wrote no {name}")
    if not isinstance(document, dict):
        return _failure("invalid_output", f"{name} must hold a JSON object, got {type(document).__name__}")
    status = document.get("status", 0)
    message = str(document.get("message") or "")
    if status not in (0, None) or isinstance(status, bool):
        return _failure("payload_error", f"{name} has status {status!r}" + (f": {message}" if message else ""))
    if "loss" not in document:
        return _failure("invalid_output", f'{name} has no "loss"')
    loss = document["loss"]
    if isinstance(loss, bool) or not isinstance(loss, int | float | str):
        return _failure("invalid_output", f'"loss" in {name} must be a number, got {json.dumps(loss)}')
    try:
        value = float(loss)
    except ValueError:
        return _failure("invalid_output", f'"loss" in {name} is not a number: {loss!r}')
    if not math.isfinite(value):
        return _failure("invalid_output", f'"loss" in {name} is not finite ({value}); the evaluation diverged?')
    return Result("success", value, None, message)
