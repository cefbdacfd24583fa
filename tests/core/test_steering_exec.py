"""Parsing a user's steering container command (pure): the accepted forms, the refusals, placeholders."""

from __future__ import annotations

import shlex

import pytest

from hposteer.service.core.shell_words import PWD_MARK, ShellSyntaxError, split_words
from hposteer.service.core.steering_exec import (
    INPUT_FILE,
    OUTPUT_FILE,
    WORKDIR,
    SteeringExecError,
    fill_placeholders,
    parse_steering,
    placeholder_values,
)

HPOGRID_IMAGE = "gitlab-registry.cern.ch/aml/hyperparameter-optimization/alkaid-qt/hpogrid:latest"
IDDS_FORM = (
    f'run --rm -v "$(pwd)":/HPOiDDS {HPOGRID_IMAGE} /bin/bash -c "hpogrid generate --n_point=%NUM_POINTS '
    '--max_point=%MAX_POINTS --infile=/HPOiDDS/%IN --outfile=/HPOiDDS/%OUT -l nevergrad"'
)


def test_the_idds_docker_form_keeps_image_command_and_mount_path() -> None:
    command = parse_steering(IDDS_FORM, None)
    assert command.form == "idds" and command.image == HPOGRID_IMAGE
    assert command.workdir == "/HPOiDDS", "the $(pwd) mount's container path is the working directory"
    assert command.argv == (
        "/bin/bash",
        "-c",
        "hpogrid generate --n_point=%NUM_POINTS --max_point=%MAX_POINTS --infile=/HPOiDDS/%IN "
        "--outfile=/HPOiDDS/%OUT -l nevergrad",
    ), "/bin/bash -c keeps its script as one argument"
    assert command.env == ()


def test_hpogrid_submit_form_with_env_workdir_and_a_leading_docker_word() -> None:
    text = (
        "docker run --rm -v $(pwd):/workDir:rw -w /workDir -e MODE=fast --env=N=%NUM_POINTS -e EMPTY= img:1 "
        "hpogrid generate --infile /workDir/%IN --outfile %OUT --lib optuna"
    )
    command = parse_steering(text, None)
    assert command.workdir == "/workDir" and command.image == "img:1"
    assert command.env == (("MODE", "fast"), ("N", "%NUM_POINTS"), ("EMPTY", ""))
    assert command.argv[-4:] == ("--outfile", "%OUT", "--lib", "optuna")


def test_a_bare_command_with_steering_container_runs_in_the_fixed_working_directory() -> None:
    command = parse_steering("python3 /opt/steer.py --in %IN --out=$PWD/%OUT -n %NUM_POINTS", "hposteer/base:bookworm")
    assert command.form == "container" and command.workdir == WORKDIR
    assert command.argv == ("python3", "/opt/steer.py", "--in", "%IN", f"--out={WORKDIR}/%OUT", "-n", "%NUM_POINTS")
    digest = "reg.example.org:5000/team/steer@sha256:" + "0" * 64
    assert parse_steering("steer", digest).image == digest


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("run --privileged img steer", "'--privileged'"),
        ("run --rm -v /:/host img steer", "'/:/host'"),
        ('run -v "$(pwd)":/w -v /var/run/docker.sock:/s img steer', "second mount"),
        ("run --network=host img steer", "'--network=host'"),
        ("run --net host img steer", "'--net'"),
        ("run --cap-add SYS_ADMIN img steer", "'--cap-add'"),
        ("run --device /dev/kvm img steer", "'--device'"),
        ("run --security-opt seccomp=unconfined img steer", "'--security-opt'"),
        ("run --user 0 img steer", "'--user'"),
        ("run -it img steer", "'-it'"),
        ("run --entrypoint /bin/sh img steer", "'--entrypoint'"),
        ("run -v $(id):/w img steer", "'$(id)'"),
        ('run -v "$(pwd)":/w img /bin/bash -c "steer $(id)"', "'$(id)'"),
        ("run -v `pwd`:/w img steer", "backtick"),
        ('run img /bin/bash -c "`reboot`"', "backtick"),
        ("run img steer;reboot", "';'"),
        ("run img steer && reboot", "'&'"),
        ("run img steer | tee x", "'|'"),
        ("run img steer > /etc/x", "'>'"),
        ('run img steer "$HOME"', "'$HOME'"),
        ("run img steer ${X:-y}", "'${X:-y}'"),
        ("run img steer\nreboot", "line break"),
        ("run -v $(pwd):/ img steer", "'/'"),
        ("run -v $(pwd):/proc img steer", "'/proc'"),
        ("run -v $(pwd):/w/../etc img steer", "'/w/../etc'"),
        ("run -v $(pwd):/w:ro img steer", "writable"),
        ("run -v $(pwd)/sub:/w img steer", "only mount allowed"),
        ("run -v $(pwd):/w -w /elsewhere img steer", "-w /elsewhere"),
        ("run -e HOME img steer", "variable of the host"),
        ("run -e 1X=2 img steer", "not a valid variable name"),
        ("run --rm -v $(pwd):/w", "no image"),
        ("run --rm img", "no command"),
        ("run --rm UPPER/Case steer", "not an image reference"),
        ("hpogrid-like steer.py", "bare 'hpogrid generate"),
        ("run img 'unterminated", "unterminated single quote"),
    ],
)
def test_refused_docker_arguments_and_host_shell_syntax_name_the_problem(text: str, named: str) -> None:
    with pytest.raises(SteeringExecError) as info:
        parse_steering(text, None)
    assert named in str(info.value), str(info.value)
    assert info.value.field == "steering_exec"


