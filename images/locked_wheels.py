"""Fill an image's wheelhouse with exactly the wheels that uv.lock pins (docs/dependencies.md).

    python3 images/locked_wheels.py WHEELHOUSE REQUIREMENTS [--unhashed NAME ...] [pip wheel options]

REQUIREMENTS names the image's top-level packages without versions. The lock's exact versions come
in as pip constraints (``uv export``), so every transitive package is the one the tests ran with;
then each wheel pip produced is checked against the lock: a package the lock does not know, or a
file whose sha256 is not one the lock recorded, stops the build. ``--unhashed NAME`` accepts the
locked version of NAME from a file the lock cannot know (the CPU build of torch that lies on this
machine's disk has a ``+cpu`` local version and a hash of its own). The wheelhouse ends up holding
these wheels and nothing else, so an image never installs a stale wheel of an earlier build.

Runs with the host's ``python3`` (standard library only); ``UV`` names the uv binary.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_files(lock: Path) -> dict[tuple[str, str], set[str]]:
    """(name, version) -> the sha256 digests of every file uv.lock records for that release."""
    packages = tomllib.loads(lock.read_text())["package"]
    files: dict[tuple[str, str], set[str]] = {}
    for package in packages:
        digests = {w["hash"].removeprefix("sha256:") for w in package.get("wheels", [])}
        if "sdist" in package and "hash" in package["sdist"]:
            digests.add(package["sdist"]["hash"].removeprefix("sha256:"))
        files[(normalise(package["name"]), package["version"])] = digests
    return files


def wheel_release(path: Path) -> tuple[str, str]:
    name, version = path.name.split("-")[:2]
    return normalise(name), version


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check(wheels: list[Path], files: dict[tuple[str, str], set[str]], unhashed: set[str]) -> list[str]:
    """What is wrong with these wheels, one line each; empty when each is a locked artifact."""
    problems = []
    versions: dict[str, list[str]] = {}
    for name, version in files:
        versions.setdefault(name, []).append(version)
    for wheel in wheels:
        name, version = wheel_release(wheel)
        if name not in versions:
            problems.append(f"{wheel.name}: {name} is not in uv.lock (add it to pyproject.toml, then `make lock`)")
        elif name in unhashed:
            if version.split("+")[0] not in versions[name]:
                problems.append(f"{wheel.name}: uv.lock pins {name} {' or '.join(versions[name])}, not {version}")
        elif version not in versions[name]:
            problems.append(f"{wheel.name}: uv.lock pins {name} {' or '.join(versions[name])}, not {version}")
        elif sha256(wheel) not in files[(name, version)]:
            problems.append(f"{wheel.name}: its sha256 is not one uv.lock recorded for {name} {version}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    wheelhouse, requirements, rest = Path(argv[0]), Path(argv[1]), argv[2:]
    unhashed: set[str] = set()
    pip_options: list[str] = []
    while rest:
        option = rest.pop(0)
        if option == "--unhashed" and rest:
            unhashed.add(normalise(rest.pop(0)))
        else:
            pip_options.append(option)
    uv = os.environ.get("UV", "uv")
    with tempfile.TemporaryDirectory(prefix="hposteer-wheels.") as work:
        constraints = Path(work, "constraints.txt")
        subprocess.run(
            [uv, "export", "--quiet", "--frozen", "--all-extras", "--all-groups", "--no-emit-project",
             "--no-hashes", "--no-header", "--no-annotate", "--output-file", str(constraints)],
            cwd=ROOT, check=True,
        )  # fmt: skip
        built = Path(work, "wheels")
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--wheel-dir",
             str(built), "--constraint", str(constraints), "--requirement", str(requirements), *pip_options],
            check=True,
        )  # fmt: skip
        wheels = sorted(built.glob("*.whl"))
        problems = check(wheels, locked_files(ROOT / "uv.lock"), unhashed)
        if problems:
            print(f"{requirements}: wheels that are not what uv.lock pins:", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
        wheelhouse.mkdir(parents=True, exist_ok=True)
        for old in wheelhouse.glob("*.whl"):
            old.unlink()
        for wheel in wheels:
            shutil.copy2(wheel, wheelhouse / wheel.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
