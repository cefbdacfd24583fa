"""The task page's optimisation history in a real Chromium: readable markers, integer point ticks,
far outliers clipped (and shown on request), a remembered log/linear choice, log disabled when a loss
is ≤ 0, the live badge clear of every chart, log-scale parameters in scientific notation.

The chart draws on a canvas; what it drew (scale, y range, ticks, marker radius, clipped count) is
recorded by the drawing code on the canvas as data-* attributes, which these tests read.
Screenshots go to ``build/test-output/ui-history/``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import count
from typing import Any

from tests.conftest import LiveService
from tests.support.web_ui import PilotThread, new_site, submit
from tests.ui.conftest import OUTPUT

SHOTS = OUTPUT / "ui-history"
SPACE = {
    "x": {"method": "uniform", "dimension": {"low": -1, "high": 1}},
    "lr": {"method": "loguniform", "dimension": {"low": 1e-5, "high": 1e-1}},
}


def _task(service: LiveService, outcome: Callable[[int, dict[str, Any]], float | None], points: int = 20) -> int:
    site = new_site()
    task_id = submit(service, site, search_space=SPACE, max_points=points, n_parallel_evaluation=4)
    numbers = count(1)
    pilot = PilotThread(service, site, outcome=lambda job: outcome(next(numbers), job))
    try:
        for _ in range(points):
            assert pilot.run_one()
    finally:
        pilot.stop()
    return task_id


def _login(page: Any, service: LiveService, path: str) -> None:
    page.goto(service.url + "/ui/login?next=" + path)
    page.fill("#token", service.user_token)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(path) + "$"))


def _drawn(page: Any) -> dict[str, Any]:
    page.wait_for_function("() => document.querySelector('#history').dataset.scale !== undefined")
    data = page.locator("#history").evaluate("c => ({...c.dataset})")
    return {**data, "xTicks": json.loads(data["xTicks"]), "yRange": json.loads(data["yRange"])}


def _redrawn(page: Any, attribute: str, value: str) -> dict[str, Any]:
    page.wait_for_function("([a, v]) => document.querySelector('#history').dataset[a] === v", arg=[attribute, value])
    return _drawn(page)


def _overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def test_the_history_chart_clips_a_far_outlier_and_remembers_its_scale(live_service: LiveService, page: Any) -> None:
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)

    def outcome(n: int, job: dict[str, Any]) -> float | None:
        if n == 5:
            return None  # a failed point
        if n == 7:
            return 1e4  # one diverged run
        return float((job["params"]["x"] - 0.3) ** 2 + 0.01)

    task_id = _task(live_service, outcome)
    _login(page, live_service, f"/ui/tasks/{task_id}")

    drawn = _drawn(page)
    assert int(drawn["markerRadius"]) >= 4
    assert drawn["xTicks"] and all(float(t).is_integer() for t in drawn["xTicks"]), drawn["xTicks"]
    assert drawn["clipped"] == "1", drawn
    assert drawn["yRange"][1] < 10, f"the outlier still sets the y range: {drawn['yRange']}"
    lows = page.evaluate(
        f"fetch('/ui/api/tasks/{task_id}/history').then(r => r.json()).then(d => d.best.map(b => b[1]))"
    )
    assert drawn["yRange"][0] < min(lows), "the best point sits on the axis: no padding below it"
    expect(page.locator("#history-note")).to_contain_text("1 far outlier clipped")
    page.screenshot(path=str(SHOTS / "01-outlier-clipped.png"), full_page=True)

    page.check("#history-outliers")
    drawn = _redrawn(page, "clipped", "0")
    assert drawn["yRange"][1] >= 1e4
    page.uncheck("#history-outliers")
    _redrawn(page, "clipped", "1")

    assert drawn["scale"] == "log"  # auto: the losses span more than 100 times
    page.select_option("#history-scale", "linear")
    _redrawn(page, "scale", "linear")
    page.screenshot(path=str(SHOTS / "02-linear.png"), full_page=True)
    page.reload()
    assert page.locator("#history-scale").input_value() == "linear"
    assert _redrawn(page, "scale", "linear")["clipped"] == "1"
    page.select_option("#history-scale", "log")
    _redrawn(page, "scale", "log")

    # The live badge sits in the top bar, over no chart and no table.
    badge = page.locator("header.top .live-status")
    expect(badge).to_be_visible()
    for card in page.locator(".chart-card, #points").all():
        assert not _overlaps(badge.bounding_box(), card.bounding_box())

    # lr is searched on a log scale: the points table shows it as 3.2e-4; x stays plain.
    headers = page.locator("#points thead th").all_inner_texts()
    rows = page.locator("#points tbody tr[data-point]")
    expect(rows.first).to_be_visible()
    lr_cells = rows.locator(f"td:nth-child({headers.index('lr') + 1})").all_inner_texts()
    x_cells = rows.locator(f"td:nth-child({headers.index('x') + 1})").all_inner_texts()
    assert lr_cells and all(re.fullmatch(r"\d(\.\d{1,2})?e-\d+", c) for c in lr_cells), lr_cells
    assert not any("e" in c for c in x_cells), x_cells
    page.screenshot(path=str(SHOTS / "03-log-and-table.png"), full_page=True)


def test_log_scale_is_offered_only_for_positive_losses(live_service: LiveService, page: Any) -> None:
    task_id = _task(live_service, lambda n, job: float(job["params"]["x"]) - 0.5, points=10)
    _login(page, live_service, f"/ui/tasks/{task_id}")
    page.evaluate("localStorage.setItem('hposteer.history.scale', 'log')")
    page.reload()
    drawn = _drawn(page)
    assert drawn["scale"] == "linear" and drawn["logAvailable"] == "false", drawn
    assert page.locator('#history-scale option[value="log"]').is_disabled()
    assert "a loss ≤ 0 has no log" in page.locator("#history-note").inner_text()
