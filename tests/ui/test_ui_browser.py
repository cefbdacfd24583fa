"""The web UI in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright's Python
package; Playwright's own browser download is never used): log in, watch a running task update
without a reload while a pilot completes points over the API, page/sort/filter the points table,
open a point's attempts, retry and kill, look at pilots. Screenshots go to
``build/test-output/ui-screenshots/`` (git-ignored; ``$HPOSTEER_TEST_OUTPUT`` overrides the
``build/test-output`` part).

Without Playwright or Chromium the test skips, except under CI=true (.ci/run installs both), where
it fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import LiveService
from tests.support.web_ui import PilotThread, new_site, submit
from tests.ui.conftest import OUTPUT

SHOTS = OUTPUT / "ui-screenshots"


@pytest.fixture
def shot(page: Any) -> Callable[[str], None]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    return lambda name: page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _finished(page: Any) -> int:
    found = re.search(r"(\d[\d,]*) finished points", page.locator("#history-note").inner_text())
    return int(found.group(1).replace(",", "")) if found else 0


def _losses(page: Any) -> list[float]:
    cells = page.locator("#points tbody tr[data-point] td:nth-child(3)").all_inner_texts()
    return [float(c) for c in cells]


def test_a_user_watches_a_running_task_and_acts_on_it(
    live_service: LiveService, page: Any, shot: Callable[[str], None]
) -> None:
    from playwright.sync_api import expect

    site = new_site()
    task_id = submit(
        live_service, site, name="user.alice.browser", max_points=300, n_points_per_iteration=10,
        n_parallel_evaluation=10, max_attempts=1,
    )  # fmt: skip
    counter = iter(range(10**6))
    pilot = PilotThread(
        live_service,
        site,
        pace_s=0.15,
        outcome=lambda job: None if next(counter) % 6 == 5 else (job["params"]["x"] - 0.3) ** 2,
    )
    try:
        for _ in range(8):
            assert pilot.run_one()

        page.goto(live_service.url + "/ui/tasks")
        expect(page).to_have_url(re.compile(r"/ui/login\?next="))
        page.fill("#token", live_service.user_token)
        page.click("button[type=submit]")
        row = page.locator(f'tr[data-task="{task_id}"]')
        expect(row).to_contain_text("user.alice.browser/")
        expect(row).to_contain_text("running")
        shot("01-task-list")

        row.locator("td.name a").click()
        expect(page.locator("#points tbody tr[data-point]").first).to_be_visible()
        expect(page.locator("#history-note")).to_contain_text("finished points")
        page.evaluate("window.__sameDocument = true")
        before = _finished(page)
        done_before = page.locator("#live .c-done").inner_text()
        pilot.start()  # a pilot completes points from now on; the page must follow without a reload
        page.wait_for_function(
            "n => { const m = /(\\d+) finished/.exec(document.querySelector('#history-note').textContent);"
            " return m && +m[1] >= n; }",
            arg=before + 5,
        )
        expect(page.locator("#live .c-done")).not_to_have_text(done_before)
        assert page.evaluate("window.__sameDocument") is True
        assert _finished(page) >= before + 5
        shot("02-task-live")

        page.select_option("#f-state", "done")
        page.wait_for_function(
            "() => { const rows = [...document.querySelectorAll('#points tbody tr[data-point]')];"
            " return rows.length > 0 && rows.every(r => r.dataset.state === 'done'); }"
        )
        page.click('#points th[data-sort="loss"]')
        expect(page.locator('#points th[data-sort="loss"]')).to_have_attribute("aria-sort", "ascending")
        losses = _losses(page)
        assert losses == sorted(losses) and len(losses) > 5
        page.click('#points th[data-sort="loss"]')
        expect(page.locator('#points th[data-sort="loss"]')).to_have_attribute("aria-sort", "descending")
        page.wait_for_function(
            "() => { const v = [...document.querySelectorAll('#points tbody tr[data-point] td:nth-child(3)')]"
            ".map(td => parseFloat(td.textContent)); return v.length > 1 && v[0] >= v[v.length - 1]; }"
        )
        page.select_option("#f-size", "25")
        page.click('#pager button[data-go="next"]')
        expect(page.locator("#page-info")).to_contain_text("page 2 of")
        expect(page).to_have_url(re.compile(r"pstate=done.*page=2|page=2.*pstate=done"))
        shot("03-points-table")

        first = page.locator("#points tbody tr[data-point]").first
        number = first.get_attribute("data-point")
        first.locator("td a").click()
        expect(page.locator("h1")).to_contain_text(f"Point {number}")
        expect(page.locator("#timeline rect")).to_have_count(1)
        expect(page.locator("#attempt-1")).to_contain_text("succeeded")
        expect(page.locator("#attempt-1")).to_contain_text(f"wn-{site.lower()}")
        shot("04-point-attempts")
        page.go_back()

        expect(page.locator("#retry")).to_be_visible()  # failed points have appeared meanwhile
        page.click("#retry")
        expect(page.locator("#notice")).to_contain_text("re-queued")
        shot("05-retried")

        page.click("#kill")
        expect(page.locator("#notice")).to_contain_text("Task killed")
        expect(page.locator("#live .summary .badge").first).to_have_text("killed")
        expect(page.locator("#kill")).to_have_count(0)
        shot("06-killed")
    finally:
        pilot.stop()

    page.click("text=Pilots & sites")
    expect(page.locator("#pilots-body")).to_contain_text(site)
    expect(page.locator("#pilots-body")).to_contain_text(f"wn-{site.lower()}")
    shot("07-pilots-and-sites")
    assert len(list(SHOTS.glob("*.png"))) == 7
