"""Reading the evaluation's result file (output.json), per docs/evaluation-contract.md#outputjson.

Success needs all of: exit code 0, the file present, a JSON object, ``status`` missing or 0,
and a finite numeric ``loss`` (a numeric string is accepted, as PanDA's ``float()`` does).
Otherwise the failure class says what went wrong:

* ``payload_error``: the process exited non-zero, or ``status`` is not 0 (its ``message`` is kept);
* ``missing_output``: the process exited 0 and wrote no file;
* ``invalid_output``: the file is not JSON, not an object, has no ``loss``, or a loss that is
  not a finite number (the message says which).
"""

from __future__ import annotations

import json
import math
import os
import signal
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_OUTPUT_BYTES = 16 * 1024 * 1024
MAX_MESSAGE_CHARS = 4096


@dataclass(frozen=True)
class Result:
    outcome: str  # success | failure
    loss: float | None = None
    failure_class: str | None = None
    message: str = ""


def _failure(failure_class: str, message: str) -> Result:
    return Result("failure", None, failure_class, _clip(message))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def describe_exit(exit_code: int) -> str:
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = "an unknown signal"
        return f"the evaluation was killed by signal {-exit_code} ({name})"
    return f"the evaluation exited with code {exit_code}"


class _Unreadable(Exception):
    pass


def _load(path: Path) -> tuple[bool, Any]:
    """(present, document); raises _Unreadable with the reason the file cannot be used."""
    name = path.name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return False, None
    except OSError as exc:  # ELOOP: a symlink; others: permissions...
        what = "a symlink" if path.is_symlink() else f"unreadable ({exc.strerror})"
        raise _Unreadable(f"{name} is {what}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _Unreadable(f"{name} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_OUTPUT_BYTES + 1)
    if len(data) > MAX_OUTPUT_BYTES:
        raise _Unreadable(f"{name} is larger than {MAX_OUTPUT_BYTES // 2**20} MiB")
    try:
        return True, json.loads(data.decode("utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        raise _Unreadable(f"{name} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise _Unreadable(f"{name} is nested too deeply to read") from exc


def read_result(path: Path, exit_code: int) -> Result:
    """Classify an evaluation that ended with ``exit_code`` and left (or not) ``path``."""
    name = path.name
    try:
        present, document = _load(path)
        problem = None
    except _Unreadable as exc:
        present, document, problem = True, None, str(exc)
    if exit_code != 0:
        detail = ""
        if isinstance(document, dict) and document.get("message"):
            detail = f"; {name} says: {document['message']}"
        return _failure("payload_error", describe_exit(exit_code) + detail)
    if problem is not None:
        return _failure("invalid_output", problem)
    if not present:
        return _failure("missing_output", f"the evaluation exited 0 but wrote no {name}")
    if not isinstance(document, dict):
        return _failure("invalid_output", f"{name} must hold a JSON object, got {_json_type(document)}")
    status = document.get("status", 0)
    message = str(document.get("message") or "")
    if isinstance(status, bool) or status not in (0, None):
        return _failure("payload_error", f"{name} has status {status!r}" + (f": {message}" if message else ""))
    if "loss" not in document:
        return _failure("invalid_output", f'{name} has no "loss"')
    loss = document["loss"]
    if isinstance(loss, bool) or not isinstance(loss, int | float | str):
        return _failure("invalid_output", f'"loss" in {name} must be a number, got {_json_type(loss)}')
    try:
        value = float(loss)
    except ValueError:
        return _failure("invalid_output", f'"loss" in {name} is not a number: {loss!r}')
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        return _failure("invalid_output", f'"loss" in {name} is not finite ({loss!r}); did the training diverge?')
    return Result("success", value, None, _clip(message))


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)
