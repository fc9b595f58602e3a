"""The Classics page in a real browser: /classics?classic=glorot2010 draws its figure and its
verdict; the screenshot is saved under test-artifacts/shots/ to look at."""

from __future__ import annotations

from tests.app.test_browser import (ARTIFACTS, _idle, _no_exception, _watched,  # noqa: F401
                                    browser, page, server, server_process)

SHOTS = ARTIFACTS / "shots"


def test_a_classic_s_link_draws_its_figure_and_verdict(server, page):
    page.goto(f"{server}/classics?classic=glorot2010")
    page.get_by_text("What differs from the paper").wait_for(timeout=180_000)
    page.wait_for_function("document.querySelectorAll('.vega-embed canvas, .vega-embed svg')"
                           ".length >= 1", timeout=60_000)
    _idle(page)
    _no_exception(page)
    verdict = page.get_by_text("✓ Reproduced: From step 0 to step 499")
    assert verdict.count() == 1
    page.set_viewport_size({"width": 1400, "height": 2000})
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "classics_glorot2010.png"), full_page=True)
