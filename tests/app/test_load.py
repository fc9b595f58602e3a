"""Load (issue 14): many sessions at once against a real `streamlit run`, Chromium driving each.

With one training slot (SATLAB_MAX_TRAININGS=1), sessions asking for the same and for different
Lab runs all finish without an error, the distinct ones through the queue, the identical ones
waiting for the one training; meanwhile a new visitor's Home draws without an error.

How fast that Home draws is a timing, not asserted here (speed is for benchmarks): measured on
the shared 2-core test machine (load average 9-12 from other jobs), Home alone took 2.1-3.5 s and
8.7-9.8 s beside seven Lab sessions, the same whether those trained or were all served from the
store: the cost is seven Lab pages drawing their charts in one Python process, not training.

    python -m pytest tests/app/test_load.py
"""

from __future__ import annotations

import time

import pytest

from tests.app.test_browser import CHROMIUM, LAST, _no_exception, _watched, playwright_api
from tests.helpers import streamlit_server

SAME = "lab?width=32&epochs=10&seed=7"
DIFFERENT = [f"lab?width=32&epochs=10&seed={seed}" for seed in range(10, 14)]
# Set in every page before its scripts run: whether the tab ever showed a queue place (kept in
# sessionStorage, which outlives a reload of the document within the tab).
SEEN_QUEUED = """
setInterval(() => {
  if (document.body && document.body.innerText.includes('ahead of yours'))
    sessionStorage.setItem('queued', '1');
}, 50);
"""


@pytest.fixture(scope="module")
def one_slot_server(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("load"), SATLAB_MAX_TRAININGS="1") as server:
        yield server


def vm_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field))


def test_sessions_queue_for_one_slot_and_a_newcomers_home_still_draws(one_slot_server):
    url, _, pid = one_slot_server
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            pages = []
            for path in [SAME] * 3 + DIFFERENT:
                context = browser.new_context(viewport={"width": 1200, "height": 900})
                context.add_init_script(SEEN_QUEUED)
                page = _watched(context.new_page())
                page.goto(f"{url}/{path}", wait_until="commit")
                pages.append(page)
            # A newcomer while the sessions train and queue.
            t0 = time.perf_counter()
            home = _watched(browser.new_page())
            home.goto(url, wait_until="commit")
            home.get_by_text(LAST[""]).first.wait_for(timeout=60_000)
            home_seconds = time.perf_counter() - t0
            _no_exception(home)
            for page in pages:
                page.get_by_text(LAST["lab"]).first.wait_for(timeout=120_000)
                _no_exception(page)
            queued = [page.evaluate("sessionStorage.getItem('queued') === '1'") for page in pages]
        finally:
            browser.close()
    # How many sessions see their place is up to timing: a training on one thread holds the GIL
    # between its small ops, so the other sessions' scripts may reach the queue only after it
    # ends (measured 0-3 of the 7 here). The queue itself (order, places, busy, leaving) is
    # asserted with real runs in tests/test_cache.py.
    print(f"home {home_seconds:.2f} s; queued {queued}; server peak RSS "
          f"{vm_kb(pid, 'VmHWM') / 1024:.0f} MB")
