"""Stopping a run in Chromium, on a real `streamlit run`: the Lab's charts grow while it trains,
Stop ends it with what it recorded (drawn as a stopped run, kept in the store), and "Train all N
epochs" trains it in full. Uses test_browser's server, browser and page (skipped with it where
Chromium is missing). SATLAB_STOP_SHOTS=<folder> keeps a screenshot of each stage there."""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import expect

from tests.app.test_browser import (  # noqa: F401 - fixtures, used by name
    _idle, _no_exception, browser, page, server, server_process)

# About 8 s on one core of a 2-core machine (5.5 s for the CLI; within the compute budget).
LONG = "lab?dataset=digits&epochs=40&width=128"
SHOTS = os.environ.get("SATLAB_STOP_SHOTS")


def _shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"))


def _stopped_at(page):
    """The Status metric's line under "stopped" ("by you, at epoch N"), checked with `expect`:
    it waits for the line (a count taken at once, right after the button above it showed,
    found none once in CI), and if the line never reads as expected it says what it read, so
    a reopened run at another epoch fails and names that epoch."""
    status = page.locator('[data-testid="stMetric"]', has_text="Status")
    return status.locator('[data-testid="stMetricDelta"]')


def _charts(page) -> int:
    return page.locator('[data-testid="stVegaLiteChart"]').count()


def test_stop_keeps_the_run_so_far_and_train_all_epochs_trains_it_in_full(server, page):
    page.goto(f"{server}/{LONG}")
    stop = page.get_by_role("button", name="Stop training")
    stop.wait_for(timeout=120_000)
    # The loss and the per-layer gradient norms grow while it trains.
    page.get_by_text("Training: epoch").first.wait_for(timeout=60_000)
    # One snapshot of the page (the chart is redrawn twice a second): the chart's box, the
    # drawing in it, and the page's main column. Both panels and their legends fit the page.
    box, drawn, main = page.evaluate("""() => {
        const chart = document.querySelector('[data-testid="stVegaLiteChart"]');
        const rect = e => { const r = e.getBoundingClientRect();
                            return {x: r.x, width: r.width, height: r.height}; };
        return [rect(chart), rect(chart.querySelector('canvas, svg')),
                rect(document.querySelector('[data-testid="stMain"]'))]; }""")
    assert box["width"] > 600 and box["height"] > 200, box
    assert drawn["x"] + drawn["width"] <= main["x"] + main["width"], (drawn, main)
    assert stop.is_visible()
    _shot(page, "1_training")
    stop.click()
    _idle(page)
    _no_exception(page)
    notice = page.get_by_text(re.compile(r"Stopped by you after epoch \d+ of 40")).inner_text()
    stopped_at = int(re.search(r"epoch (\d+) of 40", notice).group(1))
    assert 1 <= stopped_at < 40
    expect(_stopped_at(page)).to_have_text(f"by you, at epoch {stopped_at}", timeout=30_000)
    assert page.get_by_role("button", name="Stop training").count() == 0
    assert _charts(page) >= 1          # drawn like any run: the Training tab's chart
    _shot(page, "2_stopped")
    page.get_by_role("tab", name="Gradients").click()
    _idle(page)
    _no_exception(page)
    page.locator('[data-testid="stVegaLiteChart"]:visible').first.scroll_into_view_if_needed()
    _shot(page, "3_stopped_gradients")

    # The same settings later: the stopped run from the store, still offering the full run.
    page.goto(f"{server}/{LONG}")
    full = page.get_by_role("button", name="Train all 40 epochs")
    full.wait_for(timeout=120_000)
    _idle(page)
    # What the page said it stopped at is what the store kept and the link reopens.
    expect(_stopped_at(page)).to_have_text(f"by you, at epoch {stopped_at}", timeout=30_000)
    expect(page.get_by_text(f"Stopped by you after epoch {stopped_at} of 40")).to_have_count(
        1, timeout=30_000)
    full.click()
    page.get_by_role("button", name="Stop training").wait_for(timeout=60_000)   # it trains again
    _idle(page)
    _no_exception(page)
    assert page.get_by_text(re.compile("Stopped by you")).count() == 0
    assert page.locator('[data-testid="stMetricValue"]', has_text="done").count() == 1
    _shot(page, "4_trained_in_full")
