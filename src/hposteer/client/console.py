"""What every console entry point (hposteer, phpo, python -m hposteer.service) does about its terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as `seq 100000 | head` ends


def quiet_on_broken_pipe(run: Callable[[], int]) -> int:
    """Run ``run``; when the reader of stdout goes away (``hposteer task list | head``), end quietly.

    Python would print a BrokenPipeError traceback, and another one when it flushes stdout on exit;
    pointing stdout at /dev/null stops both. The exit code is the shell's for a command killed by SIGPIPE.
    """
    try:
        try:
            return run()
        finally:  # also after --help's SystemExit, whose text still sits in stdout's buffer
            sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
        return EXIT_BROKEN_PIPE
