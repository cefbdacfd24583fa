"""The published wheel: one top-level package, ``hposteer``, and commands that run our code only.

A wheel built from this checkout is installed into a fresh virtual environment (no editable
install, no ``src/`` on the path). Its dependencies come from the suite's own environment through a
path entry, so nothing is downloaded and the wheel's own files are the only ``hposteer`` there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _uv() -> str:
    uv = os.environ.get("UV") or str(ROOT / ".tools/uv/bin/uv")
    if not Path(uv).is_file():
        pytest.fail(f"no uv at {uv}: `make` installs it into .tools/uv")
    return uv


def _run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=240, check=False)


class Installed:
    def __init__(self, venv: Path, site: Path, record: list[str]) -> None:
        self.venv, self.site, self.record = venv, site, record

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    built = _run(_uv(), "build", "--offline", "--wheel", "--out-dir", tmp / "dist", ROOT, cwd=ROOT)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp / "dist").glob("hposteer-*.whl")
    venv = tmp / "venv"
    made = _run(_uv(), "venv", "--quiet", "--python", sys.executable, venv)
    assert made.returncode == 0, made.stderr
    pip = _run(_uv(), "pip", "install", "--quiet", "--offline", "--no-deps", "--python", venv / "bin/python", wheel)
    assert pip.returncode == 0, pip.stderr
    (site,) = (venv / "lib").glob("python3*/site-packages")
    # the dependencies: this environment's site-packages, appended as a plain path (its .pth files,
    # the editable install of the checkout among them, are not processed from there)
    (site / "zz_suite_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (dist_info,) = site.glob("hposteer-*.dist-info")
    record = [line.split(",", 1)[0] for line in (dist_info / "RECORD").read_text().splitlines() if line]
    return Installed(venv, site, record)


def test_the_wheel_installs_only_the_hposteer_package(installed: Installed) -> None:
    in_site = {path.split("/", 1)[0] for path in installed.record if not path.startswith("..")}
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert in_site == {"hposteer", f"hposteer-{version}.dist-info"}, sorted(in_site)
    scripts = {Path(path).name for path in installed.record if path.startswith("..")}
    assert scripts == {"hposteer", "phpo"}, sorted(scripts)
    assert not (installed.site / "service").exists() and not (installed.site / "client").exists()


def test_the_version_is_one_value(installed: Installed) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    shown = _run(installed.python, "-c", "import hposteer; print(hposteer.__version__, hposteer.__file__)")
    assert shown.returncode == 0, shown.stderr
    number, where = shown.stdout.split()
    assert number == version
    assert Path(where).is_relative_to(installed.site), where
    cli = _run(installed.venv / "bin/hposteer", "--version")
    assert cli.stdout.strip() == f"hposteer {version}", cli.stdout + cli.stderr


def test_commands_ignore_same_named_modules_in_the_working_directory(installed: Installed, tmp_path: Path) -> None:
    """A user's own ``service.py`` or ``client.py`` beside them is never what the commands run."""
    marker = tmp_path / "ran"
    for name in ("service", "client", "hposteer_service"):
        (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write({name!r})\n")
    (tmp_path / "hposteer").mkdir()  # a folder of that name too (a checkout's parent, say)
    (tmp_path / "hposteer" / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write('hposteer')\n")
    bin_dir = installed.venv / "bin"
    for argv in (
        [bin_dir / "hposteer", "serve", "--help"],
        [bin_dir / "hposteer", "token", "--help"],
        [installed.python, "-P", "-m", "hposteer.service", "serve", "--help"],
        [bin_dir / "phpo", "--help"],
    ):
        result = _run(*argv, cwd=tmp_path)
        assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
        assert "usage:" in result.stdout, result.stdout
    assert not marker.exists(), f"a command ran the working directory's {marker.read_text()}.py"
