"""Makes every page reachable by its own link, also as the first request to a fresh server.

Streamlit treats a `pages/` folder next to the entrypoint as a legacy multipage app until
`st.navigation` has run once in the process: a first visitor arriving at `/lab` would get
pages/lab.py on its own (no router, no wide layout, helper modules listed as pages). Each page
calls `require_router()` first; without the router around it, the page runs the entrypoint
instead, which sets up `st.navigation` and renders this same page, then stops its own run.
"""

from __future__ import annotations

import runpy
import threading
from pathlib import Path

import streamlit as st

ENTRYPOINT = Path(__file__).resolve().parents[1] / "streamlit_app.py"
_state = threading.local()  # each session's script runs in its own thread


def running() -> "_Running":
    """Context for the entrypoint: pages run inside it are routed."""
    return _Running()


class _Running:
    def __enter__(self) -> None:
        _state.routed = True

    def __exit__(self, *exc) -> None:
        _state.routed = False


def require_router() -> None:
    if getattr(_state, "routed", False):
        return
    runpy.run_path(str(ENTRYPOINT), run_name="__main__")
    st.stop()
