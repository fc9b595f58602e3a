"""Issue 15's first-visit polish in a real browser: the lessons' path on Home in the visitor's
light and dark mode, settings without effect disabled in the Lab's sidebar, Compare's stored
runs picked by what they are, and the Initialization page's plain summary before its theory.

Each test saves its screenshots under test-artifacts/shots/ (to look at) and checks the boxes
it promises: what shows, where, and that nothing overlaps.
"""

from __future__ import annotations

import re

import pytest

from app_pages.kit.lessons import PATH
from tests.app.test_browser import (ARTIFACTS, _idle, _no_exception, _settle,  # noqa: F401
                                    _watched, browser, page, server, server_process)

SHOTS = ARTIFACTS / "shots"
KEY = re.compile(r"\b[0-9a-f]{20}\b")


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def _box(locator) -> dict:
    box = locator.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0
    return box


def _apart(a: dict, b: dict) -> bool:
    return (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
            or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_home_shows_the_path_in_the_visitors_colour_scheme(server, browser, scheme):
    context = browser.new_context(viewport={"width": 1400, "height": 3400}, color_scheme=scheme)
    pg = _watched(context.new_page())
    try:
        pg.goto(server)
        _settle(pg, "")
        _no_exception(pg)
        _shot(pg, f"home_{scheme}")
        background = pg.eval_on_selector('[data-testid="stApp"]',
                                         "e => getComputedStyle(e).backgroundColor")
        level = sum(int(v) for v in re.findall(r"\d+", background)[:3]) / 3
        assert (level < 80) if scheme == "dark" else (level > 200), background
        headings = [h.strip() for h in pg.locator("h3").all_inner_texts()]
        assert [h for h in headings if " · " in h] == [
            f"{n} · {stage.title}" for n, stage in enumerate(PATH, 1)]
        cards, starts = [], []
        for stage in PATH:
            for preset in stage.presets:
                card = pg.locator('[data-testid="stVerticalBlock"]').filter(
                    has=pg.get_by_role("heading", name=preset.title, exact=True)).last
                assert card.get_by_role("link", name=stage.opens).count() == 1, preset.id
                cards.append(_box(card))
                starts.append(card.get_by_text("Start here").count())
        assert starts[0] == 1 and not any(starts[1:])   # the badge: on lesson 1 alone
        assert pg.get_by_role("link", name=re.compile("^Start here: lesson 1")).count() == 1
        for i, a in enumerate(cards):
            assert all(_apart(a, b) for b in cards[i + 1:]), "cards overlap"
            assert a["x"] + a["width"] <= 1400
        # A row's cards share its height (the first row: lessons 1-4).
        assert len({round(c["height"]) for c in cards[:4]}) == 1, cards[:4]
        assert len({round(c["y"]) for c in cards[:4]}) == 1
    finally:
        context.close()


def test_the_labs_sidebar_disables_settings_without_effect(server, page):
    page.goto(f"{server}/lab?depth=2&width=16&epochs=1&momentum=0.5")
    _settle(page, "lab", charts=1)
    _no_exception(page)
    momentum = page.locator(".st-key-momentum input")
    beta1 = page.locator(".st-key-beta1 input")
    assert momentum.is_disabled() and not beta1.is_disabled()   # Adam reads β₁, not momentum
    assert momentum.input_value() == "0.5" and "momentum=0.5" in page.url
    assert page.locator('[data-testid="stAlertContentWarning"]').count() == 0
    momentum.scroll_into_view_if_needed()
    _shot(page, "lab_sidebar_inert")
    page.locator(".st-key-optimizer").click()
    page.get_by_role("option", name="momentum", exact=True).click()
    page.get_by_role("button", name="Train", exact=True).click()
    page.wait_for_function("location.search.includes('optimizer=momentum')", timeout=60_000)
    _settle(page, "lab", charts=1)
    assert not momentum.is_disabled() and beta1.is_disabled()


def test_compare_lists_stored_runs_by_what_they_are(server, page):
    for depth in (2, 3):   # two runs in the store
        page.goto(f"{server}/lab?depth={depth}&width=16&epochs=1&max_train=300")
        _settle(page, "lab", charts=1)
    page.goto(f"{server}/compare?mode=Stored+runs")
    _settle(page, "compare", charts=1)
    _no_exception(page)
    keys = KEY.findall(page.url)
    assert len(keys) == 2, page.url   # the link names the runs by key…
    picker = page.locator(".st-key-run_a")
    shown = picker.locator("input").input_value()
    assert shown.startswith("digits · MLP") and not KEY.search(shown)   # …the picker by words
    picker.click()
    options = page.get_by_role("option").all_inner_texts()
    _shot(page, "compare_stored_picker")
    page.keyboard.press("Escape")
    assert len(options) >= 2 and all(o.startswith("digits · MLP") for o in options), options
    assert any("MLP 3×16 relu · Adam lr 0.001 · 1 epoch · seed 0 · 300 training examples — "
               in o and "% val, trained " in o for o in options), options
    # Full width: the whole description shows, its end (accuracy, when) included.
    assert _box(picker)["width"] > 800 and "% val, trained " in shown
    assert not any(KEY.search(o) for o in options)


def test_initialization_opens_with_a_plain_summary_before_its_theory(server, page):
    page.goto(f"{server}/initialization?depth=12&width=64")
    _settle(page, "initialization", charts=4)
    _no_exception(page)
    summary = page.locator('[data-testid="stAlertContentInfo"]').filter(has_text="In short.")
    theory = page.get_by_text("the fixed point q* of the pre-activation variance")
    metrics = page.locator('[data-testid="stMetric"]').first
    s, t, m = _box(summary), _box(theory), _box(metrics)
    assert s["y"] + s["height"] <= t["y"] <= m["y"]   # summary, then the theory, then numbers
    assert s["width"] > 600   # a paragraph across the page, not a squeezed column
    _shot(page, "initialization_summary")


def test_a_lab_lesson_says_what_to_notice_just_above_its_evidence_chart(server, page):
    vanishing = next(p for stage in PATH for p in stage.presets if p.id == "vanishing")
    query = "&".join(f"{k}={v}" for k, v in {**vanishing.config.to_params(),
                                             "tab": vanishing.tab}.items())
    page.goto(f"{server}/lab?{query}")
    _settle(page, "lab", charts=1)
    _no_exception(page)
    notice = page.locator('[data-testid="stAlertContentInfo"]').filter(has_text="Notice:")
    assert notice.count() == 1 and vanishing.notice in notice.inner_text()
    notice.scroll_into_view_if_needed()
    chart = page.locator('[data-testid="stVegaLiteChart"]').first
    n, c = _box(notice), _box(chart)
    assert n["y"] + n["height"] <= c["y"] < n["y"] + n["height"] + 80   # right above it
    _shot(page, "lab_lesson_notice")
    page.get_by_role("tab", name="Training", exact=True).click()   # not the evidence tab
    page.wait_for_timeout(500)
    _idle(page)
    # The evidence tab stays built (a switch back redraws nothing), hidden: no notice shows.
    assert page.locator('[data-testid="stAlertContentInfo"]:visible').filter(
        has_text="Notice:").count() == 0
