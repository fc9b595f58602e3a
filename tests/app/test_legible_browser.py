"""Charts that read at a glance (issue 15 §2), checked in Chromium at a desktop's 1400 px and a
laptop's 1280×800: no chart overlaps another or leaves its column, no table scrolls sideways,
and a sweep heatmap's title fits its chart. Each page is screenshotted (into SATLAB_SHOTS when set, else the test's tmp
folder) to be looked at.

Runs on one `streamlit run` of its own (the server fixtures and waits of test_browser).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from core.lab import sweep_charts
from tests.app.test_browser import (  # noqa: F401 - fixtures, used by name
    CHART_BOXES, LAST, SMALL_SWEEP, _charts_in_their_columns, _no_exception, _settle, browser,
    server, server_process)

SMALL = "depth=2&epochs=2&width=16&max_train=300"
PAGES = {
    "compare_side_by_side": ("compare?" + SMALL + "&b_depth=3&b_epochs=2&b_width=16"
                             "&b_max_train=300&layout=Side+by+side&tab=Gradients", 3),
    # Each run's histograms as small multiples: six panels across ran past the column.
    "compare_side_by_side_histograms": ("compare?" + SMALL + "&b_depth=3&b_epochs=2&b_width=16"
                                        "&b_max_train=300&layout=Side+by+side"
                                        "&tab=Weights+%26+ratios", 2),
    "sweep": (SMALL_SWEEP, 3),
    "playground_side_by_side": ("playground?compare=true&epochs=5", 3),
    "activations": ("activations?epochs=1&depth=2&width=16", 11),
    "initialization": ("initialization?depth=12&width=64", 4),
    # Two panels and a layer legend: beside them the legend ran 133 px past a laptop's column.
    "lab_activations": ("lab?epochs=2&max_train=300&tab=Activations", 3),
    "lab_batch_norm": ("lab?depth=3&width=16&epochs=2&max_train=300&batch_norm=true"
                       "&tab=Batch+norm", 1),
}
VIEWPORTS = {"desktop": (1400, 1000), "laptop": (1280, 800)}

# Per shown table (st.dataframe): how wide its rows are, and how wide its box is. A table wider
# than its box scrolls sideways, hiding its last columns until one scrolls.
TABLES = """() => [...document.querySelectorAll('[data-testid="stDataFrame"]')]
  .filter(e => e.checkVisibility())
  .map(e => { const s = e.querySelector('.dvn-scroller');
              return s && {rows: s.scrollWidth, box: s.clientWidth}; })"""


@pytest.fixture(params=list(VIEWPORTS))
def sized_page(browser, request):  # noqa: F811 - the imported fixture
    width, height = VIEWPORTS[request.param]
    context = browser.new_context(viewport={"width": width, "height": height})
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda err: pg.errors.append(str(err)))
    pg.viewport_name = request.param
    yield pg
    context.close()


def _shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SATLAB_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _overlap(a: dict, b: dict) -> float:
    width = min(a["right"], b["right"]) - max(a["left"], b["left"])
    height = min(a["bottom"], b["bottom"]) - max(a["top"], b["top"])
    return max(0.0, width) * max(0.0, height)


@pytest.mark.parametrize("name", list(PAGES))
def test_charts_stay_in_their_columns_and_apart(server, sized_page, name, tmp_path):  # noqa: F811
    path, charts = PAGES[name]
    page = sized_page
    page.goto(f"{server}/{path}")
    _settle(page, path, charts=charts, timeout=180_000)
    _no_exception(page)
    shot = _shots(tmp_path) / f"{name}_{page.viewport_name}.png"
    _screenshot(page, shot)   # first, so a failure has its picture too
    boxes = _charts_in_their_columns(page)
    assert len(boxes) >= charts, boxes
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert _overlap(a["chart"], b["chart"]) < 1, (a, b)
    # A table's grid is drawn after its box: wait until every shown one has its rows.
    page.wait_for_function(f"({TABLES})().every(t => t)", timeout=30_000)
    for table in page.evaluate(TABLES):   # no table hides a column off its side
        assert table["rows"] <= table["box"] + 1, table


def _screenshot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main block, so the window is made as tall
    as that (widths, and so the layout checked, stay as they were)."""
    width = page.viewport_size["width"]
    height = page.evaluate(
        "document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": width, "height": min(int(height) + 40, 12_000)})
    page.wait_for_timeout(500)
    page.screenshot(path=str(path))


def test_lab_histograms_stay_in_the_page(server, sized_page, tmp_path):  # noqa: F811
    """The Weights & ratios tab: its ratios chart (two panels and the layers' legend: 157 px
    past a laptop's column with the legend beside them), then the weight and weight-gradient
    histograms, three layers a row."""
    path = "lab?epochs=2&max_train=300&tab=Weights+%26+ratios"
    page = sized_page
    page.goto(f"{server}/{path}")
    _settle(page, path, charts=3, timeout=180_000)
    _screenshot(page, _shots(tmp_path) / f"lab_histograms_{page.viewport_name}.png")
    assert len(_charts_in_their_columns(page)) == 3


def test_sweep_heatmap_titles_fit_their_charts(server, sized_page):  # noqa: F811
    """The title lines the heatmaps carry, measured in the browser's own font, are no wider than
    the chart drawn for them: none is cut off."""
    page = sized_page
    page.goto(f"{server}/{SMALL_SWEEP}")
    _settle(page, SMALL_SWEEP, charts=3, timeout=180_000)
    widths = page.evaluate(CHART_BOXES)
    assert len(widths) == 3
    # The titles as the page's sweep has them (relu and tanh: both flat-region words).
    table = pd.DataFrame({"x": ["1", "2", "1", "2"], "y": ["relu", "relu", "tanh", "tanh"],
                          "key": list("abcd"), "val_accuracy": 0.5, "depth_ratio": 1.0,
                          "flat_metric": ["inactive"] * 2 + ["saturation"] * 2,
                          "flat_max": 0.1, "diverged": False, "batched": False})
    lines = [line for metric in sweep_charts.HEATMAPS for line in sweep_charts.heatmap(
        table, metric, x_title="Depth", y_title="Activation").to_dict()["title"]["text"]]
    # Streamlit's chart theme: titles in the page's body font (loaded by now), bold, 16 px.
    widest = page.evaluate("""async lines => {
        await document.fonts.ready;
        const ctx = document.createElement('canvas').getContext('2d');
        ctx.font = 'bold 16px ' + getComputedStyle(document.body).fontFamily;
        return Math.max(...lines.map(l => ctx.measureText(l).width));
    }""", lines)
    narrowest = min(b["chart"]["right"] - b["chart"]["left"] for b in widths)
    assert widest <= narrowest, (widest, narrowest)
    # And each heatmap is tall enough to read: two rows of cells, a title and an axis.
    assert all(b["chart"]["bottom"] - b["chart"]["top"] >= 200 for b in widths), widths
