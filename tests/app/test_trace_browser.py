"""The Lab in Chromium for a run with eval_every and target_loss: the "Steps to loss" headline,
its status "reached target", the validation trace in the Training tab, the traced units and the
98th activation percentiles in the Activations tab, each drawn
(screenshots under test-artifacts/shots/, to look at)."""

from __future__ import annotations

from core.lab.trace_charts import ACT_TITLE, UNIT_TITLE, VAL_TITLE
from tests.app.test_browser import (_idle, _no_exception, _nothing_cut_short,  # noqa: F401
                                    _settle, browser, page, server, server_process)
from tests.app.test_polish_browser import _shot
from tests.lab.test_trace_charts import TRACED


def test_the_lab_draws_its_traces_and_the_steps_to_the_loss_criterion(server, page):
    query = "&".join(f"{k}={v}" for k, v in TRACED.to_params().items())
    page.goto(f"{server}/lab?{query}")
    _settle(page, "lab", charts=2)
    _no_exception(page)
    headline = page.locator('[data-testid="stMetric"]').filter(has_text="Steps to loss 1")
    assert headline.count() == 1 and "not reached" not in headline.inner_text()
    status = page.locator('[data-testid="stMetric"]').filter(has_text="Status").inner_text()
    assert "reached" in status and "target, at step" in status
    _shot(page, "lab_steps_to_loss")
    # Seven headline numbers on a laptop: in seven columns most were cut short; the row wraps.
    page.set_viewport_size({"width": 1280, "height": 800})
    _nothing_cut_short(page)
    page.set_viewport_size({"width": 1400, "height": 1000})
    trace = page.locator('[data-testid="stVegaLiteChart"]:visible').filter(
        has_text=VAL_TITLE.format(every=TRACED.eval_every))
    trace.wait_for(timeout=60_000)
    trace.scroll_into_view_if_needed()
    _shot(page, "lab_val_trace")
    page.get_by_role("tab", name="Activations", exact=True).click()
    units = page.locator('[data-testid="stVegaLiteChart"]:visible').filter(
        has_text=UNIT_TITLE.format(layer="hidden1"))
    units.wait_for(timeout=60_000)
    _idle(page)
    _no_exception(page)
    units.scroll_into_view_if_needed()
    _shot(page, "lab_unit_traces")
    act = page.locator('[data-testid="stVegaLiteChart"]:visible').filter(has_text=ACT_TITLE)
    act.wait_for(timeout=60_000)
    act.scroll_into_view_if_needed()
    _idle(page)
    _shot(page, "lab_act_percentile")
