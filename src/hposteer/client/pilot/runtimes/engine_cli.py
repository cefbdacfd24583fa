"""What the runtimes that drive an engine's command line (``podman``, ``apptainer``) share.

Task text reaches such an engine only as single argv elements, never through a shell, and only
after these checks: an image reference must look like one (it can never become an option), and
the working directory must be a path the engine's mount syntax cannot misread.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from hposteer.client.pilot.runtimes.base import RuntimeStartError

ENGINE_TIMEOUT_S = 60.0  # an engine command (inspect, stop, rm) that takes longer is broken
# A registry/name:tag@digest reference, or an absolute path (apptainer's SIF files): never an option.
_IMAGE = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9._/:@+-]*|/[A-Za-z0-9._/+@-]+)")
MAX_IMAGE_CHARS = 512


def check_image(runtime: str, reference: str) -> str:
    """``reference`` if it is a plain image reference; RuntimeStartError saying why not otherwise."""
    if len(reference) > MAX_IMAGE_CHARS or not _IMAGE.fullmatch(reference) or ".." in reference.split("/"):
        raise RuntimeStartError(
            f"runtime {runtime}: {reference[:100]!r} is not an image reference this pilot accepts "
            "(letters, digits and ._/:@+- only, e.g. 'hposteer/base:bookworm')"
        )
    return reference


def check_bind_source(runtime: str, workdir: Path) -> str:
    """The working directory as a mount source; refused when the engine's mount syntax would split it."""
    text = str(workdir)
    if not workdir.is_absolute() or any(c in text for c in ",:\n\r\0"):
        raise RuntimeStartError(
            f"runtime {runtime}: the working directory {text!r} cannot be mounted into the container: it must be "
            "absolute and free of ',' and ':' (choose another --workdir)"
        )
    return text


def run_engine(
    runtime: str, argv: Sequence[str], timeout_s: float = ENGINE_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run one engine command to its end (output captured); RuntimeStartError if it cannot run at all."""
    try:
        return subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout_s, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeStartError(f"runtime {runtime}: `{' '.join(argv[:3])} ...` failed: {exc}") from exc


def last_line(text: str) -> str:
    """The engine's error message: its last non-empty line of output."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def alive(pid: str) -> bool:
    """Whether the process ``pid`` (a container label's text) runs on this host."""
    if not pid.isdigit() or int(pid) < 2:
        return False
    try:
        os.kill(int(pid), 0)  # signal 0 sends nothing: it only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
