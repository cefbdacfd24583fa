"""The web UI's summaries as pure functions: samples, best-so-far steps, importance, chart axes."""

from __future__ import annotations

import itertools
import random

import pytest

from hposteer.service.core import analysis


def test_even_numbers_spread_over_the_range_and_keep_both_ends() -> None:
    assert analysis.even_numbers(5, 10) == [1, 2, 3, 4, 5]
    sample = analysis.even_numbers(100_000, 1500)
    assert len(sample) == 1500 and sample[0] == 1 and sample[-1] == 100_000
    gaps = {b - a for a, b in itertools.pairwise(sample)}
    assert max(gaps) - min(gaps) <= 1
    assert analysis.even_numbers(0, 10) == [] and analysis.even_numbers(7, 1) == [7]


@pytest.mark.parametrize("mode", ["min", "max"])
def test_records_of_a_grown_set_are_the_records_of_old_records_and_new_pairs(mode: str) -> None:
    rng = random.Random(3)
    pairs = [(n, rng.random()) for n in range(1, 400)]
    rng.shuffle(pairs)
    old, new = pairs[:250], pairs[250:]
    everything = analysis.records(pairs, mode)
    assert analysis.records([*analysis.records(old, mode), *new], mode) == everything
    best = None
    for n, loss in sorted(pairs):  # the definition, step by step
        if best is None or (loss > best if mode == "max" else loss < best):
            assert (n, loss) in everything
            best = loss
    assert len(everything) == len({n for n, _ in everything})


def test_records_ignore_a_repeated_pair_and_a_tie_after_the_first() -> None:
    assert analysis.records([(3, 1.0), (1, 2.0), (3, 1.0), (5, 1.0)], "min") == [(1, 2.0), (3, 1.0)]


def test_ranks_share_ties() -> None:
    assert analysis.ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]


def test_importance_finds_what_the_loss_depends_on() -> None:
    rng = random.Random(1)
    samples = []
    for _ in range(2000):
        p = {"x": rng.uniform(-1, 1), "noise": rng.uniform(0, 1), "act": rng.choice(["a", "b", "c"])}
        samples.append((p, p["x"] ** 2 + {"a": 0.0, "b": 0.3, "c": 0.6}[p["act"]] + rng.gauss(0, 0.02)))
    result = {i.name: i for i in analysis.importance(["x", "noise", "act"], samples)}
    assert result["noise"].importance < 0.01
    assert result["x"].importance > 0.3 and result["act"].importance > 0.3
    assert result["act"].spearman is None and result["x"].groups == 10
    # x**2 is symmetric: no monotone trend, although x matters (ω² sees it, Spearman does not)
    assert abs(result["x"].spearman or 0) < 0.1


def test_importance_needs_a_few_points() -> None:
    assert analysis.importance(["x"], [({"x": 1.0}, 1.0)] * (analysis.MIN_POINTS - 1)) == []


def test_axes_from_the_space_and_the_values() -> None:
    log = analysis.axis("lr", {"method": "loguniform", "dimension": {"low": 1e-5, "high": 1e-1}}, [1e-3, 2e-2])
    assert log == {"name": "lr", "kind": "log", "min": 1e-5, "max": 1e-1}
    wide = analysis.axis("x", {"method": "normal", "dimension": {"mu": 0, "sigma": 1}}, [-3.0, 4.5])
    assert wide["kind"] == "linear" and (wide["min"], wide["max"]) == (-3.0, 4.5)
    cat = analysis.axis("act", {"method": "categorical", "dimension": {"categories": ["relu", 1]}}, ["relu", True])
    assert cat["categories"] == ['"relu"', "1", "true"]
    assert analysis.axis_value(cat, True) == 2 and analysis.axis_value(cat, "gelu") is None
    assert analysis.axis_value(log, 0.5) == 0.5 and analysis.axis_value(log, None) is None
