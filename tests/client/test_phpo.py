"""`phpo`: PanDA's option surface, --loadJson semantics, sandboxes, and submission to a live service."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from client.phpo import build_parser, main, prepare
from client.sandbox import SandboxTooLarge, build
from tests.conftest import LiveService

# panda-client 2.2.0's phpo, written out by hand from its source: (option, dest, type, default)
PANDA_OPTIONS = [
    ("--version", "version", "flag", False),
    ("--loadJson", "loadJson", "str", None),
    ("--dumpJson", "dumpJson", "str", None),
    ("--nParallelEvaluation", "nParallelEvaluation", "int", 1),
    ("--maxPoints", "maxPoints", "int", 10),
    ("--maxEvaluationJobs", "maxEvaluationJobs", "int", None),
    ("--maxPointsPerEvaluationJob", "maxPointsPerEvaluationJob", "int", None),
    ("--nPointsPerIteration", "nPointsPerIteration", "int", 2),
    ("--minUnevaluatedPoints", "minUnevaluatedPoints", "int", None),
    ("--steeringContainer", "steeringContainer", "str", None),
    ("--steeringExec", "steeringExec", "str", None),
    ("--searchSpaceFile", "searchSpaceFile", "str", None),
    ("--evaluationContainer", "evaluationContainer", "str", None),
    ("--evaluationExec", "evaluationExec", "str", None),
    ("--evaluationInput", "evaluationInput", "str", "input.json"),
    ("--evaluationTrainingData", "evaluationTrainingData", "str", "input_ds.json"),
    ("--evaluationOutput", "evaluationOutput", "str", "output.json"),
    ("--evaluationMeta", "evaluationMeta", "str", None),
    ("--evaluationMetrics", "evaluationMetrics", "str", None),
    ("--checkPointToSave", "checkPointToSave", "str", None),
    ("--checkPointToLoad", "checkPointToLoad", "str", None),
    ("--checkPointInterval", "checkPointInterval", "int", None),
    ("--alrbArgs", "alrbArgs", "str", None),
    ("--architecture", "architecture", "str", ""),
    ("--segmentSpecFile", "segmentSpecFile", "str", None),
    ("-v", "verbose", "flag", False),
    ("--trainingDS", "trainingDS", "str", None),
    ("--outDS", "outDS", "str", None),
    ("--official", "official", "flag", False),
    ("--site", "site", "str", None),
    ("--workingGroup", "workingGroup", "str", None),
    ("--noSubmit", "noSubmit", "flag", False),
    ("-3", "python3", "flag", False),
    ("--voms", "vomsRoles", "str", None),
    ("--noEmail", "noEmail", "flag", False),
    ("--intrSrv", "intrSrv", "flag", False),
]
SPACE = {"lr": {"method": "loguniform", "dimension": {"low": 1e-4, "high": 1e-1}}}


def test_every_panda_option_has_the_same_name_dest_type_and_default() -> None:
    parser = build_parser()
    actions = {flag: a for a in parser._actions for flag in a.option_strings}
    for flag, dest, kind, default in PANDA_OPTIONS:
        action = actions[flag]
        assert action.dest == dest, flag
        assert action.default == default, flag
        if kind == "flag":
            assert action.nargs == 0, flag
        else:
            assert action.type is (int if kind == "int" else str), flag
    assert "--helpGroup" in actions and "-h" in actions


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPOSTEER_TOKEN", raising=False)
    monkeypatch.delenv("HPOSTEER_SERVER", raising=False)
    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    (tmp_path / "train.py").write_text("print('train')\n")
    return tmp_path


def write(path: Path, value: Any) -> str:
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(path)


def test_load_json_overrides_the_command_line_and_converts_numeric_strings(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(
        workdir / "cfg.json",
        {"maxPoints": "20", "outDS": "user.a.x", "evaluationExec": "python train.py", "noEmail": True,
         "site": "S1", "bogusKey": 1},
    )  # fmt: skip
    options = prepare(["--maxPoints", "5", "--loadJson", config, "--site", "CLI"])
    assert options.maxPoints == 20 and isinstance(options.maxPoints, int)
    assert options.site == "S1", "JSON overrides the command line"
    assert options.maxEvaluationJobs == 40, "derived after the merge"
    assert options.outDS == "user.a.x/"
    assert "ignore unknown option bogusKey in" in capsys.readouterr().err
    assert options.cliParams.endswith("--maxPoints=20 --outDS='user.a.x' --evaluationExec='python train.py' "
                                      "--noEmail --site='S1'")  # fmt: skip


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ('{"maxPoints": 3,\n "outDS": }', "not valid JSON: Expecting value at line 2 column 11"),
        ('["maxPoints"]', "must hold a JSON object"),
        ({"maxPoints": "ten", "outDS": "a", "evaluationExec": "x"}, "maxPoints in"),
        ({"outDS": 5, "evaluationExec": "x"}, "outDS in"),
    ],
)
def test_bad_config_files_are_named_with_the_problem(
    workdir: Path, capsys: pytest.CaptureFixture[str], content: Any, message: str
) -> None:
    path = workdir / "cfg.json"
    if content is not None:
        write(path, content)
    assert main(["--loadJson", str(path)]) == 1
    err = capsys.readouterr().err
    assert message in err and "cfg.json" in err


@pytest.mark.parametrize("group", ["input", "SUBMIT", "Config", "hposteer", "ALL"])
def test_help_group_prints_one_group_and_exits_0(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--helpGroup", group])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    wanted = {"input": "\n  --trainingDS", "SUBMIT": "\n  --noSubmit", "Config": "\n  --loadJson",
              "hposteer": "\n  --optimizer"}  # fmt: skip
    if group == "ALL":
        assert all(flag in out for flag in wanted.values())
    else:
        assert wanted[group] in out
        assert all(flag not in out for g, flag in wanted.items() if g != group)


def test_required_options(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--evaluationExec", "x"]) == 1
    assert "--outDS is not specified" in capsys.readouterr().err
    assert main(["--outDS", "x"]) == 1
    assert "--evaluationExec is not specified" in capsys.readouterr().err


def test_sandbox_packs_what_panda_packs_deterministically(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_bytes(bytes(range(256)) * 40)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("b: 1")
    (tmp_path / "sub" / "c.sh").write_text("echo")
    (tmp_path / "data.csv").write_text("skip me")
    for hidden in (".git", "__pycache__", "venv"):
        (tmp_path / hidden).mkdir()
        (tmp_path / hidden / "x.py").write_text("no")
    (tmp_path / "venv" / "pyvenv.cfg").write_text("")
    (tmp_path / "outside.json").symlink_to("/etc/hostname")
    first = build(tmp_path)
    assert first.files == ["a.py", "sub/b.yaml", "sub/c.sh"]
    (tmp_path / "a.py").touch()
    assert build(tmp_path).sha256 == first.sha256, "same files, same bytes: the server stores it once"
    archive = tmp_path / "s.tar.gz"
    archive.write_bytes(first.data)
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == first.files
    with pytest.raises(SandboxTooLarge, match=r"above the 100 bytes limit; largest files: a\.py \(10\.0 KiB\)"):
        build(tmp_path, limit=100)


# -- against a live service ---------------------------------------------------------------------


def base_args(service: LiveService, *extra: str) -> list[str]:
    return ["--outDS", "user.alice.phpo", "--evaluationExec", "python train.py", "--searchSpaceFile", "space.json",
            "--server", service.url, "--token", service.user_token, "--site", "NOWHERE", *extra]  # fmt: skip


def test_submit_prints_the_task_and_dumps_json(
    workdir: Path, live_service: LiveService, capsys: pytest.CaptureFixture[str]
) -> None:
    dump = workdir / "dump.json"
    assert main([*base_args(live_service, "--optimizer", "random", "--maxPoints", "3"), "--dumpJson", str(dump)]) == 0
    out = capsys.readouterr().out
    assert "submitted task" in out and "hposteer task wait" in out
    dumped = json.loads(dump.read_text())
    assert dumped["returnCode"] is None and isinstance(dumped["jediTaskID"], int)
    assert dumped["maxEvaluationJobs"] == 6 and dumped["outDS"] == "user.alice.phpo/"
    assert "token" not in dumped, "the token is never written to disk"
    from client.http import ApiClient

    with ApiClient(live_service.url, live_service.user_token) as api:
        task = api.get_task(dumped["jediTaskID"])
    assert task["optimizer"] == "random" and task["options"]["searchSpaceFile"] == "space.json"


def test_server_side_refusals_are_shown_to_the_user(
    workdir: Path, live_service: LiveService, capsys: pytest.CaptureFixture[str]
) -> None:
    write(workdir / "space.json", {"lr": {"method": "normal", "dimension": {"mu": 0, "sigma": 1}}})
    dump = workdir / "dump.json"
    assert main([*base_args(live_service), "--dumpJson", str(dump)]) == 1
    err = capsys.readouterr().err
    assert "parameter 'lr', key 'method'" in err and "nevergrad, random" in err
    assert json.loads(dump.read_text())["returnCode"] == 1
    assert main([*base_args(live_service, "--optimizer", "hyperband")]) == 1
    assert "unknown optimizer 'hyperband'" in capsys.readouterr().err


def test_token_and_server_problems(
    workdir: Path, live_service: LiveService, capsys: pytest.CaptureFixture[str]
) -> None:
    args = base_args(live_service)
    wrong = [*args[: args.index("--token")], "--token", "hps_wrong", *args[args.index("--token") + 2 :]]
    assert main(wrong) == 1
    assert "unknown, expired or revoked" in capsys.readouterr().err
    missing = [a for i, a in enumerate(args) if a != "--token" and (i == 0 or args[i - 1] != "--token")]
    assert main(missing) == 1
    assert "hposteer token create --role user" in capsys.readouterr().err
    closed = [*args[: args.index("--server")], "--server", "http://127.0.0.1:9", *args[args.index("--server") + 2 :]]
    assert main(closed) == 1
    assert "cannot reach the hposteer server at http://127.0.0.1:9" in capsys.readouterr().err


def test_no_submit_validates_with_the_server_and_stores_nothing(
    workdir: Path, live_service: LiveService, capsys: pytest.CaptureFixture[str]
) -> None:
    from client.http import ApiClient

    with ApiClient(live_service.url, live_service.user_token) as api:
        before = len(api.list_tasks(limit=1000))
        assert main([*base_args(live_service), "--noSubmit"]) == 0
        assert "validated by the server" in capsys.readouterr().out
        assert len(api.list_tasks(limit=1000)) == before
    write(workdir / "space.json", {"lr": {"method": "uniform", "dimension": {"low": 1, "high": 0}}})
    assert main([*base_args(live_service), "--noSubmit"]) == 1
    assert "must be greater than low" in capsys.readouterr().err


def test_phpo_runs_as_a_real_command(workdir: Path, live_service: LiveService) -> None:
    write(workdir / "cfg.json", {"outDS": "user.alice.cmd", "evaluationExec": "python train.py",
                                 "searchSpaceFile": "space.json", "optimizer": "tpe", "site": "NOWHERE"})  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "client.phpo", "--loadJson", "cfg.json", "--server", live_service.url],
        cwd=workdir,
        env={"HPOSTEER_TOKEN": live_service.user_token, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "submitted task" in result.stdout
