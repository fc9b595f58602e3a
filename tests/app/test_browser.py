"""A real browser against `streamlit run`: Playwright driving Debian's Chromium on localhost.

Skipped when Chromium or Playwright is missing, unless SATLAB_REQUIRE_BROWSER=1 (CI sets it),
where a missing browser is a failure. All tests share one server (started once, with an empty
run store). When a test fails, test-artifacts/ gets a screenshot and the HTML of each page it had
open, and the server's log.
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.parse
from pathlib import Path

import pytest

from core.attention.presets import ATTENTION_PRESETS
from core.lab.config import RunConfig
from core.lab.presets import PRESETS
from core.optimizers.race import PRESETS as RACE_PRESETS
from core.recurrent.presets import RECURRENT_PRESETS
from app_pages.kit.lessons import PATH
from tests.helpers import streamlit_server

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SATLAB_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
REQUIRED = os.environ.get("SATLAB_REQUIRE_BROWSER") == "1"

if not Path(CHROMIUM).exists():
    if REQUIRED:
        raise RuntimeError(f"browser tests required but {CHROMIUM} is missing")
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)

if REQUIRED:
    import playwright.sync_api as playwright_api  # a missing Playwright fails CI too
else:
    playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server_process(tmp_path_factory):
    """(url, log file, pid) of one `streamlit run` for the whole module."""
    with streamlit_server(tmp_path_factory.mktemp("server")) as url_and_log:
        yield url_and_log


@pytest.fixture(scope="module")
def server(server_process):
    return server_process[0]


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server_process, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = _watched(context.new_page())
    yield pg
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        _save_artifacts(request.node.name, context, server_process[1])
    context.close()


def _watched(pg):
    """The page, collecting its JavaScript errors in `pg.errors`."""
    pg.errors = []
    pg.on("pageerror", lambda err: pg.errors.append(str(err)))
    return pg


def _save_artifacts(test_name: str, context, server_log: Path) -> None:
    """Screenshot and HTML of every page the test had open, and the server's log so far."""
    ARTIFACTS.mkdir(exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name).strip("_")[:120]
    for i, pg in enumerate(context.pages):
        name = stem if i == 0 else f"{stem}.page{i}"
        try:  # a page that crashed or hangs must not hide the test's own failure
            pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True, timeout=15_000)
            (ARTIFACTS / f"{name}.html").write_text(f"<!-- {pg.url} -->\n" + pg.content())
        except Exception as err:  # noqa: BLE001
            (ARTIFACTS / f"{name}.error.txt").write_text(f"{pg.url}: {err}\n")
    shutil.copyfile(server_log, ARTIFACTS / f"{stem}.server.log")


# The last thing each page draws: once it is there, the script has finished.
LAST = {"": "copy it to share the exact experiment", "lab": "PyTorch script",
        "activations": "Measured in this run", "playground": "validation accuracy",
        "compare": "Layout", "sweep": "All cells as a table",
        "initialization": "python -m core probe", "attention": "Validation accuracy after",
        "recurrent": "training images read as", "optimizers": "optimizers ×",
        "watched": "Run file (.json)"}


def _settle(page, path: str, *, charts: int = 0, timeout: float = 120_000) -> None:
    """Wait until the page's script has drawn its last element and `charts` charts, and is idle."""
    page.get_by_text(LAST[path.split("?")[0]]).first.wait_for(timeout=timeout)
    if charts:
        page.wait_for_function(
            f"document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length >= {charts}",
            timeout=timeout)
    _idle(page, timeout)


