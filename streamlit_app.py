"""Saturation Lab: `streamlit run streamlit_app.py`.

Streamlit uses this file twice over. `streamlit run` imports it once to find `app` (an st.App),
the server, whose middleware starts the warm-up when the first visitor asks for a page that
computes with torch (core.tools.warmup: it imports torch while their browser is still loading
Streamlit's scripts). Then it runs it as `__main__` for every page request: the router. Page
titles, icons and URL paths live here; each page is a thin script in app_pages/ (not `pages/`:
that name switches on Streamlit's legacy multipage mode until `st.navigation` has run once, so a
first request to `/lab` would skip this router).
"""

import os

import streamlit as st
from starlette.middleware import Middleware

from core.cache import check_limits
from core.cpus import configure_for_server
from core.settings import ConfigError
from core.tools import warmup
from app_pages.kit.controls import enter_page

# (script in app_pages/, title, icon, URL path); Home, the default page, at the bare address.
PAGES = (
    ("home", "Home", ":material/home:", ""),
    ("lab", "Training Lab", ":material/model_training:", "lab"),
    ("compare", "Compare", ":material/compare_arrows:", "compare"),
    ("sweep", "Sweep", ":material/grid_on:", "sweep"),
    ("initialization", "Initialization", ":material/tune:", "initialization"),
    ("activations", "Activations", ":material/show_chart:", "activations"),
    ("playground", "2-D Playground", ":material/scatter_plot:", "playground"),
    ("optimizers", "Optimizers", ":material/route:", "optimizers"),
    ("recurrent", "Recurrent", ":material/repeat:", "recurrent"),
    ("attention", "Attention", ":material/center_focus_strong:", "attention"),
    ("classics", "Classics", ":material/history_edu:", "classics"),
    ("watched", "Your model", ":material/troubleshoot:", "watched"),
)


def route() -> None:
    st.set_page_config(page_title="Saturation Lab", page_icon=":material/show_chart:",
                       layout="wide")
    # Every page computes with torch, not only those that train through the run store: one thread
    # per run and pools sized to the container before any page runs (cheap to repeat each rerun).
    configure_for_server()
    # A deployment's run store may come from Streamlit secrets (.streamlit/secrets.toml, or the
    # host's secrets box): a managed PostgreSQL's URL with its password. core reads SATLAB_STORE
    # from the environment alone; an environment variable set by the host wins.
    if "SATLAB_STORE" not in os.environ and st.secrets.load_if_toml_exists() \
            and "SATLAB_STORE" in st.secrets:
        os.environ["SATLAB_STORE"] = str(st.secrets["SATLAB_STORE"])
    try:
        check_limits()
    except ConfigError as err:   # a misconfigured server: say so on every page, run nothing
        st.error(f"This server is misconfigured: {err}", icon=":material/error:")
        st.stop()

    page = st.navigation([st.Page(f"app_pages/{script}.py", title=title, icon=icon,
                                  url_path=path or None, default=not path)
                          for script, title, icon, path in PAGES])
    enter_page(page.url_path)
    # The one-time warm-up (core.tools.warmup) waits for the first page to draw before importing on.
    with warmup.page_run():
        page.run()


if __name__ == "__main__":   # a page request: Streamlit runs this file as __main__
    route()
else:                        # `streamlit run` importing the file to serve it
    # Every page but Home computes with torch: a first request for one starts the warm-up.
    app = st.App(__file__, middleware=[Middleware(
        warmup.OnPageRequest, paths={f"/{path}" for *_, path in PAGES if path})])
