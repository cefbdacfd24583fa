"""%IN and %OUT of a steering container, exactly as iDDS writes and reads them (pure)."""

from __future__ import annotations

import json

import pytest

from hposteer.core.space_json import parse_search_space
from hposteer.service.core.steering import Observation, SteeringError
from hposteer.service.core.steering_files import input_document, input_text, parse_output

RAW = {
    "lr": {"method": "loguniform", "dimension": {"low": 1e-5, "high": 0.1}},
    "units": {"method": "categorical", "dimension": {"categories": [32, 64, 128]}},
}
SPACE = parse_search_space(RAW)
HISTORY = [
    Observation(1, {"lr": 0.001, "units": 64}, 0.52),
    Observation(2, {"lr": 0.01, "units": 32}, None),
    Observation(3, {"lr": 0.02, "units": 128}, 1e5, failed=True),
]


def test_in_holds_every_point_as_point_loss_with_failures_at_1e5_and_the_space_as_submitted() -> None:
    assert json.loads(input_text(HISTORY, RAW, segmented=False, model_id=0)) == {
        "points": [
            [{"lr": 0.001, "units": 64}, 0.52],
            [{"lr": 0.01, "units": 32}, None],
            [{"lr": 0.02, "units": 128}, 100000.0],
        ],
        "opt_space": RAW,
    }
    no_loss = [Observation(4, {"lr": 0.001, "units": 64}, None, failed=True)]
    assert input_document(no_loss, RAW, segmented=False, model_id=0)["points"][0][1] == 1e5


def test_a_segmented_in_pairs_each_point_with_its_model_id() -> None:
    document = input_document(HISTORY[:2], RAW, segmented=True, model_id=1)
    assert document == {
        "points": [[[1, {"lr": 0.001, "units": 64}], 0.52], [[1, {"lr": 0.01, "units": 32}], None]],
        "opt_space": [{"model_id": 1, "search_space": RAW}],
    }


def test_out_points_are_returned_and_an_empty_list_means_exhausted() -> None:
    text = json.dumps([{"lr": 0.00034, "units": 128}, {"units": 64, "lr": 0.00016}])
    assert parse_output(text, SPACE, segmented=False, model_id=0) == [
        {"lr": 0.00034, "units": 128},
        {"lr": 0.00016, "units": 64},
    ]
    assert parse_output("[]", SPACE, segmented=False, model_id=0) == []
    segmented = json.dumps([[2, {"lr": 0.001, "units": 32}]])
    assert parse_output(segmented, SPACE, segmented=True, model_id=2) == [{"lr": 0.001, "units": 32}]


@pytest.mark.parametrize(
    ("text", "segmented", "reason"),
    [
        ("", False, "not valid JSON"),
        ("[{'lr': 1}]", False, "not valid JSON"),
        ('{"lr": 0.001, "units": 32}', False, "JSON list of points, not an object"),
        ("null", False, "not null"),
        ('[[0, {"lr": 0.001, "units": 32}]]', False, "point 0 of the output must be a dict"),
        ('[{"lr": 0.001, "units": 32}, {"lr": 0.001}]', False, "1 of the output is outside the search space: missing"),
        ('[{"lr": 0.001, "units": 32, "x": 1}]', False, "unknown parameter 'x'"),
        ('[{"lr": 0.5, "units": 32}]', False, "lr=0.5 is not in"),
        ('[{"lr": 0.001, "units": 33}]', False, "units=33 is not in"),
        ('[{"lr": 0.001, "units": 32}]', True, "must be [model_id, {...}]"),
        ('[[1, {"lr": 0.001, "units": 32}]]', True, "model_id 1, but this run steers model_id 0"),
    ],
)
def test_anything_else_in_out_fails_the_run_saying_why(text: str, segmented: bool, reason: str) -> None:
    with pytest.raises(SteeringError) as info:
        parse_output(text, SPACE, segmented=segmented, model_id=0)
    assert reason in str(info.value), str(info.value)
