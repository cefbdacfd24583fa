"""The lock (docs/dependencies.md): uv.lock matches pyproject.toml, the images name only packages
the lock pins, and the wheelhouse check refuses what the lock did not record.

The images themselves are built from the lock by `make images` before the suite (.ci/run), and the
image tests run them; here the check's own refusals are exercised on real files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _uv() -> str:
    uv = os.environ.get("UV") or str(ROOT / ".tools/uv/bin/uv")
    if not Path(uv).is_file():
        pytest.fail(f"no uv at {uv}: `make` installs it into .tools/uv")
    return uv


def _locked_wheels() -> ModuleType:
    spec = importlib.util.spec_from_file_location("locked_wheels", ROOT / "images/locked_wheels.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lock() -> dict[str, set[str]]:
    versions: dict[str, set[str]] = {}
    for package in tomllib.loads((ROOT / "uv.lock").read_text())["package"]:
        versions.setdefault(package["name"], set()).add(package["version"])
    return versions


def test_the_lock_matches_pyproject() -> None:
    """`uv lock --locked` fails when pyproject.toml changed without `make lock`; offline, from the cache."""
    done = subprocess.run(
        [_uv(), "lock", "--locked", "--offline"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(
    os.environ.get("HPOSTEER_TEST_LATEST") == "1",
    reason="make test-latest runs on newer versions than uv.lock on purpose",
)
def test_the_installed_environment_is_the_locked_one() -> None:
    """Every distribution in the test environment is at a version uv.lock pins (nothing floats)."""
    from importlib import metadata

    lock = _lock()
    installed = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version for d in metadata.distributions()}
    assert installed, "no distributions found"
    strays = {name: version for name, version in installed.items() if version not in lock.get(name, {version})}
    unknown = sorted(set(installed) - set(lock))
    assert strays == {}, f"installed at versions uv.lock does not pin: {strays}"
    assert unknown == [], f"installed but not in uv.lock: {unknown}"


@pytest.mark.parametrize(
    "requirements",
    sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("*_images/*/requirements.txt")),
)
def test_image_requirements_name_locked_packages_without_versions(requirements: str) -> None:
    lock = _lock()
    names = [
        line.strip()
        for line in (ROOT / requirements).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert names, f"{requirements} names no package"
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name), (
            f"{requirements}: {name!r} pins or marks (the lock decides)"
        )
        assert re.sub(r"[-_.]+", "-", name).lower() in lock, f"{requirements}: {name} is not in uv.lock"


def _wheel(directory: Path, name: str, version: str, content: bytes) -> Path:
    path = directory / f"{name}-{version}-py3-none-any.whl"
    path.write_bytes(content)
    return path


def test_the_wheelhouse_check_refuses_what_the_lock_did_not_record(tmp_path: Path) -> None:
    locked_wheels = _locked_wheels()
    content = b"a wheel's bytes"
    digest = hashlib.sha256(content).hexdigest()
    files = {("optuna", "5.1.0"): {digest}, ("torch", "2.13.0"): {"0" * 64}}
    good = _wheel(tmp_path, "optuna", "5.1.0", content)
    assert locked_wheels.check([good], files, set()) == []

    tampered = _wheel(tmp_path, "Optuna", "5.1.0", b"other bytes")
    other_version = _wheel(tmp_path, "optuna", "5.0.0", content)
    unknown = _wheel(tmp_path, "left_pad", "1.0", content)
    problems = locked_wheels.check([tampered, other_version, unknown], files, set())
    assert len(problems) == 3, problems
    assert "sha256 is not one uv.lock recorded for optuna 5.1.0" in problems[0]
    assert "uv.lock pins optuna 5.1.0, not 5.0.0" in problems[1]
    assert "left-pad is not in uv.lock" in problems[2] and "make lock" in problems[2]


def test_an_unhashed_package_must_still_be_the_locked_version(tmp_path: Path) -> None:
    """torch's CPU build from the machine's disk: the locked version with a local label passes, no other."""
    locked_wheels = _locked_wheels()
    files = {("torch", "2.13.0"): {"0" * 64}}
    cpu = _wheel(tmp_path, "torch", "2.13.0+cpu", b"cpu build")
    newer = _wheel(tmp_path, "torch", "2.14.1+cpu", b"cpu build")
    assert locked_wheels.check([cpu], files, {"torch"}) == []
    assert locked_wheels.check([cpu], files, set()) != []  # without --unhashed its hash must match
    assert locked_wheels.check([newer], files, {"torch"}) == [
        "torch-2.14.1+cpu-py3-none-any.whl: uv.lock pins torch 2.13.0, not 2.14.1+cpu"
    ]
