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


def test_make_test_latest_can_resolve_the_test_environment() -> None:
    """`make test-latest` compiles every extra and the dev group from pyproject.toml with `uv pip
    compile`, which knows no project of its own: a group or extra naming `hposteer[...]` cannot
    resolve there, nor can a group that includes another. Checked on pyproject.toml itself: a real
    resolution needs the package index (the newest releases), which the suite never reaches, and an
    offline one depends on which index pages uv's cache happens to hold (that once made this test
    fail on a fresh machine and pass on a used one)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = [*project["project"]["dependencies"]]
    for extra in project["project"]["optional-dependencies"].values():
        requirements += extra
    dev = project["dependency-groups"]["dev"]
    assert all(isinstance(entry, str) for entry in dev), "the dev group includes another group"
    requirements += dev
    names = [re.split(r"[\s\[<>=!~;@]", requirement, maxsplit=1)[0].lower() for requirement in requirements]
    assert "hposteer" not in names, "an extra or the dev group names the project itself"
    assert "pytest" in names


def _lock_diff(lock: Path, latest: Path) -> str:
    result = subprocess.run(
        ["python3", str(ROOT / "tools/lock_diff.py"), str(lock), str(latest)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return result.stdout


def test_lock_diff_compares_only_what_the_tests_install(tmp_path: Path) -> None:
    """The lock also pins the PyTorch image's torch and its CUDA libraries; the test environment
    never has them, so they are no move. A changed, a new and a dropped package are."""
    exported = subprocess.run(
        [_uv(), "export", "--frozen", "--offline", "--all-extras", "--group", "dev", "--no-hashes",
         "--no-emit-project", "--no-header", "--project", str(ROOT)],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    latest = tmp_path / "latest.txt"
    latest.write_text(exported)
    same = _lock_diff(ROOT / "uv.lock", latest)
    assert re.fullmatch(r"test-latest: 0 of \d+ packages differ from uv.lock\n", same), same

    moved = re.sub(r"^pytest==\S+", "pytest==999.0", exported, flags=re.M)
    moved = re.sub(r"^hypothesis==.*\n", "", moved, flags=re.M) + "left-pad==1.0\n"
    latest.write_text(moved)
    lines = _lock_diff(ROOT / "uv.lock", latest).splitlines()
    assert [line.split(":")[0].strip() for line in lines[:-1]] == ["hypothesis", "left-pad", "pytest"], lines
    assert lines[0].endswith("-> (not needed)") and lines[1] == "  left-pad: (new) -> 1.0"
    assert re.fullmatch(r"test-latest: 3 of \d+ packages differ from uv.lock", lines[-1])
