"""Which packages a fresh resolution would move, against uv.lock (`make test-latest`).

    python3 tools/lock_diff.py uv.lock latest.txt

latest.txt is the `uv pip compile` output of the newest versions pyproject.toml allows. Prints one
line per package whose version differs, is new or is gone, then a count; always exits 0 (the
suite that follows decides whether the move is safe).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path) -> dict[str, set[str]]:
    versions: dict[str, set[str]] = {}
    for package in tomllib.loads(lock.read_text())["package"]:
        if "version" in package and package.get("source", {}).get("editable") is None:
            versions.setdefault(normalise(package["name"]), set()).add(package["version"])
    return versions


def compiled(requirements: Path) -> dict[str, str]:
    pins = {}
    for line in requirements.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if match:
            pins[normalise(match[1])] = match[2]
    return pins


def main(argv: list[str]) -> int:
    lock, latest = locked(Path(argv[0])), compiled(Path(argv[1]))
    moved = 0
    for name in sorted(set(lock) | set(latest)):
        before, after = lock.get(name, set()), latest.get(name)
        if after is None:
            print(f"  {name}: {' / '.join(sorted(before))} -> (not needed)")
        elif not before:
            print(f"  {name}: (new) -> {after}")
        elif after not in before:
            print(f"  {name}: {' / '.join(sorted(before))} -> {after}")
        else:
            continue
        moved += 1
    print(f"test-latest: {moved} of {len(latest)} packages differ from uv.lock")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