def _idle(page, timeout: float = 120_000) -> None:
    """Wait until no script run is in progress (a click during a run can be dropped)."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(
        timeout=timeout)


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    # A chart whose spec the browser rejects leaves an empty box and a JavaScript error (the
    # AppTest suite cannot see either).
    assert not page.errors, page.errors
    # One snapshot in the page: counting the charts, then asking for each one's box, races a
    # rerun that removes one in between (a tab switch) and waits for it until timing out.
    heights = page.eval_on_selector_all(
        '[data-testid="stVegaLiteChart"]',
        "els => els.filter(e => e.checkVisibility()).map(e => e.getBoundingClientRect().height)")
    assert all(h > 0 for h in heights), heights  # hidden ones (a closed tab) are left out


# Per drawn chart (the canvas or svg Vega drew): its box, and the content box of the column
# that holds it (the main block, less its padding, when it is not in a column).
CHART_BOXES = """() => [...document.querySelectorAll('.vega-embed > canvas, .vega-embed > svg')]
  .filter(e => e.checkVisibility())
  .map(e => {
    const holder = e.closest('[data-testid="stColumn"]')
      || e.closest('[data-testid="stMainBlockContainer"]');
    const r = holder.getBoundingClientRect(), style = getComputedStyle(holder);
    const c = e.getBoundingClientRect();
    return {chart: {left: c.left, right: c.right, top: c.top, bottom: c.bottom},
            column: {left: r.left + parseFloat(style.paddingLeft),
                     right: r.right - parseFloat(style.paddingRight)}};
  })"""




def _charts_in_their_columns(page) -> list[dict]:
    """Every drawn chart's box (CHART_BOXES), each checked to lie inside its column (1 px for
    rounding): a chart wider than its column is cut off or runs past the page."""
    boxes = page.evaluate(CHART_BOXES)
    for b in boxes:
        chart, column = b["chart"], b["column"]
        assert column["left"] - 1 <= chart["left"] and chart["right"] <= column["right"] + 1, b
    return boxes


# Text cut with an ellipsis (a metric's label, a button, a link) that does not fit its box, in the
# page and its sidebar: each as "text [needed > had]" px.
CUT_SHORT = """() => [...document.querySelectorAll('[data-testid="stMain"] *, [data-testid="stSidebar"] *')]
  .filter(e => getComputedStyle(e).textOverflow === 'ellipsis' && e.scrollWidth > e.clientWidth
               && e.textContent.trim() && e.getClientRects().length)
  .map(e => `${e.textContent.trim().slice(0, 60)} [${e.scrollWidth} > ${e.clientWidth}]`)"""


def _nothing_cut_short(page) -> None:
    """No text on the page cut short: on a laptop Home's card links read "Open in the
    Training…", the Lab's and Attention's lesson buttons "Fix: residual connect…", and a tanh
    run's headline "Max saturation (e…"."""
    cut = page.evaluate(CUT_SHORT)
    assert not cut, cut


# /lab first: a deep link as the very first request to a fresh server is the hard case (a tanh
# run: its headline's label is the longer one).
SMALL_SWEEP = "sweep?x=depth&xv=1,2&y=activation&yv=relu,tanh&epochs=1&width=16&max_train=200"


@pytest.mark.parametrize("path,charts", [
    ("lab?activation=tanh", 1), ("", 0), ("activations", 11), ("playground", 2),
    ("compare?depth=2&epochs=2&width=16&b_depth=3&b_epochs=2&b_width=16", 1),
    (SMALL_SWEEP, 3), ("initialization?depth=12&width=64", 4), ("attention", 5),
    ("recurrent?max_train=200&epochs=1", 5), ("optimizers", 2), ("watched", 0)])
def test_every_page_opens_without_an_error(server_process, page, path, charts):
    """Each page as the first request of a fresh browser, straight from its link, in a laptop's
    1280×800 window, where every chart fits its column (rows of panels with a legend beside
    them ran up to 157 px past it), no text is cut short, and the server logs nothing."""
    server, log, _ = server_process
    logged = log.stat().st_size
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{server}/{path}")
    _settle(page, path, charts=charts)
    _no_exception(page)
    assert page.locator("h1").first.inner_text()
    _charts_in_their_columns(page)
    _nothing_cut_short(page)
    assert _logged_since(log, logged) == ""


