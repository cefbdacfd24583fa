"""`phpo`: PanDA's option surface, --loadJson semantics, file errors, dumps and dry runs (offline),
then submission to a live service (the `live_service` fixture of tests/conftest.py).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hposteer.client import sandbox as sandbox_module
from hposteer.client.http import ApiClient
from hposteer.client.phpo import main, prepare, submission
from hposteer.client.phpo_inputs import PhpoError
from hposteer.client.phpo_options import build_parser
from tests.conftest import LiveService

# panda-client 2.2.0's phpo, written out by hand from its source: option, dest, type, default, group.
Row = tuple[str, str, str, Any, str]
PANDA_OPTIONS: list[Row] = [
    ("--version", "version", "flag", False, "CONFIG"),
    ("--loadJson", "loadJson", "str", None, "CONFIG"),
    ("--dumpJson", "dumpJson", "str", None, "CONFIG"),
    ("--nParallelEvaluation", "nParallelEvaluation", "int", 1, "CONFIG"),
    ("--maxPoints", "maxPoints", "int", 10, "CONFIG"),
    ("--maxEvaluationJobs", "maxEvaluationJobs", "int", None, "CONFIG"),
    ("--maxPointsPerEvaluationJob", "maxPointsPerEvaluationJob", "int", None, "CONFIG"),
    ("--nPointsPerIteration", "nPointsPerIteration", "int", 2, "CONFIG"),
    ("--minUnevaluatedPoints", "minUnevaluatedPoints", "int", None, "CONFIG"),
    ("--steeringContainer", "steeringContainer", "str", None, "CONFIG"),
    ("--steeringExec", "steeringExec", "str", None, "CONFIG"),
    ("--searchSpaceFile", "searchSpaceFile", "str", None, "CONFIG"),
    ("--evaluationContainer", "evaluationContainer", "str", None, "CONFIG"),
    ("--evaluationExec", "evaluationExec", "str", None, "CONFIG"),
    ("--evaluationInput", "evaluationInput", "str", "input.json", "CONFIG"),
    ("--evaluationTrainingData", "evaluationTrainingData", "str", "input_ds.json", "CONFIG"),
    ("--evaluationOutput", "evaluationOutput", "str", "output.json", "CONFIG"),
    ("--evaluationMeta", "evaluationMeta", "str", None, "CONFIG"),
    ("--evaluationMetrics", "evaluationMetrics", "str", None, "CONFIG"),
    ("--checkPointToSave", "checkPointToSave", "str", None, "CONFIG"),
    ("--checkPointToLoad", "checkPointToLoad", "str", None, "CONFIG"),
    ("--checkPointInterval", "checkPointInterval", "float", None, "CONFIG"),  # PanDA: int minutes; fractions too here
    ("--alrbArgs", "alrbArgs", "str", None, "CONFIG"),
    ("--architecture", "architecture", "str", "", "CONFIG"),
    ("--segmentSpecFile", "segmentSpecFile", "str", None, "CONFIG"),
    ("-v", "verbose", "flag", False, "CONFIG"),
    ("--trainingDS", "trainingDS", "str", None, "INPUT"),
    ("--outDS", "outDS", "str", None, "OUTPUT"),
    ("--official", "official", "flag", False, "OUTPUT"),
    ("--site", "site", "str", None, "SUBMIT"),
    ("--workingGroup", "workingGroup", "str", None, "SUBMIT"),
    ("--noSubmit", "noSubmit", "flag", False, "SUBMIT"),
    ("-3", "python3", "flag", False, "SUBMIT"),
    ("--voms", "vomsRoles", "str", None, "SUBMIT"),
    ("--noEmail", "noEmail", "flag", False, "SUBMIT"),
    ("--intrSrv", "intrSrv", "flag", False, "EXPERT"),
]
HPOSTEER_OPTIONS: list[Row] = [
    ("--optimizer", "optimizer", "str", None, "HPOSTEER"),
    ("--seed", "seed", "int", None, "HPOSTEER"),
    ("--maxAttempts", "maxAttempts", "int", 3, "HPOSTEER"),
    ("--evaluationTimeout", "evaluationTimeout", "float", None, "HPOSTEER"),
    ("--failuresAsLosses", "failuresAsLosses", "flag", False, "HPOSTEER"),
    ("--reportFile", "reportFile", "str", "hposteer_report.jsonl", "HPOSTEER"),
    ("--server", "server", "str", None, "HPOSTEER"),
    ("--tokenFile", "tokenFile", "str", None, "HPOSTEER"),
    ("--token-file", "tokenFile", "str", None, "HPOSTEER"),
    ("--token", "token", "str", None, "HPOSTEER"),
]
SPACE = {"lr": {"method": "loguniform", "dimension": {"low": 1e-4, "high": 1e-1}}}
CLOSED = "http://127.0.0.1:9"  # nothing listens on the discard port here


def group_of(parser: argparse.ArgumentParser) -> dict[str, str]:
    return {flag: g.title or "" for g in parser._action_groups for a in g._group_actions for flag in a.option_strings}


@pytest.mark.parametrize("row", PANDA_OPTIONS + HPOSTEER_OPTIONS, ids=lambda r: r[0])
def test_option_has_pandas_name_dest_type_default_and_group(row: Row) -> None:
    flag, dest, kind, default, group = row
    parser = build_parser()
    action = {f: a for a in parser._actions for f in a.option_strings}[flag]
    assert (action.dest, action.default, group_of(parser)[flag]) == (dest, default, group)
    if kind == "flag":
        assert action.nargs == 0 and action.const is True
    else:
        assert action.type is {"int": int, "float": float}.get(kind, str) and action.nargs is None


def test_no_option_is_missing_or_extra() -> None:
    flags = {f for a in build_parser()._actions for f in a.option_strings}
    expected = {row[0] for row in PANDA_OPTIONS + HPOSTEER_OPTIONS} | {"--helpGroup", "-h", "--help"}
    assert flags == expected


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("HPOSTEER_TOKEN", "HPOSTEER_TOKEN_FILE", "HPOSTEER_SERVER"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    (tmp_path / "train.py").write_text("print('train')\n")
    return tmp_path


def write(path: Path, value: Any) -> str:
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path.name


REQUIRED = ["--outDS", "user.a.x", "--evaluationExec", "python train.py", "--optimizer", "tpe"]


# -- --loadJson -----------------------------------------------------------------------------------


def test_load_json_overrides_the_command_line_converts_numeric_strings_and_records_keys(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(
        workdir / "cfg.json",
        {"maxPoints": "20", "outDS": "user.a.x", "evaluationExec": "python train.py", "noEmail": True,
         "official": False, "site": "S1", "seed": "7", "minUnevaluatedPoints": None, "bogusKey": 1},
    )  # fmt: skip
    options = prepare(["--maxPoints", "5", "--loadJson", config, "--site", "CLI", "--optimizer", "tpe"])
    assert options.maxPoints == 20 and options.seed == 7, "numeric strings become ints"
    assert options.site == "S1", "the JSON file wins over the command line"
    assert options.outDS == "user.a.x/", "a trailing / is added"
    assert capsys.readouterr().err.strip().splitlines() == [
        "WARNING : maxPoints in cfg.json (20) overrides --maxPoints 5 from the command line (as in PanDA, "
        "--loadJson wins)",
        "WARNING : site in cfg.json ('S1') overrides --site 'CLI' from the command line (as in PanDA, --loadJson wins)",
        "WARNING : ignore unknown option bogusKey in cfg.json (keys are phpo's option names, e.g. maxPoints)",
    ], "the options the file overrides are named; an option the file repeats unchanged is not"
    assert options.cliParams == (
        "phpo --maxPoints 5 --loadJson cfg.json --site CLI --optimizer tpe"
        " --maxPoints=20 --outDS='user.a.x' --evaluationExec='python train.py' --noEmail"
        " --official=False --site='S1' --seed=7 --minUnevaluatedPoints=None"
    )


def test_load_json_keys_are_dests_not_option_spellings(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(workdir / "cfg.json", {"vomsRoles": "atlas", "voms": "x", "python3": True, "verbose": True})
    options = prepare([*REQUIRED, "--loadJson", config])
    assert (options.vomsRoles, options.python3, options.verbose) == ("atlas", True, True)
    assert "ignore unknown option voms in cfg.json" in capsys.readouterr().err


def test_command_line_is_recorded_quoted_and_without_the_token(workdir: Path) -> None:
    config = write(workdir / "cfg.json", {"token": "from-json-secret"})
    options = prepare([*REQUIRED, "--token", "cli-secret", "--site=A B", "--loadJson", config])
    assert options.cliParams == (
        'phpo --outDS user.a.x --evaluationExec "python train.py" --optimizer tpe --site="A B" --loadJson cfg.json'
    )
    assert options.token == "from-json-secret"


def test_max_evaluation_jobs_is_twice_max_points_after_the_merge(workdir: Path) -> None:
    assert prepare(REQUIRED).maxEvaluationJobs == 20
    assert prepare([*REQUIRED, "--maxPoints", "4"]).maxEvaluationJobs == 8
    assert prepare([*REQUIRED, "--maxPoints", "4", "--maxEvaluationJobs", "5"]).maxEvaluationJobs == 5
    config = write(workdir / "cfg.json", {"maxPoints": 7})
    assert prepare([*REQUIRED, "--maxEvaluationJobs", "3", "--loadJson", config]).maxEvaluationJobs == 3
    config = write(workdir / "cfg.json", {"maxPoints": 7, "maxEvaluationJobs": None})
    assert prepare([*REQUIRED, "--maxEvaluationJobs", "3", "--loadJson", config]).maxEvaluationJobs == 14


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "--loadJson cfg.json: no such file"),
        ('{"maxPoints": 3,\n "outDS": }', "--loadJson cfg.json: not valid JSON: Expecting value at line 2 column 11"),
        ("", "--loadJson cfg.json: not valid JSON: Expecting value at line 1 column 1"),
        ('["maxPoints"]', "--loadJson cfg.json: must hold a JSON object of option names, got a list"),
        ({"maxPoints": "ten"}, '--maxPoints (maxPoints in cfg.json) must be an integer, got "ten"'),
        ({"maxPoints": 2.5}, "--maxPoints (maxPoints in cfg.json) must be an integer, got 2.5"),
        ({"outDS": 5}, "--outDS (outDS in cfg.json) must be a string, got 5"),
        ({"noSubmit": "yes"}, '--noSubmit (noSubmit in cfg.json) must be true or false, got "yes"'),
        ({"maxPoints": 0}, "--maxPoints (maxPoints in cfg.json) must be at least 1, got 0"),
        ({"maxAttempts": 11}, "--maxAttempts (maxAttempts in cfg.json) must be at most 10, got 11"),
    ],
)
def test_bad_config_files_are_named_with_the_problem(
    workdir: Path, capsys: pytest.CaptureFixture[str], content: Any, message: str
) -> None:
    if content is not None:
        write(workdir / "cfg.json", content)
    assert main([*REQUIRED, "--loadJson", "cfg.json"]) == 1
    assert message in capsys.readouterr().err


def test_architecture_may_be_a_json_dictionary(workdir: Path) -> None:
    config = write(workdir / "cfg.json", {"architecture": {"vram": ">=40960", "model": ".*A100.*"}})
    assert prepare([*REQUIRED, "--loadJson", config]).architecture == '{"model": ".*A100.*", "vram": ">=40960"}'


# -- help, version, required options --------------------------------------------------------------

GROUP_SAMPLES = {"INPUT": "--trainingDS", "OUTPUT": "--official", "CONFIG": "--loadJson", "SUBMIT": "--noSubmit",
                 "EXPERT": "--intrSrv", "HPOSTEER": "--optimizer"}  # fmt: skip


@pytest.mark.parametrize("group", ["input", "OUTPUT", "Config", "submit", "expert", "hposteer", "ALL", "all"])
def test_help_group_prints_that_group_and_exits_0(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--helpGroup", group]) == 0
    out = capsys.readouterr().out
    for name, flag in GROUP_SAMPLES.items():
        shown = group.upper() in ("ALL", name)
        assert (f"\n  {flag}" in out) is shown, (name, flag)
        assert (f"{name} (" in out) is shown
    if group.upper() == "CONFIG":
        assert all(f"  {row[0]}" in out for row in PANDA_OPTIONS if row[4] == "CONFIG")


def test_unknown_help_group_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--helpGroup", "nope"]) == 2
    assert "unknown group 'nope'; choose from INPUT, OUTPUT, CONFIG, SUBMIT, EXPERT" in capsys.readouterr().err


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-h"]) == 0
    out = capsys.readouterr().out
    assert all(row[0] in out for row in PANDA_OPTIONS + HPOSTEER_OPTIONS)
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("Version: hposteer ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--evaluationExec", "x", "--optimizer", "tpe"], "--outDS is not specified"),
        (["--outDS", "x", "--optimizer", "tpe"], "--evaluationExec is not specified"),
    ],
)
def test_required_options(workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(args) == 1
    assert message in capsys.readouterr().err


def test_no_optimizer_and_no_steering_exec_means_the_default_optimizer(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = prepare(["--outDS", "x", "--evaluationExec", "x"])
    assert options.optimizer is None and options.steeringExec is None
    assert "the task uses the default optimizer, tpe" in capsys.readouterr().err


def test_steering_exec_replaces_optimizer_and_no_container_is_needed(workdir: Path) -> None:
    options = prepare(["--outDS", "x/", "--evaluationExec", "x", "--steeringExec", "hpogrid generate -l nevergrad"])
    assert options.outDS == "x/" and options.evaluationContainer is None and options.optimizer is None


# -- the request body -----------------------------------------------------------------------------


def test_submission_body_follows_the_api(workdir: Path) -> None:
    options = prepare([*REQUIRED, "--searchSpaceFile", "space.json", "--seed", "3", "--checkPointToSave", "ck",
                       "--token", "secret"])  # fmt: skip
    body = submission(options, "ab" * 32)
    assert body["name"] == "user.a.x/" and body["search_space"] == SPACE and body["segments"] is None
    assert (body["optimizer"], body["seed"], body["max_evaluation_jobs"], body["sandbox_sha256"]) == (
        "tpe",
        3,
        20,
        "ab" * 32,
    )
    assert body["options"]["checkPointToSave"] == "ck", "options for later features travel with the task"
    assert "token" not in body["options"]


def test_one_space_is_cloned_for_every_segment_and_a_list_is_sent_unchanged(workdir: Path) -> None:
    write(workdir / "segments.json", [{"name": "segA", "files": ["f1"]}, {"name": "segB", "datasets": ["d"]}])
    options = prepare([*REQUIRED, "--searchSpaceFile", "space.json", "--segmentSpecFile", "segments.json"])
    body = submission(options, None)
    assert body["segments"] == [
        {"name": "segA", "files": ["f1"], "id": 0},
        {"name": "segB", "datasets": ["d"], "id": 1},
    ]
    assert body["search_space"] == [{"model_id": 0, "search_space": SPACE}, {"model_id": 1, "search_space": SPACE}]
    spaces = [{"model_id": 1, "search_space": SPACE}, {"model_id": 0, "search_space": {}}]
    write(workdir / "space.json", spaces)
    assert submission(options, None)["search_space"] == spaces


@pytest.mark.parametrize(
    ("files", "extra", "message"),
    [
        ({}, ["--searchSpaceFile", "nope.json"], "--searchSpaceFile nope.json: no such file"),
        ({"space.json": "{\n  'lr': 1}"}, ["--searchSpaceFile", "space.json"],
         "--searchSpaceFile space.json: not valid JSON: Expecting property name enclosed in double quotes at line 2"),
        ({"space.json": [SPACE]}, ["--searchSpaceFile", "space.json"],
         "--searchSpaceFile space.json: must hold a JSON object (parameter name -> {method, dimension}), got a list"),
        ({"seg.json": {"name": "a"}}, ["--segmentSpecFile", "seg.json"],
         "--segmentSpecFile seg.json: must hold a non-empty JSON list"),
        ({"seg.json": [{"files": []}]}, ["--segmentSpecFile", "seg.json"],
         '--segmentSpecFile seg.json: entry 0 must be an object with a string "name"'),
        ({"seg.json": [{"name": "a", "files": "f1"}]}, ["--segmentSpecFile", "seg.json"],
         '--segmentSpecFile seg.json: entry 0 ("a"): "files" must be a list of strings'),
        ({"seg.json": [{"name": "a"}], "space.json": "3"}, ["--segmentSpecFile", "seg.json", "--searchSpaceFile",
         "space.json"], "--searchSpaceFile space.json: must hold a JSON object, or with --segmentSpecFile a list"),
    ],
)  # fmt: skip
def test_bad_search_space_and_segment_files(
    workdir: Path, capsys: pytest.CaptureFixture[str], files: dict[str, Any], extra: list[str], message: str
) -> None:
    for name, content in files.items():
        write(workdir / name, content)
    assert main([*REQUIRED, "--noSubmit", *extra]) == 1
    assert message in capsys.readouterr().err


# -- dumps, dry runs and failures without a server -----------------------------------------------


def test_dump_json_has_every_option_and_the_outcome(workdir: Path) -> None:
    assert main([*REQUIRED, "--searchSpaceFile", "space.json", "--noSubmit", "--dumpJson", "dump.json",
                 "--token", "secret", "--server", CLOSED]) == 0  # fmt: skip
    dumped = json.loads((workdir / "dump.json").read_text())
    expected = {row[1] for row in PANDA_OPTIONS + HPOSTEER_OPTIONS} - {"token"}
    assert set(dumped) == expected | {"helpGroup", "cliParams", "returnCode", "returnOut", "jediTaskID"}
    assert dumped["returnCode"] is None and dumped["jediTaskID"] is None, "PanDA's success is None"
    assert dumped["maxEvaluationJobs"] == 20 and dumped["outDS"] == "user.a.x/"
    assert "secret" not in (workdir / "dump.json").read_text()


def test_dump_json_on_failure_has_return_code_1(workdir: Path) -> None:
    assert main(["--outDS", "x", "--dumpJson", "dump.json"]) == 1
    dumped = json.loads((workdir / "dump.json").read_text())
    assert (dumped["returnCode"], dumped["returnOut"], dumped["jediTaskID"]) == (
        1,
        "--evaluationExec is not specified",
        None,
    )


def test_no_submit_without_a_server_says_what_was_checked_offline_only(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*REQUIRED, "--searchSpaceFile", "space.json", "--noSubmit", "--token", "t", "--server", CLOSED]) == 0
    captured = capsys.readouterr()
    assert "cannot reach the hposteer server at http://127.0.0.1:9" in captured.err
    assert "checked offline with the server's rules: the search space, the segments and --architecture are valid" in (
        captured.out
    )
    assert "NOT validated by a server: the optimizer (and whether it supports every parameter" in captured.out
    assert "sandbox: 2 files" in captured.out and "search space: lr" in captured.out


def test_no_submit_without_a_token_says_so(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*REQUIRED, "--searchSpaceFile", "space.json", "--noSubmit"]) == 0
    captured = capsys.readouterr()
    assert "not validated by a server: no token: pass --token" in captured.err
    assert "checked offline with the server's rules" in captured.out and "NOT validated by a server" in captured.out


def test_verbose_prints_the_sandbox_and_the_request(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*REQUIRED, "--searchSpaceFile", "space.json", "--noSubmit", "-v"]) == 0
    out = capsys.readouterr().out
    assert "\n  space.json\n  train.py\n" in out
    body = json.loads(out[out.index("request body:\n") + len("request body:\n") :])
    assert body["search_space"] == SPACE and body["optimizer"] == "tpe"


def test_a_too_large_sandbox_is_refused_by_name(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "huge.json").write_bytes(os.urandom(25_600))
    monkeypatch.setattr(sandbox_module, "MAX_SANDBOX_BYTES", 2_000)
    assert main([*REQUIRED, "--searchSpaceFile", "space.json", "--noSubmit"]) == 1
    assert "largest files: huge.json (25.0 KiB)" in capsys.readouterr().err


def test_missing_token(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*REQUIRED, "--searchSpaceFile", "space.json", "--server", CLOSED]) == 1
    assert "hposteer token create --role user --owner NAME" in capsys.readouterr().err


def test_token_file_is_read(workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HPOSTEER_TOKEN_FILE", str(workdir / "missing-token"))
    assert main([*REQUIRED, "--searchSpaceFile", "space.json", "--server", CLOSED]) == 1
    err = capsys.readouterr().err
    assert f"HPOSTEER_TOKEN_FILE {workdir / 'missing-token'}: no such file" in err
    assert "--output FILE" in err, "how to make one"


def test_token_file_option_empty_and_unreadable(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "empty").write_text("\n")
    assert main([*REQUIRED, "--searchSpaceFile", "space.json", "--server", CLOSED, "--tokenFile", "empty"]) == 1
    assert "--token-file empty: the file is empty; it must hold the token" in capsys.readouterr().err
    (workdir / "tokens").mkdir()
    assert main([*REQUIRED, "--searchSpaceFile", "space.json", "--server", CLOSED, "--tokenFile", "tokens"]) == 1
    assert "--token-file tokens: is a directory, not a token file" in capsys.readouterr().err
    (workdir / "locked").write_text("hps_x\n")
    (workdir / "locked").chmod(0)
    if os.access(workdir / "locked", os.R_OK):
        pytest.skip("running as root: a mode-0 file is still readable")
    assert main([*REQUIRED, "--searchSpaceFile", "space.json", "--server", CLOSED, "--token-file", "locked"]) == 1
    assert "--token-file locked: cannot read it (Permission denied)" in capsys.readouterr().err


def test_load_json_unknown_key_did_you_mean(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(workdir / "cfg.json", {"maxPoint": 7, "nParallelEvaluations": 2})
    prepare([*REQUIRED, "--loadJson", config])
    err = capsys.readouterr().err
    assert "ignore unknown option maxPoint in cfg.json: did you mean maxPoints?" in err
    assert "ignore unknown option nParallelEvaluations in cfg.json: did you mean nParallelEvaluation?" in err


def test_evaluation_exec_file_not_in_the_sandbox_is_warned(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "run.R").write_text("print(1)\n")
    common = ["--outDS", "user.me.x", "--searchSpaceFile", "space.json", "--noSubmit", "--server", CLOSED]
    assert main([*common, "--evaluationExec", "Rscript run.R --lr %{lr}"]) == 0
    err = capsys.readouterr().err
    assert "--evaluationExec names run.R, which is not in the sandbox: the sandbox packs only *.json" in err
    assert main([*common, "--evaluationExec", "python ./trian.py"]) == 0
    assert "--evaluationExec names ./trian.py, which is not in this directory" in capsys.readouterr().err
    assert main([*common, "--evaluationExec", "python train.py --out=x /abs/path"]) == 0
    assert "evaluationExec names" not in capsys.readouterr().err, "packed files, options and paths are fine"


def test_unreachable_server(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: connection refused
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    assert main([*REQUIRED, "--searchSpaceFile", "space.json", "--token", "t", "--server", url]) == 1
    assert f"cannot reach the hposteer server at {url}: connection refused" in capsys.readouterr().err


def test_console_script_runs(workdir: Path) -> None:
    phpo = Path(sys.executable).parent / "phpo"
    result = subprocess.run([str(phpo), "--helpGroup", "config"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "  --searchSpaceFile" in result.stdout and "INPUT (" not in result.stdout


# -- against a live service -----------------------------------------------------------------------


def live_args(service: LiveService, *extra: str) -> list[str]:
    return ["--outDS", "user.alice.phpo", "--evaluationExec", "python train.py", "--searchSpaceFile", "space.json",
            "--server", service.url, "--token", service.user_token, "--site", "NOWHERE", *extra]  # fmt: skip


def test_submit_success(workdir: Path, live_service: LiveService, capsys: pytest.CaptureFixture[str]) -> None:
    dump = workdir.parent / f"{workdir.name}-dump.json"  # outside: it would change the next sandbox
    args = live_args(live_service, "--optimizer", "random", "--maxPoints", "3", "--dumpJson", str(dump), "-v")
    assert main(args) == 0
    out = capsys.readouterr().out
    dumped = json.loads(dump.read_text())
    task_id = dumped["jediTaskID"]
    assert f"submitted task {task_id} (user.alice.phpo/)" in out and f"hposteer task wait {task_id}" in out
    assert "uploaded the sandbox" in out
    assert dumped["returnCode"] is None and dumped["maxEvaluationJobs"] == 6
    with ApiClient(live_service.url, live_service.user_token) as api:
        task = api.get_task(task_id)
    assert task["optimizer"] == "random" and task["options"]["searchSpaceFile"] == "space.json"
    assert task["settings"]["max_evaluation_jobs"] == 6
    assert main(args) == 0, "the same files again"
    assert "already holds this sandbox" in capsys.readouterr().out


def test_submit_segments(workdir: Path, live_service: LiveService, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir / "segments.json", [{"name": "segA"}, {"name": "segB"}])
    assert main(live_args(live_service, "--optimizer", "tpe", "--segmentSpecFile", "segments.json")) == 0
    task_id = int(capsys.readouterr().out.split()[2])
    with ApiClient(live_service.url, live_service.user_token) as api:
        assert [s["name"] for s in api.get_task(task_id)["segments"]] == ["segA", "segB"]


def test_search_space_rejection_is_shown_to_the_user(
    workdir: Path, live_service: LiveService, capsys: pytest.CaptureFixture[str]
) -> None:
    write(workdir / "space.json", {"lr": {"method": "uniform", "dimension": {"low": 1, "high": 0}}})
    assert main([*live_args(live_service, "--optimizer", "tpe"), "--dumpJson", "dump.json"]) == 1
    err = capsys.readouterr().err
    assert "task submission failed" in err and "\n  - parameter 'lr'" in err and "greater than low" in err
    assert json.loads((workdir / "dump.json").read_text())["returnCode"] == 1


def test_unknown_optimizer(workdir: Path, live_service: LiveService, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(live_args(live_service, "--optimizer", "hyperband")) == 1
    err = capsys.readouterr().err
    assert "field 'optimizer (--optimizer)'" in err and "unknown optimizer 'hyperband'" in err


def test_wrong_token(workdir: Path, live_service: LiveService, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*live_args(live_service, "--optimizer", "tpe"), "--token", "hps_wrong"]) == 1
    err = capsys.readouterr().err
    assert "the server refused the token: the token is unknown, expired or revoked" in err
    assert "no token" not in err and "pass --token" not in err, "a token was given: only say it was refused"


def test_pilot_token_is_refused(workdir: Path, live_service: LiveService, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*live_args(live_service, "--optimizer", "tpe"), "--token", live_service.pilot_token]) == 1
    assert "phpo needs a token with the user role" in capsys.readouterr().err


def test_no_submit_with_a_server_validates_and_stores_nothing(
    workdir: Path, live_service: LiveService, capsys: pytest.CaptureFixture[str]
) -> None:
    with ApiClient(live_service.url, live_service.user_token) as api:
        before = len(api.list_tasks(limit=1000))
        assert main(live_args(live_service, "--optimizer", "nevergrad", "--noSubmit")) == 0
        assert "validated by the server at" in capsys.readouterr().out
        assert len(api.list_tasks(limit=1000)) == before
    write(workdir / "space.json", {"lr": {"method": "uniform", "dimension": {"low": 1, "high": 0}}})
    assert main(live_args(live_service, "--optimizer", "tpe", "--noSubmit")) == 2, "refused offline: a usage error"
    err = capsys.readouterr().err
    assert "checked offline by --noSubmit" in err and "greater than low" in err
    write(workdir / "space.json", {"w": {"method": "normal", "dimension": {"mu": 0, "sigma": 1}}})
    assert main(live_args(live_service, "--optimizer", "tpe", "--noSubmit")) == 1, "valid offline, refused by tpe"
    err = capsys.readouterr().err
    assert "task submission failed" in err and "parameter 'w'" in err and "checked offline" not in err


def test_phpo_runs_as_a_real_command(workdir: Path, live_service: LiveService) -> None:
    write(workdir / "cfg.json", {"outDS": "user.alice.cmd", "evaluationExec": "python train.py",
                                 "searchSpaceFile": "space.json", "optimizer": "tpe", "site": "NOWHERE"})  # fmt: skip
    result = subprocess.run(
        [str(Path(sys.executable).parent / "phpo"), "--loadJson", "cfg.json", "--server", live_service.url],
        cwd=workdir,
        env={"HPOSTEER_TOKEN": live_service.user_token, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "submitted task" in result.stdout and "(user.alice.cmd/)" in result.stdout


def test_prepare_raises_phpo_error(workdir: Path) -> None:
    with pytest.raises(PhpoError, match="--outDS is not specified"):
        prepare(["--evaluationExec", "x", "--optimizer", "tpe"])


# The phpo guide's search_space_example2.json: PanDA accepts its repeated category.
EXAMPLE2 = {
    "auto_lr": {"method": "categorical", "dimension": {"categories": [True, False], "grid_search": 0}},
    "batch_size": {"method": "uniformint", "dimension": {"low": 10, "high": 30}},
    "epoch": {"method": "uniformint", "dimension": {"low": 5, "high": 10}},
    "cnn_block_depths_1": {"method": "categorical", "dimension": {"categories": [1, 1, 2], "grid_search": 0}},
    "cnn_block_depths_2": {"method": "uniformint", "dimension": {"low": 1, "high": 3}},
}


@pytest.mark.parametrize("optimizer", ["grid", "random", "tpe", "nevergrad", "skopt"])
def test_repeated_categories_are_accepted_with_a_warning_and_steered_on(
    optimizer: str, workdir: Path, live_service: LiveService, capsys: pytest.CaptureFixture[str]
) -> None:
    write(workdir / "space.json", EXAMPLE2)
    assert (
        main(
            [
                *live_args(live_service, "--optimizer", optimizer, "--maxPoints", "6", "--nPointsPerIteration", "6"),
                "--noSubmit",
            ]
        )
        == 0
    )
    dry = capsys.readouterr()
    assert "validated by the server" in dry.out
    assert (
        main(live_args(live_service, "--optimizer", optimizer, "--maxPoints", "6", "--nPointsPerIteration", "6")) == 0
    )
    captured = capsys.readouterr()
    task_id = int(captured.out.split()[2])
    for err in (dry.err, captured.err):
        warning = next(line for line in err.splitlines() if line.startswith("WARNING : parameter"))
        assert "'cnn_block_depths_1': categories [1, 1, 2] repeat 1;" in warning
        assert "probability 1/2 (not 2/3)" in warning and "grid search evaluates each value once" in warning
    with ApiClient(live_service.url, live_service.user_token) as api:
        assert api.get_task(task_id)["warnings"] == [], "only the submission answer carries them"
        deadline = time.monotonic() + 60
        while len(points := api.list_points(task_id)["points"]) < 6 and time.monotonic() < deadline:
            time.sleep(0.2)
    assert len(points) == 6, f"{optimizer} steered the space: {points}"
    assert {p["params"]["cnn_block_depths_1"] for p in points} <= {1, 2}
    if optimizer == "grid":
        keys = [json.dumps(p["params"], sort_keys=True) for p in points]
        assert len(set(keys)) == len(keys), "grid search proposes each point once"
