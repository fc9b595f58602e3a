"""Warming a server process once, so its visitors do not pay for what every process pays once.

    from core.tools.warmup import warm_in_background
    warm_in_background()      # the app's router, every run: only the first call starts anything

Two costs measured on the 2-core machine, Streamlit 1.67, torch 2.13:
- **Imports nobody has asked for yet.** The first run to build an optimizer imports
  torch._dynamo (~1.2 s), the first split scikit-learn (~1.0 s); whoever clicks first waits.
- **A full garbage collection after every script run.** Streamlit collects all generations
  when a script or fragment run ends (`runner.postScriptGC`, kept on: it keeps a server's memory
  low). With torch, pandas and Altair loaded that walks ~420,000 objects: 0.16 s per rerun,
  44% of the server's CPU while 20 sessions opened stored Lab runs (py-spy).

`warm()` imports what the pages compute with, collects once, and then `gc.freeze()`s the heap:
the objects alive then (modules, classes, functions: alive for the process's lifetime anyway)
move to a generation the collector no longer walks, so the post-run collection costs ~0 s;
CPython documents freeze for exactly this (objects made at start-up that live forever). Objects
made later are collected as before. It runs in a daemon thread so the first page does not wait.

Tried and measured: starting it at a first request for a page that computes with torch (st.App
middleware), to import torch while the browser loads Streamlit's scripts. The server is not idle
then: it serves those scripts, and with `import torch` beside it the first script run started
0.6 s later; a cold `/lab` was complete no sooner (7.18 s against 7.16 s, median of 3,
benchmarks/cold_start.py), and started with the server it made Home 1.2 s slower.
"""

from __future__ import annotations

import gc
import importlib
import logging
import threading
import time

from core.cpus import configure_for_server

log = logging.getLogger(__name__)

# What a page computes with, beyond what its own imports load when it first draws.
MODULES = (
    "torch", "torch._dynamo", "torch.optim", "sklearn.model_selection", "sklearn.datasets",
    "scipy.optimize", "pandas", "altair",
    "core.lab.runs", "core.lab.charts", "core.lab.doctor", "core.lab.sweep", "core.lab.export",
    "core.init.probe", "core.init.phase", "core.init.spectra", "core.recurrent.trainer",
    "core.attention.softmax", "core.optimizers.race",
)

_started = False
_started_guard = threading.Lock()
finished = threading.Event()   # set when warm() has run: for tests and benchmarks


def warm() -> float:
    """Import MODULES, collect once, freeze the heap; the seconds it took."""
    start = time.perf_counter()
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError as err:   # an optional dependency: its page says so when used
            log.info("warm-up skipped %s: %s", name, err)
    configure_for_server()   # torch is loaded now: size its pools as the router would
    gc.collect()
    gc.freeze()
    finished.set()
    return time.perf_counter() - start


def warm_in_background() -> None:
    """Start warm() in a daemon thread, once per process."""
    global _started
    with _started_guard:
        if _started:
            return
        _started = True
    threading.Thread(target=warm, name="satlab-warmup", daemon=True).start()