def test_lab_trains_the_default_config_and_draws_charts(server, page):
    page.goto(f"{server}/lab")
    _settle(page, "lab", charts=1)
    _no_exception(page)
    assert page.get_by_text("Val accuracy").count() >= 1
    assert page.get_by_text("Gradient doctor").count() == 1
    # Only the open tab is drawn: open the gradients tab and see its four charts.
    page.get_by_role("tab", name="Gradients").click()
    _settle(page, "lab", charts=4)
    assert "tab=Gradients" in page.url
    _no_exception(page)


def test_lab_trains_a_preset_from_its_buttons_and_draws_its_charts(server_process, page):
    """The Lab's own lesson buttons: the preset's settings, its lesson box, and its charts; and
    the server logs nothing about it (a preset sets bound widgets through session state, which
    Streamlit logged with a stack trace until .streamlit/config.toml said it is meant)."""
    server, log, _ = server_process
    page.goto(f"{server}/lab")
    _settle(page, "lab", charts=1)
    page.get_by_text("Lesson presets").click()
    _idle(page)
    logged = log.stat().st_size
    page.get_by_role("button", name="Fix: gradient clipping").click()
    # The lesson box is drawn once the preset's run is over (its text is nowhere else).
    page.get_by_text("Clipping caps every step").wait_for(timeout=120_000)
    _settle(page, "lab", charts=1)
    _no_exception(page)
    assert _logged_since(log, logged) == ""


def _logged_since(log: Path, offset: int) -> str:
    """What the server wrote to its log after `offset` bytes."""
    with open(log, encoding="utf-8", errors="replace") as f:
        f.seek(offset)
        return f.read().strip()
    shown = _settings(page)
    assert (shown["Depth"], shown["Activation"], shown["Clip gradient norm at"]) == \
        ("20", "linear", "1.0")
    assert "clip_norm=1" in page.url and "depth=20" in page.url
    assert page.get_by_text("clipping triggers on").count() == 1
    page.get_by_role("tab", name="Clipping").click()
    page.wait_for_url("**tab=Clipping**")
    # Hidden tab panels are left out: this is the Clipping tab's chart.
    page.get_by_role("tabpanel").locator(".vega-embed canvas, .vega-embed svg").first.wait_for(
        timeout=60_000)
    _no_exception(page)


def test_a_diverged_run_draws_its_charts_in_the_browser(server, page):
    """NaN and inf in a run's tables reach the browser as gaps, not as broken charts."""
    params = urllib.parse.urlencode({**PRESETS["exploding"].config.to_params(), "tab": "Gradients"})
    page.goto(f"{server}/lab?{params}")
    _settle(page, "lab", charts=4)
    _no_exception(page)
    assert page.get_by_text("The run diverged").count() >= 1


def test_preset_from_home_and_its_shared_link_reproduce_its_settings(server, page):
    page.goto(server)
    _settle(page, "")
    page.get_by_role("link", name="Open in the Lab").first.click()
    _settle(page, "lab", charts=1)
    _no_exception(page)
    assert "depth=10" in page.url and "activation=sigmoid" in page.url
    assert page.get_by_text("Vanishing gradients").count() >= 1
    vanishing = PRESETS["vanishing"].config
    shown = _settings(page)
    assert shown == _expected(vanishing), shown
    # The link, opened in a new tab (a new session), shows the same settings and therefore the
    # same run: served from the run store, not trained again.
    shared = page.url
    other = _watched(page.context.new_page())
    other.goto(shared)
    _settle(other, "lab", charts=1)
    _no_exception(other)
    assert _settings(other) == shown
    assert other.get_by_text("Vanishing gradients").count() >= 1
    assert other.get_by_text("from the store").count() == 1
    other.close()


