"""The steering images (make images) run `hpogrid generate` with the in-process runner's code:
the same seed and history give the same points, under the hardening a steering container gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hposteer.service.steering.image_programs.hpogrid_generate import run
from tests.conftest import docker_with_image

SPACE = {
    "x": {"method": "uniform", "dimension": {"low": -1, "high": 1}},
    "n": {"method": "uniformint", "dimension": {"low": 1, "high": 8}},
}
POINTS = [[{"x": 0.1, "n": 2}, 0.5], [{"x": -0.4, "n": 7}, 100000.0], [{"x": 0.3, "n": 4}, None]]


@pytest.mark.parametrize("lib", ["nevergrad", "skopt", "optuna"])
def test_a_steering_image_gives_the_in_process_points(tmp_path: Path, lib: str) -> None:
    client = docker_with_image(f"hposteer/steering-{lib}")
    (tmp_path / "idds_input.json").write_text(json.dumps({"points": POINTS, "opt_space": SPACE}))
    tmp_path.chmod(0o777)
    flags = ["-n", "4", "--max_point=20", "--seed", "7", f"-l={lib}"]  # hpogrid's '-l=' form, read leniently
    client.containers.run(
        f"hposteer/steering-{lib}",
        ["hpogrid", "generate", *flags, "--infile", "/work/idds_input.json", "--outfile", "/work/output.json"],
        working_dir="/work",
        volumes={str(tmp_path): {"bind": "/work", "mode": "rw"}},
        user="65534:65534",
        read_only=True,
        tmpfs={"/tmp": ""},
        network_mode="none",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        remove=True,
    )
    in_container = json.loads((tmp_path / "output.json").read_text())
    in_process = run(["generate", *flags, "--infile", str(tmp_path / "idds_input.json")])
    assert in_container == in_process and len(in_container) == 3, "4 wanted, 1 pending"
