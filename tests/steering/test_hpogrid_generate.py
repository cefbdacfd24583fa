"""The steering images' `hpogrid generate`: iDDS's files, hpogrid's flags, the in-process runner's points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hposteer.core.space_json import parse_search_space
from hposteer.service.core.optimizer_spec import parse_optimizer_name
from hposteer.service.core.steering import Observation
from hposteer.service.steering.image_programs.hpogrid_generate import GenerateError, main, run
from hposteer.service.steering.optimizers.warm import generate

SPACE = {
    "x": {"method": "uniform", "dimension": {"low": -1, "high": 1}},
    "n": {"method": "uniformint", "dimension": {"low": 1, "high": 8}},
    "act": {"method": "categorical", "dimension": {"categories": ["relu", "tanh"]}},
}
DONE = [[{"x": 0.1, "n": 2, "act": "relu"}, 0.5], [{"x": -0.4, "n": 7, "act": "tanh"}, 1e5]]


def _input(tmp_path: Path, points: list[object], space: object = SPACE) -> str:
    path = tmp_path / "idds_input.json"
    path.write_text(json.dumps({"points": points, "opt_space": space}))
    return str(path)


@pytest.mark.parametrize("lib", [["-l", "nevergrad", "--method", "RandomSearch"], ["--lib=skopt"], ["-l=optuna"]])
def test_the_same_seed_and_history_give_the_in_process_runners_points(tmp_path: Path, lib: list[str]) -> None:
    infile = _input(tmp_path, DONE)
    got = run(["generate", "-n", "3", "-i", infile, "-m", "20", "--seed", "7", *lib])
    spec_name = {"-l": "nevergrad:RandomSearch", "--lib=skopt": "skopt:GP", "-l=optuna": "tpe"}[lib[0]]
    history = [Observation(i + 1, p, loss) for i, (p, loss) in enumerate(DONE)]  # 1e5 told as a loss, as hpogrid
    expected = generate(parse_optimizer_name(spec_name), parse_search_space(SPACE), history, 3, 7, budget=20)
    assert got == expected and len(got) == 3


def test_pending_points_count_against_n_point_and_segments_answer_per_model(tmp_path: Path) -> None:
    pending = [[{"x": 0.0, "n": 1, "act": "relu"}, None]] * 2
    assert run(["generate", "-n", "3", "-i", _input(tmp_path, DONE + pending), "-l", "nevergrad"]) != []
    assert len(run(["generate", "-n", "3", "-i", _input(tmp_path, DONE + pending), "-l", "nevergrad"])) == 1
    assert run(["generate", "-n", "2", "-i", _input(tmp_path, pending), "-l", "nevergrad"]) == []
    segmented = [{"model_id": 0, "search_space": SPACE}, {"model_id": 1, "search_space": SPACE}]
    points = [[[0, DONE[0][0]], 0.5], [[1, DONE[1][0]], None]]
    out = run(["generate", "-n", "2", "-i", _input(tmp_path, points, segmented), "--lib", "nevergrad"])
    assert [p[0] for p in out] == [0, 0, 1], "two for model 0, one for model 1 (it has one pending)"
    assert all(isinstance(p[1], dict) and set(p[1]) == set(SPACE) for p in out)


def test_without_infile_the_space_file_is_used(tmp_path: Path) -> None:
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    assert len(run(["generate", "-n", "4", "-s", str(space), "-l", "nevergrad"])) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "only the 'generate' command"),
        (["generate", "-i", "x.json"], "--n_point is required"),
        (["generate", "-n", "two", "-s", "x"], "--n_point must be an integer"),
        (["generate", "-n", "2", "-l", "ax", "-s", "x"], "has no builtin equivalent"),
        (["generate", "-n", "2", "--bogus", "1"], "unknown hpogrid generate option '--bogus'"),
        (["generate", "-n", "2"], "give --infile"),
        (["generate", "-n", "2", "-i", "/nonexistent/in.json"], "cannot read the input file"),
    ],
)
def test_bad_arguments_say_what_is_wrong(args: list[str], message: str) -> None:
    with pytest.raises(GenerateError, match=message):
        run(args)


def test_bad_input_files_say_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad_space = _input(tmp_path, [], {"x": {"method": "uniform", "dimension": {"low": 2, "high": 1}}})
    assert main(["generate", "-n", "1", "-i", bad_space]) == 2
    assert "the search space is not valid" in capsys.readouterr().err
    wrong_shape = _input(tmp_path, [[[5, {"x": 0}], 1.0]])
    with pytest.raises(GenerateError, match=r"points\[0\] does not match opt_space"):
        run(["generate", "-n", "1", "-i", wrong_shape])


def test_the_command_writes_the_output_file(tmp_path: Path) -> None:
    out = tmp_path / "output.json"
    command = [sys.executable, "-m", "hposteer.service.steering.image_programs.hpogrid_generate", "generate",
               "--n_point=2", f"--infile={_input(tmp_path, DONE)}", f"--outfile={out}", "-l=nevergrad"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(out.read_text())) == 2
