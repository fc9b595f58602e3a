"""Load (issue 14): twenty sessions at once against a real `streamlit run`, and a newcomer.

Twenty sessions open Lab runs over Streamlit's websocket protocol (tests.helpers.script_session:
what a browser asks the server, without a browser drawing on this test machine's two CPUs), ten
of them the same new run and ten each a different one, on a server with one training slot
(SATLAB_MAX_TRAININGS=1). Every one must end with its run drawn, or with the message that the
server is busy; the identical ones train once; the distinct ones queue and are told their
place. Meanwhile a new visitor opens Home in Chromium: it must draw within the issue's 5 s
(measured 1.5-2.0 s here; before core.tools.warmup froze the heap, 5 s with 20 sessions and 8.7-11.7 s
with 7 browser-drawn ones). The server's peak memory stays within what its budget allows: its
memory before the load plus one request's MAX_MEMORY per training slot.

    python -m pytest tests/app/test_load.py -s     # prints the times and the peak memory
"""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest

from core.budget import memory_budget
from tests.app.test_browser import CHROMIUM, LAST, _no_exception, _watched, playwright_api
from tests.helpers import ScriptSession, script_session, streamlit_server

SAME = "width=32&epochs=6&seed=7"
DIFFERENT = [f"width=32&epochs=6&seed={seed}" for seed in range(10, 20)]
SESSIONS = [SAME] * 10 + DIFFERENT
BUSY = "the server is busy"
QUEUED = "ahead of yours"


@pytest.fixture(scope="module")
def one_slot_server(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("load"), SATLAB_MAX_TRAININGS="1") as server:
        yield server


def vm_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field))


def test_twenty_sessions_queue_for_one_slot_and_a_newcomers_home_draws_fast(one_slot_server):
    url, _, pid = one_slot_server
    # The server as a visitor finds it: one page drawn, its warm-up done (core.tools.warmup).
    script_session(url, "", "")
    time.sleep(5)
    before_kb = vm_kb(pid, "VmRSS")

    seen: dict[int, ScriptSession | BaseException] = {}

    def visit(i: int, query: str) -> None:
        try:
            seen[i] = script_session(url, "lab", query)
        except BaseException as err:   # noqa: BLE001 - reported by the assertions below
            seen[i] = err

    threads = [threading.Thread(target=visit, args=(i, q)) for i, q in enumerate(SESSIONS)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)   # the sessions are in: training, queued or waiting for the same run
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            home = _watched(browser.new_page())
            start = time.perf_counter()
            home.goto(url, wait_until="commit")
            home.get_by_text(LAST[""]).first.wait_for(timeout=60_000)
            home_seconds = time.perf_counter() - start
            _no_exception(home)
        finally:
            browser.close()
    for thread in threads:
        thread.join(timeout=300)
    peak_kb = vm_kb(pid, "VmHWM")

    sessions = [seen[i] for i in range(len(SESSIONS))]
    errors = [s for s in sessions if not isinstance(s, ScriptSession)]
    assert not errors, errors
    for i, session in enumerate(sessions):
        assert not session.exceptions, (SESSIONS[i], session.exceptions)
        drawn = session.saw("PyTorch script") and session.saw("Gradient doctor")
        assert drawn or session.saw(BUSY), (SESSIONS[i], session.texts)
    drawn = [s for s in sessions if s.saw("PyTorch script")]
    # The ten identical requests trained once: one says "trained now", the others got its
    # result (waiting for it, or from memory afterwards).
    same_trained = [s for s in sessions[:10] if s.saw("trained now")]
    assert len(same_trained) <= 1
    queued = [s for s in sessions if s.saw(QUEUED)]
    assert queued, "no session was told its place in the queue"
    print(f"\nhome {home_seconds:.2f} s; sessions {sorted(round(s.seconds, 1) for s in sessions)}; "
          f"drawn {len(drawn)}, told their place {len(queued)}, busy "
          f"{sum(s.saw(BUSY) for s in sessions)}; server RSS before {before_kb / 1024:.0f} MB, "
          f"peak {peak_kb / 1024:.0f} MB")
    assert home_seconds < 5.0, f"Home took {home_seconds:.1f} s beside 20 sessions"
    assert peak_kb * 1024 < before_kb * 1024 + memory_budget(), (
        f"peak {peak_kb / 1024:.0f} MB over {before_kb / 1024:.0f} MB + one request's budget")
    assert urllib.request.urlopen(f"{url}/_stcore/health", timeout=10).read() == b"ok"