def test_bad_link_shows_a_warning_not_a_traceback(server, page):
    page.goto(f"{server}/lab?depth=-3&activation=banana")
    _settle(page, "lab", charts=1)
    _no_exception(page)
    alerts = page.locator('[data-testid="stAlert"]').all_inner_texts()
    text = " ".join(alerts)
    assert "depth=-3" in text and "activation=banana" in text
    assert "Traceback" not in page.content()
    # The bad values were replaced by the defaults, and that is what ran.
    assert _settings(page) == _expected(RunConfig())



@pytest.mark.parametrize("path,param", [
    ("lab?epochs=1&max_train=200", "seed"), ("playground", "seed"),
    ("compare?depth=2&epochs=2&width=16&b_depth=3&b_epochs=2&b_width=16", "b_seed"),
    (SMALL_SWEEP, "seed"), ("initialization?depth=12&width=64", "seed"),
    ("recurrent?max_train=200&epochs=1", "seed"), ("attention?epochs=1&max_train=100", "seed")])
def test_a_seed_of_inf_in_a_link_warns_and_the_page_draws(server, page, path, param):
    """`seed=inf` raised inside Streamlit's integer number box before our checks (issue 14)."""
    page.goto(f"{server}/{path}&{param}=inf".replace("/playground&", "/playground?"))
    _settle(page, path)
    _no_exception(page)
    warnings = [w for w in _page_warnings(page) if f"{param}=inf" in w]
    assert len(warnings) == 1 and "using 0" in warnings[0], _page_warnings(page)
    assert f"{param}=inf" not in page.url  # the link now says what the page shows


def test_back_to_a_link_the_page_rewrote_does_not_raise(server, page):
    """The rewritten link is a new history entry: Back reseeds the bound seed box from the old
    `seed=inf`, which the kit can no longer rewrite (Streamlit's integer box raised on it)."""
    page.goto(f"{server}/lab?epochs=1&max_train=200&seed=inf")
    _settle(page, "lab")
    assert "seed=inf" not in page.url
    page.go_back()
    page.wait_for_url(re.compile("seed=inf"))
    page.wait_for_timeout(1000)   # the rerun the navigation starts
    _idle(page)
    _no_exception(page)

# Lab controls read back from the page (sliders by their value text, select boxes by their
# input), including those in collapsed sidebar groups.
SLIDERS = {"Depth": "depth", "Width": "width", "Epochs": "epochs", "Learning rate": "lr",
           "Clip gradient norm at": "clip_norm"}
BOXES = {"Dataset": "dataset", "Model": "model", "Activation": "activation", "Init": "init",
         "Optimizer": "optimizer"}


SLIDER = 'input[type="range"][aria-label="{}"]'
BOX = 'input[role="combobox"][aria-label="{}"]'


def _settings(page) -> dict[str, str]:
    shown = {label: page.locator(SLIDER.format(label)).first.get_attribute("aria-valuetext")
             for label in SLIDERS}
    shown.update({label: page.locator(BOX.format(label)).first.input_value() for label in BOXES})
    return shown


def _expected(cfg: RunConfig) -> dict[str, str]:
    return {label: RunConfig.format_setting(name, getattr(cfg, name))
            for label, name in {**SLIDERS, **BOXES}.items()}


def _hidden_in_link(page) -> set[str]:
    """What the page's link hides, lower-cased (by name or label, repeated or comma-separated)."""
    query = urllib.parse.parse_qs(page.evaluate("location.search").lstrip("?"))
    return {part.strip().lower() for item in query.get("hide", []) for part in item.split(",")}


def _shown_controls(page, labels: tuple[str, ...]) -> list[str]:
    sidebar = page.locator('[data-testid="stSidebar"]')
    return [t for t in sidebar.locator('[data-testid="stWidgetLabel"]').all_inner_texts()
            if t in labels]


