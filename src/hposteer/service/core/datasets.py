"""Training datasets: the rules for names and locations (docs/datasets.md).

A dataset is a named, owner-scoped list of files. Its file names become file names in the
evaluation's working directory and are comma-joined into ``%IN_DATA``, so they are plain
names from a small alphabet (no ``/``, no ``,``, no spaces, not ``.`` or ``..``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

DATASET_NAME_MAX = 256
FILE_NAME_MAX = 255
LOCATION_MAX = 4096
SHA256 = re.compile(r"^[0-9a-f]{64}$")

_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._+=@-]*$")
URL_SCHEMES = ("http", "https", "file")


def dataset_name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid dataset name, or None when it is one."""
    if not isinstance(name, str) or not name:
        return "a dataset name is required"
    if len(name) > DATASET_NAME_MAX:
        return f"dataset name is {len(name)} characters long; at most {DATASET_NAME_MAX} are allowed"
    if not _DATASET_NAME.match(name):
        return (
            f"invalid dataset name {name!r}: use letters, digits, '.', '_', '-' and ':', "
            "starting with a letter or digit (e.g. user.alice.mnist:v1)"
        )
    return None


def file_name_problem(name: object) -> str | None:
    """Why ``name`` is not a plain file name for a working directory, or None when it is one."""
    if not isinstance(name, str) or not name:
        return "a file name is required"
    if len(name) > FILE_NAME_MAX:
        return f"file name is {len(name)} characters long; at most {FILE_NAME_MAX} are allowed"
    if name in (".", "..") or not _FILE_NAME.match(name):
        return (
            f"invalid file name {name!r}: a plain name of letters, digits, '.', '_', '-', '+', '=' or '@' "
            "(no '/', ',' or spaces; not '.' or '..'; not starting with '-')"
        )
    return None


def sha256_problem(value: object) -> str | None:
    if not isinstance(value, str) or not SHA256.match(value):
        return f"sha256 must be 64 lower-case hex digits, got {value!r}"
    return None


def location_problem(location: object) -> str | None:
    """Why ``location`` is not an absolute path or an http(s)/file URL, or None when it is one."""
    if not isinstance(location, str) or not location:
        return "a location (absolute path or http(s)/file URL) is required"
    if len(location) > LOCATION_MAX:
        return f"location is over {LOCATION_MAX} characters"
    if any(ord(c) < 32 for c in location):
        return "location holds control characters"
    if location.startswith("/"):
        return None
    parts = urlsplit(location)
    if parts.scheme not in URL_SCHEMES:
        return (
            f"location {location!r} is neither an absolute path nor a URL with scheme "
            f"{', '.join(URL_SCHEMES)} (e.g. /data/train.h5 or https://host/train.h5)"
        )
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            return f"file URL {location!r} must name an absolute path on the site (file:///data/train.h5)"
    elif not parts.netloc:
        return f"URL {location!r} has no host"
    return None


@dataclass(frozen=True)
class DatasetFile:
    """One file of a dataset as jobs carry it."""

    name: str
    size: int | None
    sha256: str | None
    location: str | None  # registered: where the sites find it; None for uploaded files
