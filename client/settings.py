"""Where the client finds its server and token: options first, then the environment."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_SERVER = "http://127.0.0.1:8750"


def resolve_server(option: str | None) -> str:
    return option or os.environ.get("HPOSTEER_SERVER") or DEFAULT_SERVER


def resolve_token(option: str | None) -> str | None:
    """``--token``, else $HPOSTEER_TOKEN, else the file named by $HPOSTEER_TOKEN_FILE."""
    if option:
        return option.strip()
    if os.environ.get("HPOSTEER_TOKEN"):
        return os.environ["HPOSTEER_TOKEN"].strip()
    path = os.environ.get("HPOSTEER_TOKEN_FILE")
    if path:
        try:
            return Path(path).expanduser().read_text().strip() or None
        except OSError as exc:
            raise SystemExit(f"error: cannot read HPOSTEER_TOKEN_FILE {path}: {exc.strerror}") from exc
    return None


MISSING_TOKEN_HINT = (
    "no token: pass --token, or set HPOSTEER_TOKEN (or HPOSTEER_TOKEN_FILE). An operator creates one "
    "on the server host with `hposteer token create --role user --owner NAME`."
)
