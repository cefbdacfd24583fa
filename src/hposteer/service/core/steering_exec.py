"""A user steering container: ``--steeringContainer IMG --steeringExec CMD``, or iDDS's docker form.

Two forms are accepted (docs/steering.md, "Steering containers"):

* ``--steeringContainer IMG`` with ``--steeringExec CMD``: CMD is the command run in IMG.
* ``--steeringExec`` alone, as iDDS's docker arguments:
  ``run --rm -v "$(pwd)":/HPOiDDS IMG /bin/bash -c "hpogrid generate ... --infile=/HPOiDDS/%IN ..."``.
  Only a safe subset is kept: the image, the command, ``-e NAME=VALUE``, the single
  ``$(pwd)`` mount (its container path becomes the working directory), ``-w`` naming that path,
  and ``--rm`` (ignored). Any other docker option is refused, naming it.

The command is an argument list (split as a POSIX shell would, never run by a host shell:
``hposteer.service.core.shell_words``). User text never becomes a container runtime flag: the service
builds every runtime setting itself. Placeholders are filled per word at run time
(``fill_placeholders``), in one pass, as iDDS's plain substitution does (docs/panda-compatibility.md#placeholders).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hposteer.service.core.shell_words import PWD_MARK, ShellSyntaxError, split_words

CONTAINER_OPTIMIZER = "container"  # the tasks.optimizer value of a container-steered task
WORKDIR = "/srv/workDir"  # the working directory's path in the container, unless the iDDS form names one
INPUT_FILE = "idds_input.json"  # %IN: iDDS's default name
OUTPUT_FILE = "output.json"  # %OUT: always output.json with phpo
MAX_ENV = 64

_IMAGE = re.compile(
    r"^(?:[A-Za-z0-9][A-Za-z0-9.-]*(?::[0-9]{1,5})?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MOUNT_PATH = re.compile(r"^/[A-Za-z0-9._/-]*$")
_SYSTEM_PATHS = ("/proc", "/sys", "/dev", "/etc", "/bin", "/sbin", "/usr", "/lib", "/lib64", "/tmp")
_PLACEHOLDER = re.compile(r"%(MAX_POINTS|NUM_POINTS|IN|OUT)")
_ACCEPTED = '--rm, -v "$(pwd)":/PATH, -e NAME=VALUE, -w /PATH (the mount\'s path)'


class SteeringExecError(ValueError):
    """The steering command cannot be used; the message says why and what is accepted."""

    def __init__(self, message: str, field: str = "steering_exec"):
        super().__init__(message)
        self.field = field  # the submission field at fault


@dataclass(frozen=True)
class SteeringCommand:
    image: str
    argv: tuple[str, ...]  # placeholders still in; the working directory already resolved
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = WORKDIR
    form: Literal["container", "idds"] = "container"

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "argv": list(self.argv),
            "env": dict(self.env),
            "workdir": self.workdir,
            "form": self.form,
        }


def parse_steering(steering_exec: str | None, steering_container: str | None) -> SteeringCommand:
    """The container steering a task asked for; ``SteeringExecError`` says what is wrong."""
    if not steering_exec or not steering_exec.strip():
        raise SteeringExecError("a steering container needs --steeringExec, the command to run in it")
    try:
        words = split_words(steering_exec)
    except ShellSyntaxError as exc:
        raise SteeringExecError(f"steeringExec {exc}") from None
    if steering_container is not None and steering_container.strip():
        image = _image(steering_container.strip(), "steering_container")
        if len(words) > 1 and words[0] == "run" and words[1].startswith("-"):
            raise SteeringExecError(
                "with --steeringContainer, steeringExec is the command run in the container, not docker "
                "arguments: drop either --steeringContainer or the 'run ...' part"
            )
        return SteeringCommand(image, _command(words, WORKDIR), form="container")
    return _parse_docker_form(words)


def _parse_docker_form(words: list[str]) -> SteeringCommand:
    if words[:1] == ["docker"]:
        words = words[1:]
    if words[:1] != ["run"]:
        raise SteeringExecError(
            "steeringExec without --steeringContainer must be a bare 'hpogrid generate ...' line, or iDDS's "
            'docker arguments: run --rm -v "$(pwd)":/PATH IMAGE COMMAND...; or give --steeringContainer IMAGE '
            "with steeringExec as the command"
        )
    options: dict[str, list[str]] = {"-v": [], "-e": [], "-w": []}
    i = _read_options(words, 1, options)
    if i >= len(words):
        raise SteeringExecError("steeringExec names no image after the docker options")
    image = _image(words[i])
    if len(options["-v"]) > 1:
        raise SteeringExecError(
            f"a second mount {_shown(options['-v'][1])!r} is refused: only one, the working directory"
        )
    path = _mount(options["-v"][0]) if options["-v"] else WORKDIR
    for value in options["-w"]:
        if _path(value, "-w") != path:
            raise SteeringExecError(f"-w {_shown(value)} must be the mounted working directory ({path})")
    if len(options["-e"]) > MAX_ENV:
        raise SteeringExecError(f"at most {MAX_ENV} -e variables are accepted")
    env = tuple((k, v.replace(PWD_MARK, path)) for k, v in map(_env, options["-e"]))
    return SteeringCommand(image, _command(words[i + 1 :], path), env, path, "idds")


_OPTION_NAMES = {"-v": "-v", "--volume": "-v", "-e": "-e", "--env": "-e", "-w": "-w", "--workdir": "-w"}


def _read_options(words: list[str], i: int, options: dict[str, list[str]]) -> int:
    """Collect the accepted docker options from ``words[i:]``; the index of the image."""
    while i < len(words) and words[i].startswith("-"):
        flag, eq, inline = words[i].partition("=") if words[i].startswith("--") else (words[i], "", "")
        i += 1
        if flag == "--rm" and not eq:
            continue
        if flag not in _OPTION_NAMES:
            raise SteeringExecError(
                f"docker option {_shown(words[i - 1])!r} is not allowed in steeringExec; accepted: {_ACCEPTED}"
            )
        if not eq:
            if i >= len(words):
                raise SteeringExecError(f"docker option {flag!r} needs a value")
            inline = words[i]
            i += 1
        options[_OPTION_NAMES[flag]].append(inline)
    return i


def _shown(word: str) -> str:
    return word.replace(PWD_MARK, "$(pwd)")


def _mount(value: str) -> str:
    host, sep, rest = value.partition(":")
    target, _, mode = rest.partition(":")
    if host != PWD_MARK or not sep:
        raise SteeringExecError(
            f'the mount {_shown(value)!r} is refused: the only mount allowed is the working directory, "$(pwd)":/PATH'
        )
    if mode not in ("", "rw"):
        raise SteeringExecError(f"the working directory mount must be writable, not {mode!r}")
    return _path(target, "the mount")


def _path(value: str, what: str) -> str:
    normal = posixpath.normpath(value) if value else value
    if (
        not _MOUNT_PATH.match(value)
        or ".." in value.split("/")
        or normal == "/"
        or any(normal == p or normal.startswith(p + "/") for p in _SYSTEM_PATHS)
    ):
        raise SteeringExecError(
            f"{what} path {_shown(value)!r} is refused: an absolute path of letters, digits, '.', '_', '-', "
            "not '/' nor a system directory"
        )
    return normal


def _env(value: str) -> tuple[str, str]:
    name, eq, text = value.partition("=")
    if not eq:
        raise SteeringExecError(f"-e {name} would pass a variable of the host through; give -e {name}=VALUE")
    if not _ENV_NAME.match(name):
        raise SteeringExecError(f"-e {_shown(value)!r}: {name!r} is not a valid variable name")
    return name, text


def _image(text: str, field: str = "steering_exec") -> str:
    if len(text) > 255 or not _IMAGE.match(text):
        raise SteeringExecError(f"{_shown(text)!r} is not an image reference (NAME[:TAG][@sha256:DIGEST])", field)
    return text


def _command(words: list[str], workdir: str) -> tuple[str, ...]:
    if not words:
        raise SteeringExecError("steeringExec names no command to run in the steering container")
    return tuple(w.replace(PWD_MARK, workdir) for w in words)


def fill_placeholders(text: str, values: Mapping[str, str]) -> str:
    """Replace %MAX_POINTS, %NUM_POINTS, %IN and %OUT in one pass (no recursion, no word boundary)."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def placeholder_values(*, num_points: int, max_points: int) -> dict[str, str]:
    return {"MAX_POINTS": str(max_points), "NUM_POINTS": str(num_points), "IN": INPUT_FILE, "OUT": OUTPUT_FILE}
