"""The "Your model" page in Chromium, on a real `streamlit run`: a watched loop's file uploaded
through the page's file input, or its run stored and opened by a link, draws the headline, the
doctor and the charts without a JavaScript error. Uses test_browser's server, browser and page (skipped with it where Chromium is missing).
SATLAB_WATCHED_SHOTS=<folder> keeps a screenshot of each stage there."""

from __future__ import annotations

import os
from pathlib import Path

from tests.app.test_browser import (  # noqa: F401 - fixtures, used by name
    _idle, _no_exception, _settle, browser, page, server, server_process)
from core.store import RunStore
from tests.app.test_watched_page import watched_run

SHOTS = os.environ.get("SATLAB_WATCHED_SHOTS")


def _shot(page, name: str, at=None) -> None:
    """A screenshot with the element `at` (a locator) scrolled to the top of the view."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        if at is not None:
            at.first.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"))


def _drawn(page, n: int) -> None:
    page.wait_for_function(
        f"document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length >= {n}",
        timeout=60_000)


def test_an_uploaded_watched_run_draws_the_doctor_and_its_charts(server, page, tmp_path):
    path = tmp_path / "run.json"
    watched_run().save(path)
    page.goto(f"{server}/watched")
    _settle(page, "watched")
    _shot(page, "1_empty")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
    page.get_by_text("Gradient doctor", exact=True).wait_for(timeout=60_000)
    _drawn(page, 1)
    _idle(page)
    _no_exception(page)
    assert page.get_by_text("What may help:").count() >= 1
    _shot(page, "2_watched_headline", page.get_by_text("A watched Sequential"))
    _shot(page, "2_watched_doctor", page.get_by_text("Gradient doctor", exact=True))
    page.get_by_role("tab", name="Gradients").click()
    page.wait_for_url("**tab=Gradients**")
    _drawn(page, 4)
    _idle(page)
    _no_exception(page)
    _shot(page, "3_watched_gradients", page.get_by_role("tablist"))
    for tab in ("Activations", "Weights & ratios"):
        page.get_by_role("tab", name=tab).click()
        _idle(page)
        page.get_by_role("tabpanel").locator(".vega-embed canvas, .vega-embed svg").first \
            .wait_for(timeout=60_000)
        _no_exception(page)
        _shot(page, f"4_watched_{tab.split()[0].lower()}", page.get_by_role("tablist"))
    # A file that is not a run: one error, the charts gone, no traceback.
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(bad))
    page.get_by_text("This file cannot be opened").wait_for(timeout=60_000)
    _idle(page)
    _no_exception(page)
    assert page.locator('[data-testid="stVegaLiteChart"]').count() == 0
    _shot(page, "5_bad_file")


def test_a_link_to_a_stored_watched_run_opens_it(server_process, page):
    url, log, _ = server_process
    key = watched_run().store(RunStore(Path(log).parent / "runs.sqlite3"))   # the server's store
    page.goto(f"{url}/watched?run={key}")
    page.get_by_text("A watched Sequential").wait_for(timeout=60_000)
    _drawn(page, 1)
    _idle(page)
    _no_exception(page)
    assert page.get_by_text("What may help:").count() >= 1
    assert f"run={key}" in page.url
    _shot(page, "6_stored_link")
