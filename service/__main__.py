"""`python -m service`: the server-side commands."""

import sys

from service.cli import main

sys.exit(main())
