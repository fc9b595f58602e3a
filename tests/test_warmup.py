"""core.tools.warmup: the server's one-time warm-up imports what pages compute with and freezes the heap
out of the collector that Streamlit runs after every rerun; objects made later are still
collected.

    python -m pytest tests/test_warmup.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.helpers import streamlit_server

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import gc, json, sys, time, weakref
import core.tools.warmup as warmup

before = {name: name in sys.modules for name in warmup.MODULES}
calls, real_warm = [], warmup.warm
warmup.warm = lambda: calls.append(real_warm())
warmup.warm_in_background()
warmup.warm_in_background()          # a second router run starts nothing more
assert warmup.finished.wait(120)
time.sleep(0.5)

class Node:
    pass
a, b = Node(), Node()
a.other, b.other = b, a              # a cycle made after the freeze
gone = weakref.ref(a)
del a, b
tracked = len(gc.get_objects())
start = time.perf_counter()
gc.collect(2)
print(json.dumps({"before": before, "after": {n: n in sys.modules for n in warmup.MODULES},
                  "frozen": gc.get_freeze_count(), "tracked": tracked,
                  "cycle_collected": gone() is None, "warm_calls": len(calls)}))
"""


def test_warm_up_imports_freezes_once_and_later_cycles_are_still_collected():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert not seen["before"]["torch._dynamo"] and not seen["before"]["sklearn.model_selection"]
    assert all(seen["after"].values()), seen["after"]
    # The import-time heap (hundreds of thousands of objects with torch, pandas and Altair) is
    # frozen; what the collector still walks after a rerun is a small remainder.
    assert seen["frozen"] > 100_000
    assert seen["tracked"] < seen["frozen"] / 10
    assert seen["cycle_collected"]
    assert seen["warm_calls"] == 1


PAUSE = """
import json, sys
import core.tools.warmup as warmup

warmup.MODULES = ("json", "colorsys")   # instant imports: only the pause can hold warm() up
with warmup.page_run():                 # the first page, running
    warmup.warm_in_background()         # as the server's start would have begun it
    during = warmup.finished.wait(1.0)
    colorsys_during = "colorsys" in sys.modules
after = warmup.finished.wait(30)
print(json.dumps({"during": during, "colorsys_during": colorsys_during, "after": after}))
"""


def test_warm_up_waits_while_the_first_page_runs_and_goes_on_once_it_has_drawn():
    """Started with the server, it imports nothing beside the first page's run (the two would
    share one GIL), and carries on once that page has drawn."""
    out = subprocess.run([sys.executable, "-c", PAUSE], cwd=REPO, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"during": False, "colorsys_during": False, "after": True}


def _resident_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(l for l in status.splitlines() if l.startswith("VmRSS")).split()[1]) / 1024


def test_a_first_request_for_a_torch_page_warms_the_server_and_home_s_does_not(tmp_path):
    """The real server (`streamlit run`, st.App with the warm-up's middleware): fetching Home's
    HTML, as a browser does before it loads Streamlit's scripts, imports nothing; fetching
    /lab's imports torch and the rest (the server grows by hundreds of MB) before any script
    has run (nothing opened the page's websocket)."""
    with streamlit_server(tmp_path) as (url, _, pid):
        urllib.request.urlopen(f"{url}/", timeout=10).read()
        time.sleep(3)
        home = _resident_mb(pid)
        urllib.request.urlopen(f"{url}/lab", timeout=10).read()
        deadline = time.time() + 60
        while time.time() < deadline and _resident_mb(pid) < home + 100:
            time.sleep(0.5)
        assert _resident_mb(pid) >= home + 100, (home, _resident_mb(pid))
        assert home < 250, home   # Streamlit's server alone, no torch
