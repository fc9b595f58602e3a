"""The Classics page in a real browser: /classics?classic=... draws the classic's figure and its
verdict; screenshots are saved under test-artifacts/shots/ to look at. He et al.'s classic is
left out here: its two 30-epoch runs take about 35 s (its verdict is tested in
test_classics.py, its page was checked by hand)."""

from __future__ import annotations

import pytest

from tests.app.test_browser import (ARTIFACTS, _idle, _no_exception, _watched,  # noqa: F401
                                    browser, page, server, server_process)

SHOTS = ARTIFACTS / "shots"


@pytest.mark.parametrize("classic,verdict", [
    ("glorot2010", "✓ Reproduced: From step 0 to step 499"),
    ("ioffe2015", "✓ Reproduced: With batch norm the validation accuracy reached 80% at step"),
    ("saxe2013", "✓ Reproduced: Steps to a training loss of 0.05 at depths 2, 4, 8, 16"),
    ("pascanu2013", "✓ Reproduced: At initialisation the vanilla RNN's ‖∂L/∂h_1‖ is")],
    ids=["glorot2010", "ioffe2015", "saxe2013", "pascanu2013"])
def test_a_classic_s_link_draws_its_figure_and_verdict(server, page, classic, verdict):
    page.goto(f"{server}/classics?classic={classic}")
    page.get_by_text("What differs from the paper").wait_for(timeout=180_000)
    page.wait_for_function("document.querySelectorAll('.vega-embed canvas, .vega-embed svg')"
                           ".length >= 1", timeout=60_000)
    _idle(page)
    _no_exception(page)
    assert page.get_by_text(verdict).count() == 1
    page.set_viewport_size({"width": 1400, "height": 2000})
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"classics_{classic}.png"), full_page=True)
