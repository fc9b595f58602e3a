"""Warming a server process once, so its visitors do not pay for what every process pays once.

    from core.tools import warmup
    app = st.App(__file__, middleware=[Middleware(warmup.OnPageRequest, paths={"/lab"})])
    with warmup.page_run():    # the router, around every page it runs
        page.run()

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

**When.** Between a browser's first request for a page and that page's script starting, the
server idles while the browser loads Streamlit's scripts: 1.0-1.25 s measured (a cold `/lab` in
Chromium), time enough for `import torch`. So a first request for a page that computes with torch
starts the warm-up (`OnPageRequest`); a cold `/lab` was complete 0.65 s sooner. Not Home's: it
imports no torch, and with `import torch` beside it, it drew 1.2 s later (3.6 s against 2.4 s;
started with the server, the warm-up did that). Otherwise it starts once the first page has
drawn. It never imports beside the first page's run, whose own imports it would slow (two
threads, one GIL): once that page starts, it finishes the module it is on and waits for the page
to draw. From then on it imports beside later runs, as it must on a busy server.
"""

from __future__ import annotations

import contextlib
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
first_page_started = threading.Event()
first_page_drawn = threading.Event()


def warm() -> float:
    """Import MODULES, collect once, freeze the heap; the seconds it took."""
    start = time.perf_counter()
    for name in MODULES:
        if first_page_started.is_set():
            first_page_drawn.wait()
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


class OnPageRequest:
    """ASGI middleware (st.App's `middleware`): a request for one of `paths` (the pages that
    compute with torch) starts the warm-up."""

    def __init__(self, app, paths: set[str]):
        self.app, self.paths = app, paths

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not _started and scope["path"] in self.paths:
            warm_in_background()
        await self.app(scope, receive, send)


@contextlib.contextmanager
def page_run():
    """Around each page the router runs: marks the first page's start and end for warm(), and
    starts the warm-up where no request did (Home first, or AppTest)."""
    first_page_started.set()
    try:
        yield
    finally:
        first_page_drawn.set()
        warm_in_background()
