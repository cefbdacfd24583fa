"""Choosing an optimiser: `--optimizer` names and bare `hpogrid generate` lines."""

from __future__ import annotations

import pytest

from hposteer.service.core.optimizer_spec import (
    OptimizerSpecError,
    is_hpogrid_line,
    parse_hpogrid_line,
    parse_optimizer_name,
)


@pytest.mark.parametrize(
    ("text", "library", "method"),
    [
        (None, "tpe", "TPE"),
        ("tpe", "tpe", "TPE"),
        ("optuna", "tpe", "TPE"),
        ("nevergrad", "nevergrad", "NGOpt"),
        ("nevergrad:CMA", "nevergrad", "CMA"),
        ("skopt", "skopt", "GP"),
        ("scikit-optimize:rf", "skopt", "RF"),
        ("random", "random", None),
        ("GRID", "grid", None),
        ("  nevergrad:TwoPointsDE ", "nevergrad", "TwoPointsDE"),
        ("nevergrad:", "nevergrad", "NGOpt"),
        ("tpe:TPE", "tpe", "TPE"),
        ("skopt:gbrt", "skopt", "GBRT"),
        ("", "tpe", "TPE"),
    ],
)
def test_optimizer_names(text: str | None, library: str, method: str | None) -> None:
    spec = parse_optimizer_name(text)
    assert (spec.library, spec.method, spec.mode) == (library, method, "min")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hyperband", "unknown optimizer 'hyperband'"),
        ("skopt:XGB", "choose one of: GP, RF, ET, GBRT"),
        ("random:fast", "takes no method"),
        ("tpe:CMA", "has no method"),
        ("grid:x", "takes no method"),
        ("hyperopt", "choose one of: tpe, nevergrad"),
    ],
)
def test_bad_optimizer_names_say_what_is_allowed(text: str, message: str) -> None:
    with pytest.raises(OptimizerSpecError, match=message):
        parse_optimizer_name(text)


@pytest.mark.parametrize(
    ("line", "library", "method", "mode"),
    [
        # the documented phpo example: -l= and no -s (fails in hpogrid itself; we accept it)
        (
            "hpogrid generate --n_point=%NUM_POINTS --max_point=%MAX_POINTS --infile=$PWD/%IN "
            "--outfile=$PWD/%OUT -l=nevergrad",
            "nevergrad",
            "RandomSearch",
            "min",
        ),
        ("hpogrid generate -n %NUM_POINTS -l nevergrad --method NGOpt", "nevergrad", "NGOpt", "min"),
        ("hpogrid generate -s space.json -n 3 --lib=skopt --method RF", "skopt", "GP", "min"),
        ("/usr/local/bin/hpogrid generate -n 3 -l optuna --mode max", "tpe", "TPE", "max"),
        ("hpogrid generate -n 3 -l grid", "grid", None, "min"),
        ("hpogrid generate -n 3", "nevergrad", "RandomSearch", "min"),
        ("hpogrid generate -n=3 -l=tpe --mode=max", "tpe", "TPE", "max"),
        ("hpogrid generate --lib nevergrad --method=CMA --mode MAX --metric loss", "nevergrad", "CMA", "max"),
        ("hpogrid generate -i %IN -o %OUT -n %NUM_POINTS -m %MAX_POINTS --lib=grid", "grid", None, "min"),
        ("hpogrid generate --infile 'in put.json' -l skopt --mode min", "skopt", "GP", "min"),
        ("hpogrid generate -l=optuna --method TPE", "tpe", "TPE", "min"),
        ("hpogrid generate -l grid --method anything", "grid", None, "min"),  # hpogrid's grid ignores it too
    ],
)
def test_hpogrid_lines_map_to_the_same_library_and_method(
    line: str, library: str, method: str | None, mode: str
) -> None:
    spec = parse_hpogrid_line(line)
    assert (spec.library, spec.method, spec.mode, spec.source) == (library, method, mode, "hpogrid")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("hpogrid generate -n 3 -l hyperopt", "no builtin equivalent"),
        ("hpogrid generate -n 3 -l bohb", "no builtin equivalent"),
        ("hpogrid generate -n 3 --lib=ax", "use one of -l nevergrad, skopt, optuna, grid"),
        ("hpogrid generate -n 3 -l random", "hpogrid knows grid, skopt, nevergrad"),
        ("hpogrid generate -n 3 -l nevergrad --method", "'--method' needs a value"),
        ("hpogrid generate -n 3 -x 1", "known options: "),
        ("hpogrid generate 'unbalanced", "not an 'hpogrid generate' line"),
        ("hpogrid run -n 3", "not an 'hpogrid generate' line"),
        ("hpogrid generate -n 3 -l foo", "unknown hpogrid library 'foo'"),
        ("hpogrid generate -n 3 --verbose", "unknown hpogrid generate option '--verbose'"),
        ("hpogrid generate -n", "needs a value"),
        ("hpogrid generate -n 3 --mode up", "'min' or 'max'"),
        ("run --rm img hpogrid generate", "not an 'hpogrid generate' line"),
    ],
)
def test_bad_hpogrid_lines(line: str, message: str) -> None:
    with pytest.raises(OptimizerSpecError, match=message):
        parse_hpogrid_line(line)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("hpogrid generate -n 3", True),
        ("/opt/bin/hpogrid generate", True),
        ("hpogrid", False),
        ("python hpogrid generate", False),
        ("hpogrid generate 'oops", False),
    ],
)
def test_which_lines_are_hpogrid_lines(line: str, expected: bool) -> None:
    assert is_hpogrid_line(line) is expected


def test_the_mode_comes_only_from_hpogrid_lines() -> None:
    assert parse_optimizer_name("tpe").mode == "min"
    assert parse_optimizer_name("tpe").source == "option"
    assert parse_optimizer_name(None).source == "default"
    assert parse_hpogrid_line("hpogrid generate -l nevergrad --mode max").name == "nevergrad:RandomSearch"
