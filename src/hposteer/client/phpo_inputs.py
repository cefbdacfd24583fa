"""What phpo reads from the user: --loadJson (with PanDA's rules), the recorded command line,
the search-space and segment files. Every problem names the option and the file.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hposteer.client.phpo_options import BOUNDS, BY_DEST, SECRET_DESTS


class PhpoError(Exception):
    """A problem with the user's options or files; the message says what and where."""


def warn(message: str) -> None:
    print(f"WARNING : {message}", file=sys.stderr)


def read_json(path: str, option: str) -> Any:
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PhpoError(f"{option} {path}: no such file (looked in {Path.cwd()})") from None
    except IsADirectoryError:
        raise PhpoError(f"{option} {path}: is a directory, not a JSON file") from None
    except UnicodeDecodeError:
        raise PhpoError(f"{option} {path}: not a text file (not UTF-8)") from None
    except OSError as exc:
        raise PhpoError(f"{option} {path}: cannot read it ({exc.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PhpoError(f"{option} {path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number"
    )


def _int_if_numeric(value: Any) -> Any:
    """PanDA turns every string that int() accepts into an int, and leaves everything else alone."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def _recorded(key: str, value: Any) -> str:
    if value is True:
        return f" --{key}"
    if isinstance(value, str):
        return f" --{key}='{value}'"
    return f" --{key}={value}"


def _typed_dests(argv: Sequence[str]) -> set[str]:
    """The dests of the options the user typed (``--maxPoints 5``, ``--maxPoints=5``)."""
    flags = {flag: option.dest for option in BY_DEST.values() for flag in option.flags}
    return {flags[arg.split("=", 1)[0]] for arg in argv if arg.split("=", 1)[0] in flags}


def merge_json(options: argparse.Namespace, path: str, argv: Sequence[str] = ()) -> str:
    """Apply a --loadJson file as PanDA does: known keys override the command line.

    Returns what the file adds to the recorded command line.
    """
    loaded = read_json(path, "--loadJson")
    if not isinstance(loaded, dict):
        raise PhpoError(f"--loadJson {path}: must hold a JSON object of option names, got {_type_name(loaded)}")
    recorded = ""
    typed = _typed_dests(argv)
    for key, raw in loaded.items():
        if key not in vars(options):
            close = difflib.get_close_matches(key, [o.dest for o in BY_DEST.values()], n=1, cutoff=0.6)
            hint = f": did you mean {close[0]}?" if close else " (keys are phpo's option names, e.g. maxPoints)"
            warn(f"ignore unknown option {key} in {path}{hint}")
            continue
        value = _int_if_numeric(raw)
        if key in typed and getattr(options, key) != value:
            warn(
                f"{key} in {path} ({value!r}) overrides --{key} {getattr(options, key)!r} from the command line "
                "(as in PanDA, --loadJson wins)"
            )
        setattr(options, key, value)
        if key not in SECRET_DESTS:
            recorded += _recorded(key, value)
    return recorded


def command_line(argv: Sequence[str]) -> str:
    """The command line as typed (PanDA's cliParams), with the token left out."""
    words = ["phpo"]
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--token":
            skip = True
            continue
        if arg.startswith("--token="):
            continue
        prefix, value = "", arg
        match = re.match(r"(-[^=]+=)(.+)", arg)
        if match:
            prefix, value = match.groups()
        words.append(prefix + (f'"{value}"' if re.search(r"[*' ]", value) else value))
    return " ".join(words)


def check_values(options: argparse.Namespace, source: str) -> None:
    """Types and ranges after the merge: a JSON file can put anything anywhere."""
    if isinstance(options.architecture, dict):  # PanDA also takes the dictionary form
        options.architecture = json.dumps(options.architecture, sort_keys=True)
    for dest, option in BY_DEST.items():
        value = getattr(options, dest, None)
        flag = option.flags[-1]
        if value is None:
            continue
        if option.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise PhpoError(f"{flag} ({dest}{source}) must be an integer, got {json.dumps(value)}")
        if option.kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                raise PhpoError(f"{flag} ({dest}{source}) must be a number, got {json.dumps(value)}")
            value = float(value)
            setattr(options, dest, value)
        if option.kind == "str" and not isinstance(value, str):
            raise PhpoError(f"{flag} ({dest}{source}) must be a string, got {json.dumps(value)}")
        if option.kind == "flag" and not isinstance(value, bool):
            raise PhpoError(f"{flag} ({dest}{source}) must be true or false, got {json.dumps(value)}")
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise PhpoError(f"{flag} ({dest}{source}) cannot be encoded as UTF-8: {value!r}") from None
        low, high = BOUNDS.get(dest, (None, None))
        if low is not None and value < low:
            raise PhpoError(f"{flag} ({dest}{source}) must be at least {low}, got {value}")
        if high is not None and value > high:
            raise PhpoError(f"{flag} ({dest}{source}) must be at most {high}, got {value}")


def read_segments(path: str) -> list[dict[str, Any]]:
    """--segmentSpecFile: a list of {"name", "files"?, "datasets"?}; PanDA adds "id" = the index."""
    segments = read_json(path, "--segmentSpecFile")
    if not isinstance(segments, list) or not segments:
        raise PhpoError(
            f'--segmentSpecFile {path}: must hold a non-empty JSON list of {{"name": ...}} objects, '
            f"got {_type_name(segments)}"
        )
    for i, segment in enumerate(segments):
        if not isinstance(segment, dict) or not isinstance(segment.get("name"), str):
            raise PhpoError(f'--segmentSpecFile {path}: entry {i} must be an object with a string "name"')
        for key in ("files", "datasets"):
            if key in segment and not (
                isinstance(segment[key], list) and all(isinstance(f, str) for f in segment[key])
            ):
                raise PhpoError(
                    f'--segmentSpecFile {path}: entry {i} ("{segment["name"]}"): "{key}" must be a list of strings'
                )
    return [{**segment, "id": i} for i, segment in enumerate(segments)]


def read_search_space(path: str, n_segments: int | None) -> dict[str, Any] | list[Any]:
    """--searchSpaceFile, shaped as PanDA sends it (docs/panda-compatibility.md#segments).

    Without segments: one object. With segments: one object is cloned for every segment as
    ``{"model_id": i, "search_space": ...}``; a list is sent unchanged.
    """
    space = read_json(path, "--searchSpaceFile")
    if n_segments is None:
        if not isinstance(space, dict):
            raise PhpoError(
                f"--searchSpaceFile {path}: must hold a JSON object (parameter name -> "
                f"{{method, dimension}}), got {_type_name(space)}; a list needs --segmentSpecFile"
            )
        return space
    if isinstance(space, dict):
        return [{"model_id": i, "search_space": space} for i in range(n_segments)]
    if isinstance(space, list):
        return space
    raise PhpoError(
        f"--searchSpaceFile {path}: must hold a JSON object, or with --segmentSpecFile a list of "
        f"{{model_id, search_space}}, got {_type_name(space)}"
    )
