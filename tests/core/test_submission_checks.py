"""hposteer.core.submission_checks: the submit checks that the service and `phpo --noSubmit` share."""

from __future__ import annotations

from hposteer.core.placeholders import fill_evaluation_exec, fill_rndm, has_service_placeholders
from hposteer.core.submission_checks import check_offline

GOOD = {"lr": {"method": "uniform", "dimension": {"low": 0, "high": 1}}}


def test_a_valid_task_has_no_issue_and_keeps_the_space_warnings() -> None:
    repeated = {"act": {"method": "categorical", "dimension": {"categories": ["a", "a"]}}}
    checked = check_offline(repeated, [{"name": "s1"}], "")
    assert checked.issues == []
    assert len(checked.warnings) == 1 and checked.warnings[0].startswith("(segment 's1') parameter 'act'")


def test_architecture_first_then_every_space_problem_in_the_servers_shape() -> None:
    bad = {"lr": {"method": "lognormalish", "dimension": {}}, "x": {"method": "uniform", "dimension": {"low": 1}}}
    checked = check_offline(bad, None, "gpu(")
    assert [i.get("field") or (i["parameter"], i["key"]) for i in checked.issues] == [
        "architecture",
        ("lr", "method"),
        ("x", "high"),
    ]
    assert "did you mean 'lognormal'?" in checked.issues[1]["message"]


def test_segments_are_named_in_their_issues() -> None:
    spaces = [{"model_id": 0, "search_space": GOOD}, {"model_id": 1, "search_space": {}}]
    checked = check_offline(spaces, [{"name": "a"}, {"name": "b"}, {"name": "a"}], "")
    assert checked.issues == [
        {"parameter": None, "key": None, "message": "(segment 'b') the search space defines no parameter"},
        {"field": "segments[2].name", "message": "segment name 'a' is used twice"},
    ]
    assert check_offline(None, None, "").issues == [
        {"field": "search_space", "message": "a search space is required (phpo --searchSpaceFile FILE)"}
    ]


def test_the_placeholder_rules_the_pilot_shares() -> None:
    assert has_service_placeholders("run --seed %RNDM:100") and has_service_placeholders("run %SEGMENT_NAME")
    assert not has_service_placeholders("run %RNDM %IN_DATA")
    assert fill_rndm("a %RNDM:10 b %RNDM=1 %RNDM", 5) == "a 15 b 6 %RNDM"
    assert fill_evaluation_exec("%RNDM:1 %SEGMENT_NAME", job_number=2, segment_name="s") == "3 s"
