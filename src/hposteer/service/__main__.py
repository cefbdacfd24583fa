"""`python -m hposteer.service`: the server-side commands."""

import os
import sys

from hposteer.service.cli import main

try:
    try:
        code = main()
    finally:  # also after --help's SystemExit
        sys.stdout.flush()
except BrokenPipeError:  # `hposteer token list | head`: end quietly, as hposteer.client.console does for the client
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    code = 141
sys.exit(code)