def test_a_classroom_link_keeps_its_controls_hidden_through_training(server, page):
    """A student opens a classroom link and trains. The Classroom-link editor's multiselect is
    bound to the link, which AppTest does not run: only a browser shows whether it keeps (or
    drops) the link's `hide`. Both forms: the editor's (one `hide` per control, by its label,
    as Streamlit writes a bound multiselect) and the README's (names, comma-separated)."""
    hidden = ("Optimizer", "Learning rate")
    for query in ("hide=Optimizer&hide=Learning+rate", "hide=optimizer,lr"):
        page.goto(f"{server}/lab?{query}")
        _settle(page, "lab", charts=1)
        assert _shown_controls(page, hidden) == [], query
        page.locator(SLIDER.format("Depth")).first.press("ArrowRight")   # depth 4 → 5
        page.get_by_role("button", name="Train").first.click()
        page.wait_for_function("location.search.includes('depth=5')")   # the run started
        _settle(page, "lab", charts=1)
        _no_exception(page)
        assert _shown_controls(page, hidden) == [], query
        # ... and the link a student copies still hides them (a bound editor dropped the
        # README's form from the link on opening).
        assert {"optimizer"} <= _hidden_in_link(page) and _hidden_in_link(page) & {"lr", "learning rate"}, query


def test_the_epoch_scrubber_follows_each_preset_run(server, page):
    """A shared link's epoch holds; a preset with fewer epochs than the scrubber's value (the
    exploding run diverges in its first) used to crash the Lab."""
    page.goto(f"{server}/lab?epoch=5")
    _settle(page, "lab", charts=1)
    assert page.locator(SLIDER.format("Every chart at epoch")).get_attribute("aria-valuetext") == "5"
    page.get_by_text("Lesson presets").click()
    _idle(page)
    for title, setting, last in (("Exploding gradients", "depth=20", "1"),
                                 ("Overfitting", "max_train=300", "30")):
        page.get_by_role("button", name=title).first.click()
        page.wait_for_url(f"**{setting}**")   # the preset is set: its run is under way
        _settle(page, "lab", charts=1)
        _no_exception(page)
        assert page.locator(SLIDER.format("Every chart at epoch")).get_attribute("aria-valuetext") == last


# --- every lesson from every entry point -------------------------------------------------------
LESSON_PAGES = {"lab": PRESETS, "recurrent": RECURRENT_PRESETS, "attention": ATTENTION_PRESETS,
                "optimizers": RACE_PRESETS}
PRESET_EXPANDER = {"optimizers": "Learning-rate presets"}   # else "Lesson presets"
CLASSROOM = "hide=seed"   # a classroom link's hidden control that no preset or fix changes
SHOTS = os.environ.get("SATLAB_LESSON_SHOTS")   # a folder: a screenshot of each lesson there


def _hides_seed(page) -> bool:
    return "seed" in _hidden_in_link(page)


def _click_and_settle(page, target, path: str, *, changes: bool = True) -> None:
    """Click a button that sets the settings, and wait for the run it starts: the link changes
    when the run starts; a button that `changes` nothing just reruns the page."""
    before = page.evaluate("location.search")
    target.click()
    if changes:
        page.wait_for_function(f"location.search !== {before!r}", timeout=60_000)
    else:
        page.wait_for_timeout(1_000)
    _settle(page, path)


def _page_warnings(page) -> list[str]:
    """The page's warnings about its link or settings: every warning but the doctor's findings
    (a lesson run may well have one: that is the doctor's job, not a broken link)."""
    every = page.locator('[data-testid="stAlertContentWarning"]').all_inner_texts()
    doctor = page.locator('.st-key-doctor [data-testid="stAlertContentWarning"]').all_inner_texts()
    return [w for w in every if w not in doctor]


