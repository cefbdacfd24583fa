"""The browser fixtures of the web UI's tests: Debian's Chromium driven by Playwright's Python
package (never Playwright's own browser download). Without either the tests skip, except under
CI=true (.ci/run installs both), where they fail."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, LiveService

CHROMIUM = os.environ.get("HPOSTEER_TEST_CHROMIUM", "/usr/bin/chromium")
OUTPUT = Path(os.environ.get("HPOSTEER_TEST_OUTPUT") or Path(__file__).resolve().parents[2] / "build" / "test-output")


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
