"""A real browser against `streamlit run`: Playwright driving Debian's Chromium on localhost.

Skipped when Chromium is not installed, unless SATLAB_REQUIRE_BROWSER=1 (CI sets it), where a
missing browser is a failure. Screenshots of failing pages go to test-artifacts/.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("SATLAB_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"

if not Path(CHROMIUM).exists():
    if os.environ.get("SATLAB_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"browser tests required but {CHROMIUM} is missing")
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)

playwright_api = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    env = {**os.environ, "SATLAB_STORE": str(tmp_path_factory.mktemp("store") / "runs.sqlite3"),
           "SATLAB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start:\n" + proc.stdout.read().decode()[-2000:])
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda err: pg.errors.append(str(err)))
    yield pg
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


# The last thing each page draws: once it is there, the script has finished.
LAST = {"": "Open in the Training Lab", "lab": "PyTorch script",
        "activations": "Measured in this run", "playground": "validation accuracy",
        "compare": "Layout", "sweep": "All cells as a table",
        "initialization": "python -m core probe", "attention": "Validation accuracy after",
        "recurrent": "training images read as", "optimizers": "optimizers ×"}


def _settle(page, path: str, *, charts: int = 0, timeout: float = 120_000) -> None:
    """Wait until the page's script has drawn its last element and `charts` charts."""
    page.get_by_text(LAST[path.split("?")[0]]).first.wait_for(timeout=timeout)
    if charts:
        page.wait_for_function(
            f"document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length >= {charts}",
            timeout=timeout)


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    # A chart whose spec the browser rejects leaves an empty box and a JavaScript error (the
    # AppTest suite cannot see either).
    assert not page.errors, page.errors
    boxes = page.locator('[data-testid="stVegaLiteChart"]')
    heights = [boxes.nth(i).bounding_box()["height"] for i in range(boxes.count())]
    assert all(h > 0 for h in heights), heights


# /lab first: a deep link as the very first request to a fresh server is the hard case.
SMALL_SWEEP = "sweep?x=depth&xv=1,2&y=activation&yv=relu,tanh&epochs=1&width=16&max_train=200"


@pytest.mark.parametrize("path,charts", [
    ("lab", 1), ("", 0), ("activations", 11), ("playground", 2),
    ("compare?depth=2&epochs=2&width=16&b_depth=3&b_epochs=2&b_width=16", 1),
    (SMALL_SWEEP, 3), ("initialization?depth=12&width=64", 4), ("attention", 5),
    ("recurrent?max_train=200&epochs=1", 5), ("optimizers", 2)])
def test_every_page_opens_without_an_error(server, page, path, charts):
    """Each page as the first request of a fresh browser, straight from its link."""
    page.goto(f"{server}/{path}")
    _settle(page, path, charts=charts)
    _no_exception(page)
    assert page.locator("h1").first.inner_text()


def test_lab_trains_the_default_config_and_draws_charts(server, page):
    page.goto(f"{server}/lab")
    _settle(page, "lab", charts=1)
    _no_exception(page)
    assert page.get_by_text("Validation accuracy").count() >= 1
    assert page.get_by_text("Gradient doctor").count() == 1
    # Only the open tab is drawn: open the gradients tab and see its four charts.
    page.get_by_role("tab", name="Gradients").click()
    _settle(page, "lab", charts=4)
    assert "tab=Gradients" in page.url
    _no_exception(page)


def test_preset_from_home_reproduces_its_settings(server, page):
    page.goto(server)
    _settle(page, "")
    page.get_by_role("link", name="Open in the Training Lab").first.click()
    _settle(page, "lab", charts=1)
    _no_exception(page)
    assert "depth=10" in page.url and "activation=sigmoid" in page.url
    assert page.get_by_text("Vanishing gradients").count() >= 1
    # The shared link reproduces the same experiment in a fresh browser page.
    shared = page.url
    other = page.context.new_page()
    other.goto(shared)
    _settle(other, "lab", charts=1)
    assert other.get_by_text("Vanishing gradients").count() >= 1
    other.close()


def test_bad_link_shows_a_warning_not_a_traceback(server, page):
    page.goto(f"{server}/lab?depth=-3&activation=banana")
    _settle(page, "lab", charts=1)
    _no_exception(page)
    alerts = page.locator('[data-testid="stAlert"]').all_inner_texts()
    text = " ".join(alerts)
    assert "depth=-3" in text and "activation=banana" in text
    assert "Traceback" not in page.content()