def test_refusals_of_the_bare_form_and_of_the_container_name() -> None:
    with pytest.raises(SteeringExecError, match="needs --steeringExec"):
        parse_steering(None, "img")
    with pytest.raises(SteeringExecError, match="not docker arguments"):
        parse_steering('run --rm -v "$(pwd)":/w img steer', "img")
    with pytest.raises(SteeringExecError, match="';'"):
        parse_steering("steer;reboot", "img")
    with pytest.raises(SteeringExecError) as info:
        parse_steering("steer", "--privileged")
    assert info.value.field == "steering_container" and "not an image reference" in str(info.value)


def test_what_single_quotes_protect_reaches_the_container_literally() -> None:
    command = parse_steering("""sh -c 'echo $HOME; ls | wc -l > `x`' "a \\$b" '$(pwd)'""", "img")
    assert command.argv == ("sh", "-c", "echo $HOME; ls | wc -l > `x`", "a $b", "$(pwd)")


@pytest.mark.parametrize(
    "text",
    [
        "a b  c",
        "'a b' \"c d\" e\\ f",
        "x='1 2' \"y\"z'w'",
        "python3 -c 'import json; print(json.dumps({\"a\": 1}))' %NUM_POINTS",
        '"" \'\' a"b"c',
        'a\\\\b "q\\"q"',
        'cost 5$ "and $" lone',
    ],
)
def test_words_are_those_of_shlex_when_no_expansion_is_involved(text: str) -> None:
    assert split_words(text) == shlex.split(text)


def test_the_working_directory_forms_become_the_marker() -> None:
    assert split_words('"$(pwd)"/a ${PWD}/b $PWD/c') == [f"{PWD_MARK}/a", f"{PWD_MARK}/b", f"{PWD_MARK}/c"]
    with pytest.raises(ShellSyntaxError, match="PWDX"):
        split_words("$PWDX")
    with pytest.raises(ShellSyntaxError, match="control character"):
        split_words("a\x00b")
    with pytest.raises(ShellSyntaxError, match="8192"):
        split_words("a" * 9000)


def test_placeholders_are_filled_in_one_pass_without_recursion() -> None:
    values = placeholder_values(num_points=3, max_points=10)
    assert fill_placeholders("%IN%OUT%IN", values) == f"{INPUT_FILE}{OUTPUT_FILE}{INPUT_FILE}"
    assert fill_placeholders("-n %NUM_POINTS -m %MAX_POINTS", values) == "-n 3 -m 10"
    # iDDS's plain substitution has no word boundary: %INPUT is %IN followed by PUT.
    assert fill_placeholders("%INPUT %X509_USER_PROXY_FULLNAME 100%", values) == (
        f"{INPUT_FILE}PUT %X509_USER_PROXY_FULLNAME 100%"
    )
    tricky = {**values, "IN": "%OUT"}
    assert fill_placeholders("%IN", tricky) == "%OUT", "a filled value never expands again"
