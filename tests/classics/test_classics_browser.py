"""The Classics page in a real browser: /classics?classic=... draws the classic's figure and its
verdict; screenshots are saved under test-artifacts/shots/ to look at. He et al.'s classic is
left out here: its two 30-epoch runs take about 35 s (its verdict is tested in
test_classics.py, its page was checked by hand); so are Schoenholz et al.'s sweep of 40 cells
(16-50 s here; tests/classics/test_schoenholz.py) and Saxe et al.'s 40-run learning-rate
search (10-45 s; tests/classics/test_saxe2013.py), their pages checked by hand."""

from __future__ import annotations

import pytest

from tests.app.test_browser import (ARTIFACTS, _charts_in_their_columns, _idle,  # noqa: F401
                                    _no_exception, _watched, browser, page, server,
                                    server_process)

SHOTS = ARTIFACTS / "shots"


@pytest.mark.parametrize("classic,verdict", [
    ("glorot2010", "✓ Reproduced: From step 0 to step 499"),
    ("ioffe2015", "✓ Reproduced: With batch norm the validation accuracy reached 80% at step"),
    ("pascanu2013", "✓ Reproduced: At initialisation the vanilla RNN's ‖∂L/∂h_1‖ is")],
    ids=["glorot2010", "ioffe2015", "pascanu2013"])
def test_a_classic_s_link_draws_its_figure_and_verdict(server, page, classic, verdict):
    """In a laptop's window, where the figure fits the page's column (legends beside the
    panels ran 67-136 px past it)."""
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{server}/classics?classic={classic}")
    page.get_by_text("What differs from the paper").wait_for(timeout=180_000)
    page.wait_for_function("document.querySelectorAll('.vega-embed canvas, .vega-embed svg')"
                           ".length >= 1", timeout=60_000)
    _idle(page)
    _no_exception(page)
    assert page.get_by_text(verdict).count() == 1
    _charts_in_their_columns(page)
    page.set_viewport_size({"width": 1400, "height": 2000})
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"classics_{classic}.png"), full_page=True)
