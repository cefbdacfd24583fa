"""Where the client finds its server and token: options first, then the environment.

The token's recommended home is a file (``--token-file`` or $HPOSTEER_TOKEN_FILE): a token on a
command line is visible to every user of the machine through ``ps``.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_SERVER = "http://127.0.0.1:8750"


class SettingError(SystemExit):
    """A server URL or token source that cannot be used; the message says what, where and how to fix it."""

    def __init__(self, message: str):
        super().__init__(f"error: {message}")
        self.message = message


def resolve_server(option: str | None) -> str:
    """``--server``, else $HPOSTEER_SERVER, else the default; refuses a URL without http:// or https://."""
    source = "--server" if option else "HPOSTEER_SERVER"
    url = option or os.environ.get("HPOSTEER_SERVER") or DEFAULT_SERVER
    return check_server_url(url, source)


def check_server_url(url: str, source: str = "--server") -> str:
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https") and urlsplit(url).netloc:
        return url.rstrip("/")
    bare = url.split("://", 1)[-1]
    raise SettingError(f"{source} {url!r} is not a server URL: add http:// (or https://) in front, e.g. http://{bare}")


def resolve_token(option: str | None, file_option: str | None = None) -> str | None:
    """``--token-file``, else ``--token``, else $HPOSTEER_TOKEN, else the file named by $HPOSTEER_TOKEN_FILE."""
    if file_option:
        return read_token_file(file_option, "--token-file")
    if option:
        return option.strip()
    if os.environ.get("HPOSTEER_TOKEN"):
        return os.environ["HPOSTEER_TOKEN"].strip()
    path = os.environ.get("HPOSTEER_TOKEN_FILE")
    if path:
        return read_token_file(path, "HPOSTEER_TOKEN_FILE")
    return None


def read_token_file(path: str, source: str) -> str:
    """The token in ``path``; a missing, unreadable or empty file is an error that names the path."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise SettingError(
            f"{source} {path}: no such file (looked at {file.absolute()}); create it on the server host with "
            "`hposteer token create --role user --owner NAME --output FILE`"
        ) from None
    except IsADirectoryError:
        raise SettingError(f"{source} {path}: is a directory, not a token file") from None
    except UnicodeDecodeError:
        raise SettingError(f"{source} {path}: not a text file (a token file holds one line)") from None
    except OSError as exc:
        raise SettingError(f"{source} {path}: cannot read it ({exc.strerror})") from None
    if not text:
        raise SettingError(f"{source} {path}: the file is empty; it must hold the token (one line)")
    return text


MISSING_TOKEN_HINT = (
    "no token: pass --token-file FILE, or set HPOSTEER_TOKEN_FILE to the file that holds it. An operator "
    "creates one on the server host with `hposteer token create --role user --owner NAME --output FILE`."
)

REFUSED_TOKEN_HINT = (
    "check which token you use (--token-file, HPOSTEER_TOKEN_FILE or HPOSTEER_TOKEN), or ask the operator for a new one"
)


def refused(server_message: str) -> str:
    """What to print when the server answers 401 to a token that was sent."""
    return f"the server refused the token: {server_message}; {REFUSED_TOKEN_HINT}"
