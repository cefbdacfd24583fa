"""Which packages a fresh resolution would move, against uv.lock (`make test-latest`).

    python3 tools/lock_diff.py uv.lock latest.txt

latest.txt is the `uv pip compile` output of the newest versions pyproject.toml allows for every
extra and the `dev` group. Only the part of uv.lock those install is compared (the lock also holds
the `pytorch-image` group, torch and its CUDA libraries, which the test environment never has).
Prints one line per package whose version differs, is new or is gone, then a count; always exits 0
(the suite that follows decides whether the move is safe).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


PROJECT = "hposteer"
GROUPS = ("dev",)  # what `make test-latest` compiles besides every extra


def locked(lock: Path) -> dict[str, set[str]]:
    """Versions uv.lock gives the packages the test environment installs (every extra, GROUPS)."""
    packages = tomllib.loads(lock.read_text())["package"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for package in packages:
        by_name.setdefault(normalise(package["name"]), []).append(package)
    root = by_name[PROJECT][0]
    pending = list(root.get("dependencies", []))
    for extra in root.get("optional-dependencies", {}).values():
        pending += extra
    for group in GROUPS:
        pending += root.get("dev-dependencies", {}).get(group, [])
    seen: set[tuple[str, str]] = set()
    versions: dict[str, set[str]] = {}
    while pending:
        edge = pending.pop()
        name = normalise(edge["name"])
        for package in by_name.get(name, []):
            if "version" in edge and package.get("version") != edge["version"]:
                continue  # the lock holds several versions; this edge names one
            for part in ("", *edge.get("extra", [])):
                if (key := (f"{name}=={package.get('version')}", part)) in seen:
                    continue
                seen.add(key)
                deps = (
                    package.get("dependencies", [])
                    if not part
                    else package.get("optional-dependencies", {}).get(part, [])
                )
                pending += deps
            if name != PROJECT and "version" in package:
                versions.setdefault(name, set()).add(package["version"])
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
