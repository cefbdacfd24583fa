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

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, LiveService
from tests.ui.ui_helpers import PilotThread, new_site, submit

CHROMIUM = os.environ.get("HPOSTEER_TEST_CHROMIUM", "/usr/bin/chromium")
OUTPUT = Path(os.environ.get("HPOSTEER_TEST_OUTPUT") or Path(__file__).resolve().parents[2] / "build" / "test-output")
SHOTS = OUTPUT / "ui-screenshots"


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright's Python package is not installed (make installs it: the dev group of uv.lock)"
    if shutil.which(CHROMIUM) is None:
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set HPOSTEER_TEST_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _unavailable()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true but the browser tests cannot run: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, live_service: LiveService) -> Iterator[Any]:
    """A fresh browser context; fails the test on a script error, a console error, or a request
    that leaves the service."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    tab.on("console", lambda msg: msg.type == "error" and problems.append(f"console: {msg.text}"))
    tab.on(
        "request",
        lambda req: req.url.startswith((live_service.url, "data:")) or problems.append(f"outside request: {req.url}"),
    )
    tab.on("dialog", lambda dialog: dialog.accept())  # kill and retry ask first
    tab.set_default_timeout(20_000)
    try:
        yield tab
    finally:
        context.close()
    assert problems == []


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