def _lesson_problems(page, path: str, preset, where: str) -> list[str]:
    """What is wrong with a lesson as shown: its box missing, a claim ✗, a warning, its tab
    not open, the classroom link's `hide` gone. Empty when all is right."""
    _no_exception(page)
    out = []
    if page.get_by_text(preset.look_at[:40]).count() == 0:
        out.append(f"{where}: no lesson box for {preset.id}")
    for claim in page.get_by_text("not true for this run").all_inner_texts():
        out.append(f"{where}: {preset.id}: ✗ {claim}")
    for warning in _page_warnings(page):
        out.append(f"{where}: {preset.id}: warning {warning!r}")
    if preset.tab is not None:
        shown = page.get_by_role("tab", selected=True).inner_text()
        if shown != preset.tab:
            out.append(f"{where}: {preset.id} opened on {shown}, not {preset.tab}")
    if CLASSROOM in where and not _hides_seed(page):
        out.append(f"{where}: {preset.id}: the classroom link's hide was dropped")
    if SHOTS:
        page.set_viewport_size({"width": 1400, "height": 4000})
        page.screenshot(path=str(Path(SHOTS) / f"{path}_{preset.id}.png"))
        page.set_viewport_size({"width": 1400, "height": 1000})
    return out


def test_every_lesson_opens_right_from_every_entry_point(server, page):
    """Every Home card (every page's lessons, on the path), every preset button of every page
    (from a classroom link) and every doctor fix offered on a Lab preset's run: the lesson box
    is there (for a preset), every claim holds, nothing warns, the lesson's tab is open and
    the link's `hide` is kept.

    The Home cards are opened one after another in one session, through the sidebar's Home
    link: a card used to inherit the previous lesson's settings where it leaves one at its
    default. ~155 s on an empty run store (two cores, beside the rest of the suite), most of it
    training every lesson."""
    problems: list[str] = []
    page.goto(server)
    for stage in PATH:
        path = Path(stage.page).stem   # the page's URL path
        for preset in stage.presets:
            _settle(page, "")
            card = page.locator('[data-testid="stVerticalBlock"]').filter(
                has=page.get_by_role("heading", name=preset.title, exact=True)).last
            card.get_by_role("link", name=stage.opens).click()
            # Streamlit drops a bound widget's default from the link: a lesson at the page's
            # defaults (Recurrent's first) ends at the bare path.
            page.wait_for_url(f"**/{path}**")
            _settle(page, path)
            problems += _lesson_problems(page, path, preset, "Home card")
            page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Home").click()
            page.wait_for_url(f"{server}/")
    for path, presets in LESSON_PAGES.items():
        page.goto(f"{server}/{path}?{CLASSROOM}")
        _settle(page, path)
        page.get_by_text(PRESET_EXPANDER.get(path, "Lesson presets"), exact=True).click()
        for preset in presets.values():
            button = page.locator(f".st-key-preset_{preset.id} button:visible")
            # The page's defaults may be the first lesson's (Recurrent's are).
            shown = page.get_by_text(preset.look_at[:40]).count() > 0
            _click_and_settle(page, button, path, changes=not shown)
            where = f"{path}?{CLASSROOM}, preset button"
            problems += _lesson_problems(page, path, preset, where)
            if path != "lab":
                continue
            fixes = page.locator('[class*="st-key-fix_"] button:visible')
            for n in range(fixes.count()):
                label = fixes.nth(n).inner_text().splitlines()[-1]   # after its icon
                _click_and_settle(page, fixes.nth(n), path)
                landed = next((p for p in presets.values()
                               if page.get_by_text(p.look_at[:40]).count()), None)
                where = f"lab?{CLASSROOM}, {preset.id}'s fix {label!r}"
                if landed is not None:
                    problems += _lesson_problems(page, path, landed, where)
                else:
                    _no_exception(page)
                    problems += [f"{where}: warning {w!r}" for w in _page_warnings(page)]
                    if not _hides_seed(page):
                        problems.append(f"{where}: the classroom link's hide was dropped")
                _click_and_settle(page, button, path)   # back to the preset for its next fix
    assert not problems, "\n".join(problems)
