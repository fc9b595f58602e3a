"""Scrubbing the Lab's per-epoch charts in Chromium: the chart's own slider redraws it in the
browser with no script run, Play steps the epoch, and the network diagram fits its column.

Shares test_browser's server, browser and page fixtures (and its skips when Chromium is absent).
"""

from __future__ import annotations

from tests.app.test_browser import (  # noqa: F401 - pytest fixtures
    ARTIFACTS, _no_exception, _settle, browser, page, server, server_process)

# Set the slider, then wait frame by frame until the chart's drawing differs: the time a scrub
# takes to show, in ms, or -1 if the canvas never changed within 3 s.
SCRUB = """async ([chart, value]) => {
  const box = document.querySelectorAll('[data-testid="stVegaLiteChart"]')[chart];
  const input = box.querySelector('input[type=range]');
  // Streamlit draws with Vega's canvas or SVG renderer: a snapshot of either.
  const drawn = () => { const c = box.querySelector('canvas');
                        return c ? c.toDataURL() : box.querySelector('svg.marks').outerHTML; };
  const before = drawn();
  const start = performance.now();
  input.value = value;
  input.dispatchEvent(new Event('input', {bubbles: true}));
  while (performance.now() - start < 3000) {
    await new Promise(r => requestAnimationFrame(r));
    if (drawn() !== before) return performance.now() - start;
  }
  return -1;
}"""


def _diagram(page) -> int:
    """Index of the network diagram among the page's charts (the Training tab's second)."""
    return page.eval_on_selector_all(
        '[data-testid="stVegaLiteChart"]',
        "els => els.findIndex(e => e.checkVisibility() && e.querySelector('input[type=range]'))")


def test_the_diagram_scrubs_in_the_browser_and_play_steps_the_epoch(page, server):
    page.goto(f"{server}/lab")
    _settle(page, "lab", charts=2)
    _no_exception(page)
    chart = _diagram(page)
    assert chart >= 0
    box = page.locator('[data-testid="stVegaLiteChart"]').nth(chart)
    main = page.locator('[data-testid="stMainBlockContainer"]').bounding_box()
    drawn = box.locator("canvas, svg.marks").first.bounding_box()
    assert drawn["width"] > 300 and drawn["height"] > 150
    assert main["x"] <= drawn["x"] and drawn["x"] + drawn["width"] <= main["x"] + main["width"]
    page.screenshot(path=str(ARTIFACTS.mkdir(exist_ok=True) or ARTIFACTS / "scrub_lab.png"))
    runs_before = page.evaluate("window.performance.getEntriesByType('resource').length")
    times = [page.evaluate(SCRUB, [chart, value]) for value in (0, 5, 2)]
    assert all(t >= 0 for t in times), times   # each scrub changed the picture ...
    state = page.locator('[data-testid="stApp"]').get_attribute("data-test-script-state")
    assert state == "notRunning"                # ... without a script run
    assert page.evaluate("window.performance.getEntriesByType('resource').length") == runs_before
    print(f"scrub to the drawn canvas: {', '.join(f'{t:.0f}' for t in times)} ms")
    box.screenshot(path=str(ARTIFACTS / "scrub_diagram_epoch2.png"))
    # Play: the page's epoch scrubber advances by itself.
    thumbs = "() => [...document.querySelectorAll('[data-testid=stSliderThumbValue]')]" \
             ".map(t => t.textContent).join('|')"
    start = page.evaluate(thumbs)
    page.get_by_text("Play", exact=True).click()
    page.wait_for_function(
        f"start => ({thumbs})() !== start", arg=start, timeout=20_000)
    page.get_by_text("Play", exact=True).click()
    _no_exception(page)


def test_a_deep_networks_diagram_stays_in_its_column_on_a_laptop(page, server):
    """A 15-layer net's two panels ran 1,800 px wide, the second off the page: now its layers
    close up and the panels stand one above the other, each whole within the page's column."""
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{server}/lab?depth=15&width=16&epochs=1&max_train=300")
    _settle(page, "lab", charts=2)
    _no_exception(page)
    box = page.locator('[data-testid="stVegaLiteChart"]').nth(_diagram(page))
    box.scroll_into_view_if_needed()
    main = page.locator('[data-testid="stMainBlockContainer"]').bounding_box()
    drawn = box.locator("canvas, svg.marks").first.bounding_box()
    assert main["x"] <= drawn["x"] and drawn["x"] + drawn["width"] <= main["x"] + main["width"]
    assert drawn["height"] > 2 * 220   # two panels, one above the other
    box.screenshot(path=str(ARTIFACTS.mkdir(exist_ok=True) or ARTIFACTS / "deep_diagram.png"))
