"""The programs inside steering images start as the image starts them, without the service's dependencies.

The image holds hposteer's wheel without dependencies plus one optimiser library; import-linter
checks the imports statically (pyproject.toml), these check what a fresh interpreter loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hposteer.service.steering.image_programs import warm_client

# Only an optimiser being built may import its library; the service's stack is never there.
NOT_AT_IMPORT = ["optuna", "nevergrad", "skopt", "numpy", "fastapi", "starlette", "sqlalchemy", "docker", "httpx",
                 "pydantic", "hposteer.service.steering.containers", "hposteer.service.store"]  # fmt: skip


def test_importing_the_image_programs_loads_no_optimiser_library_and_nothing_of_the_service() -> None:
    code = (
        "import sys\n"
        "import hposteer.service.steering.image_programs.hpogrid_generate\n"
        "import hposteer.service.steering.image_programs.prefork_server\n"
        f"print([m for m in {NOT_AT_IMPORT!r} if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_the_warm_client_runs_isolated_by_file_and_without_a_server_runs_the_one_shot_program(
    tmp_path: Path,
) -> None:
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"act": {"method": "categorical", "dimension": {"categories": ["relu", "tanh"]}}}))
    env = {k: v for k, v in os.environ.items() if k != warm_client.SOCKET_ENV}
    command = [sys.executable, "-I", "-S", warm_client.__file__, "generate", "-n", "2", "-s", str(space), "-l", "grid"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "running without the steering server" in done.stderr
    points = json.loads(done.stdout)
    assert sorted(p["act"] for p in points) == ["relu", "tanh"]
