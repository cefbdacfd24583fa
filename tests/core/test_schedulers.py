"""The multi-fidelity schedulers' decisions (pure core): known cases from the papers' definitions,
and properties that make them safe to recompute on any replica."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hposteer.service.core.schedulers.asha import Asha
from hposteer.service.core.schedulers.curves import Curve, Report
from hposteer.service.core.schedulers.desired_score import DesiredScore
from hposteer.service.core.schedulers.hyperband import Hyperband
from hposteer.service.core.schedulers.median import MedianRule
from hposteer.service.core.schedulers.objective import Objective, parse_objective
from hposteer.service.core.schedulers.rungs import RungLadder, ladder_problems
from hposteer.service.core.schedulers.sha import RungMember, SuccessiveHalving
from hposteer.service.core.schedulers.verdict import Action


def curve(point_id: int, values: list[float], *, first_seq: int, stride: int = 1, completed: bool = False) -> Curve:
    reports = [Report(first_seq + i * stride, i + 1, v) for i, v in enumerate(values)]
    done = reports[-1].seq + 1 if completed else None
    return Curve.of(point_id, reports, completed_seq=done)


# --- rung ladder ---------------------------------------------------------------------------------------------


def test_rungs_follow_the_geometric_ladder() -> None:
    assert RungLadder(1, 27, 3).budgets == (1, 3, 9, 27)
    assert RungLadder(1, 30, 3).budgets == (1, 3, 9, 27, 30)
    assert RungLadder(1, 16, 2, min_early_stopping_rate=2).judged == (4, 8)
    assert RungLadder(5, 5, 2).judged == ()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, 10, 1, 0), "reduction_factor must be at least 2"),
        ((10, 1, 2, 0), "min_resource (10) is above max_resource (1); swap them"),
        ((1, 10, 2, 5), "lower min_early_stopping_rate"),
        ((0, 10, 2, 0), "min_resource must be at least 1"),
        ((1, 10, 2.5, 0), "reduction_factor must be a whole number"),
        ((1, 10, True, 0), "reduction_factor must be a whole number"),
    ],
)
def test_senseless_ladders_are_refused_with_the_fix(args: tuple[object, ...], message: str) -> None:
    assert any(message in p for p in ladder_problems(*args))
    low, high, eta, rate = args
    with pytest.raises(ValueError, match="sha: "):
        SuccessiveHalving.from_options(4, low, high, eta, min_early_stopping_rate=rate)  # type: ignore[arg-type]


def test_objective_options() -> None:
    assert parse_objective("top5_accuracy", "max", "sha") == Objective("top5_accuracy", "max")
    with pytest.raises(ValueError, match="direction must be 'min' or 'max', got 'up'"):
        parse_objective("loss", "up", "asha")
    with pytest.raises(ValueError, match="metric must be the name"):
        parse_objective("", "min", "asha")


# --- median rule ---------------------------------------------------------------------------------------------


def test_median_rule_stops_a_point_worse_than_the_median_of_running_averages() -> None:
    completed = [
        curve(1, [1.0, 0.8, 0.6], first_seq=0, completed=True),  # running averages: 1.0, 0.9, 0.8
        curve(2, [2.0, 1.0, 0.9], first_seq=10, completed=True),  # 2.0, 1.5, 1.33
        curve(3, [0.5, 0.4, 0.3], first_seq=20, completed=True),  # 0.5, 0.45, 0.4
    ]
    rule = MedianRule()
    bad = curve(9, [1.2, 1.1], first_seq=100)
    good = curve(8, [0.9, 0.85], first_seq=200)
    assert rule.decide(bad, bad.reports[0], completed).action is Action.STOP  # 1.2 > median(1.0, 2.0, 0.5)
    assert rule.decide(good, good.reports[1], completed).action is Action.CONTINUE  # 0.85 <= 0.9
    verdict = rule.decide(bad, bad.reports[1], completed)
    assert "median rule at step 2" in verdict.reason and "3 completed points" in verdict.reason


def test_median_rule_waits_for_enough_completed_points_and_for_warmup() -> None:
    completed = [curve(i, [0.1, 0.1], first_seq=10 * i, completed=True) for i in range(2)]
    bad = curve(9, [5.0, 5.0], first_seq=100)
    assert MedianRule().decide(bad, bad.reports[1], completed).action is Action.CONTINUE
    assert MedianRule(min_completed=2).decide(bad, bad.reports[1], completed).action is Action.STOP
    assert MedianRule(min_completed=2, warmup_steps=3).decide(bad, bad.reports[1], completed).action is Action.CONTINUE


def test_median_rule_counts_only_points_completed_before_the_report() -> None:
    late = [curve(i, [0.1, 0.1], first_seq=1000 + 10 * i, completed=True) for i in range(3)]
    bad = curve(9, [5.0, 5.0], first_seq=100)
    assert MedianRule().decide(bad, bad.reports[1], late).action is Action.CONTINUE


values = st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(values, min_size=3, max_size=6), values)
def test_median_rule_is_symmetric_in_the_direction(others: list[list[float]], mine: list[float]) -> None:
    completed = [curve(i, v, first_seq=100 * i, completed=True) for i, v in enumerate(others)]
    negated = [curve(i, [-x for x in v], first_seq=100 * i, completed=True) for i, v in enumerate(others)]
    point = curve(99, mine, first_seq=10_000)
    flipped = curve(99, [-x for x in mine], first_seq=10_000)
    for here, there in zip(point.reports, flipped.reports, strict=True):
        a = MedianRule().decide(point, here, completed).action
        b = MedianRule(Objective("loss", "max")).decide(flipped, there, negated).action
        assert a is b


# --- ASHA ----------------------------------------------------------------------------------------------------


def test_asha_keeps_the_best_fraction_at_each_rung_in_arrival_order() -> None:
    asha = Asha(RungLadder(1, 9, 3))  # rungs at 1 and 3
    points = [curve(i, [v], first_seq=i) for i, v in enumerate([0.5, 0.4, 0.9, 0.3, 0.6, 0.2])]
    verdicts = [asha.decide(p, p.reports[0], points).action for p in points]
    # n=1: keep 1 (0.5 yes); n=2: keep 1 (0.4 best); n=3: keep 1 (0.9 no); n=4: keep 1 (0.3 best);
    # n=5: keep 1 (0.6 no); n=6: keep 2 (0.2 best)
    assert verdicts == [Action.CONTINUE, Action.CONTINUE, Action.STOP, Action.CONTINUE, Action.STOP, Action.CONTINUE]


def test_asha_judges_a_report_that_jumps_over_rungs_at_each_of_them() -> None:
    asha = Asha(RungLadder(1, 27, 3))
    others = [curve(i, [0.1, 0.1, 0.1], first_seq=10 * i) for i in range(3)]
    jumper = Curve.of(9, [Report(100, 5, 0.2)])  # reaches rungs 1 and 3 at once
    verdict = asha.decide(jumper, jumper.reports[0], others)
    assert verdict.action is Action.STOP and "asha rung 1" in verdict.reason
    assert asha.decide(jumper, Report(100, 2, 0.2), others).action is Action.CONTINUE  # not its first report at 1


curves_strategy = st.lists(
    st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=10), min_size=1, max_size=12
)


@settings(max_examples=200, deadline=None)
@given(curves_strategy, st.integers(2, 4))
def test_asha_decisions_do_not_change_when_later_reports_arrive(raw: list[list[float]], eta: int) -> None:
    """What a replica decided at report ``seq`` is what any replica decides later from the stored reports."""
    asha = Asha(RungLadder(1, 10, eta))
    points = [curve(i, v, first_seq=i, stride=len(raw)) for i, v in enumerate(raw)]
    final = {(p.point_id, r.seq): asha.decide(p, r, points).action for p in points for r in p.reports}
    for cut in range(max(r.seq for p in points for r in p.reports) + 1):
        then = [p.before(cut + 1) for p in points]
        for p in then:
            for r in p.reports:
                if r.seq == cut:
                    assert asha.decide(p, r, then).action is final[(p.point_id, r.seq)]


@settings(max_examples=200, deadline=None)
@given(curves_strategy, st.integers(2, 4))
def test_asha_never_stops_a_point_that_is_best_at_every_step(raw: list[list[float]], eta: int) -> None:
    asha = Asha(RungLadder(1, 10, eta))
    points = [curve(i, v, first_seq=i, stride=len(raw) + 1) for i, v in enumerate(raw)]
    champion = curve(99, [-1.0] * 10, first_seq=len(raw), stride=len(raw) + 1)
    assert all(asha.decide(champion, r, points).action is Action.CONTINUE for r in champion.reports)


# --- SuccessiveHalving and Hyperband -------------------------------------------------------------------------


def test_sha_pauses_at_the_rung_budget_and_promotes_the_best_fraction() -> None:
    sha = SuccessiveHalving.from_options(
        8, min_epochs=1, max_epochs=8, reduction_factor=2, metric="acc", direction="max"
    )
    assert sha.budgets == (1, 2, 4, 8)
    assert sha.decide(0, 1).action is Action.PAUSE
    assert sha.decide(1, 1).action is Action.CONTINUE
    assert sha.decide(3, 8).action is Action.CONTINUE  # the last rung completes normally
    members = [RungMember(i, v) for i, v in enumerate([0.1, 0.9, 0.5, None, 0.7, 0.7, 0.2, 0.3])]
    promotion = sha.promote(0, members)
    assert promotion is not None
    assert promotion.promoted == (1, 4, 5, 2)  # 8 // 2 = 4 best by accuracy; the tie 4/5 by id
    assert promotion.pruned == (0, 6, 7)  # point 3 failed: neither promoted nor pruned here
    assert sha.promote(0, [*members[:-1], RungMember(7, None, ended=False)]) is None  # wait for the rung
    assert sha.promote(3, members) is None  # nothing after the last rung


def test_hyperband_brackets_match_the_paper() -> None:
    hyperband = Hyperband(1, 81, 3)
    assert hyperband.s_max == 4
    assert [(b.num_runs, b.budgets[0]) for b in hyperband.brackets] == [(81, 1), (34, 3), (15, 9), (8, 27), (5, 81)]
    assert hyperband.brackets[2].budgets == (9, 27, 81)
    assert [hyperband.bracket_of(i) for i in (0, 80, 81, 114, 115, 142, 143, 858, 284)] == [0, 0, 1, 1, 2, 4, 0, 0, 4]
    with pytest.raises(ValueError, match="hyperband: reduction_factor must be at least 2"):
        Hyperband(1, 81, 1)


def test_desired_score() -> None:
    assert DesiredScore(0.9, Objective("accuracy", "max")).reached(0.91)
    assert not DesiredScore(0.1).reached(float("nan"))
    assert DesiredScore(0.1).reached(0.1)
    with pytest.raises(ValueError, match="finite number"):
        DesiredScore(float("inf"))


def test_sha_rung_sizes_shrink_by_the_reduction_factor() -> None:
    sha = SuccessiveHalving.from_options(9, 1, 9, 3)
    alive = list(range(9))
    for rung in itertools.count():
        promotion = sha.promote(rung, [RungMember(i, float(i)) for i in alive])
        if promotion is None:
            break
        alive = list(promotion.promoted)
    assert alive == [0] and rung == 2
