"""output.json rules (docs/evaluation-contract.md#outputjson) on real files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from hposteer.client.pilot.output import MAX_OUTPUT_BYTES, read_result

MISSING = object()


@pytest.mark.parametrize(
    ("content", "exit_code", "failure_class", "loss", "message"),
    [
        # success: status missing or 0, loss a finite number or a numeric string
        ({"status": 0, "loss": 0.25, "message": "ok"}, 0, None, 0.25, "ok"),
        ({"loss": 3}, 0, None, 3.0, ""),
        ({"loss": -1.5}, 0, None, -1.5, ""),
        ({"loss": "1.5e-2"}, 0, None, 0.015, ""),
        ({"loss": " 7 "}, 0, None, 7.0, ""),
        ({"status": None, "loss": 1}, 0, None, 1.0, ""),
        # status != 0: payload_error, message kept
        ({"status": 1, "message": "CUDA OOM"}, 0, "payload_error", None, "output.json has status 1: CUDA OOM"),
        ({"status": 2, "loss": 0.1}, 0, "payload_error", None, "output.json has status 2"),
        ({"status": "0", "loss": 0.1}, 0, "payload_error", None, "has status '0'"),
        ({"status": True, "loss": 0.1}, 0, "payload_error", None, "has status True"),
        # non-zero exit: payload_error even with a good file, and the file's message is kept
        ({"status": 0, "loss": 0.1}, 3, "payload_error", None, "the evaluation exited with code 3"),
        ({"status": 1, "message": "bad data"}, 1, "payload_error", None, "code 1; output.json says: bad data"),
        (MISSING, 2, "payload_error", None, "exited with code 2"),
        ("{not json", 5, "payload_error", None, "exited with code 5"),
        (MISSING, -9, "payload_error", None, "killed by signal 9 (SIGKILL)"),
        # loss missing or not a finite number: invalid_output, saying which
        ({"status": 0}, 0, "invalid_output", None, 'output.json has no "loss"'),
        ({"loss": "NaN"}, 0, "invalid_output", None, "\"loss\" in output.json is not finite ('NaN')"),
        ({"loss": "inf"}, 0, "invalid_output", None, "is not finite ('inf')"),
        ({"loss": "-Infinity"}, 0, "invalid_output", None, "is not finite"),
        ("NaN-literal", 0, "invalid_output", None, "is not finite"),
        ("Infinity-literal", 0, "invalid_output", None, "is not finite"),
        ("huge-int", 0, "invalid_output", None, "is not finite"),
        ({"loss": None}, 0, "invalid_output", None, '"loss" in output.json must be a number, got null'),
        ({"loss": [1, 2]}, 0, "invalid_output", None, "must be a number, got an array"),
        ({"loss": {"v": 1}}, 0, "invalid_output", None, "must be a number, got an object"),
        ({"loss": True}, 0, "invalid_output", None, "must be a number, got a boolean"),
        ({"loss": "low"}, 0, "invalid_output", None, "\"loss\" in output.json is not a number: 'low'"),
        # not JSON, not an object
        ("", 0, "invalid_output", None, "output.json is not valid JSON: Expecting value at line 1 column 1"),
        ("{not json", 0, "invalid_output", None, "not valid JSON: Expecting property name enclosed in double quotes"),
        ('{"loss": 1', 0, "invalid_output", None, "not valid JSON: Expecting ',' delimiter at line 1 column 11"),
        ([1, 2], 0, "invalid_output", None, "output.json must hold a JSON object, got an array"),
        (0.5, 0, "invalid_output", None, "must hold a JSON object, got a number"),
        ("null", 0, "invalid_output", None, "must hold a JSON object, got null"),
        # no file
        (MISSING, 0, "missing_output", None, "the evaluation exited 0 but wrote no output.json"),
    ],
)
def test_output_json_rules(
    tmp_path: Path, content: Any, exit_code: int, failure_class: str | None, loss: float | None, message: str
) -> None:
    path = tmp_path / "output.json"
    literals = {
        "NaN-literal": '{"loss": NaN}',
        "Infinity-literal": '{"loss": Infinity}',
        "huge-int": '{"loss": 1' + "0" * 400 + "}",
        "null": "null",
    }
    if isinstance(content, str):
        path.write_text(literals.get(content, content))
    elif content is not MISSING:
        path.write_text(json.dumps(content))
    result = read_result(path, exit_code)
    assert result.outcome == ("success" if failure_class is None else "failure")
    assert (result.failure_class, result.loss) == (failure_class, loss)
    assert message in result.message


def test_the_file_name_is_the_tasks(tmp_path: Path) -> None:
    assert "wrote no result.json" in read_result(tmp_path / "result.json", 0).message
    (tmp_path / "result.json").write_text('{"loss": 0.5}')
    assert read_result(tmp_path / "result.json", 0).loss == 0.5


def test_a_symlink_or_a_directory_is_not_an_output(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.json").write_text('{"loss": 1}')
    os.symlink(tmp_path / "elsewhere.json", tmp_path / "output.json")
    result = read_result(tmp_path / "output.json", 0)
    assert (result.failure_class, result.message) == ("invalid_output", "output.json is a symlink")
    (tmp_path / "out2.json").mkdir()
    result = read_result(tmp_path / "out2.json", 0)
    assert (result.failure_class, result.message) == ("invalid_output", "out2.json is not a regular file")


def test_a_huge_output_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "output.json"
    with path.open("wb") as f:
        f.truncate(MAX_OUTPUT_BYTES + 10)
    result = read_result(path, 0)
    assert (result.failure_class, result.message) == ("invalid_output", "output.json is larger than 16 MiB")


def test_long_messages_are_clipped(tmp_path: Path) -> None:
    (tmp_path / "output.json").write_text(json.dumps({"status": 1, "message": "x" * 100_000}))
    result = read_result(tmp_path / "output.json", 0)
    assert result.failure_class == "payload_error" and len(result.message) == 4096
