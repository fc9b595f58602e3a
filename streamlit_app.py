"""Saturation Lab: `streamlit run streamlit_app.py`.

The router: page titles, icons and URL paths live here; each page is a thin script in
app_pages/ (not `pages/`: that name switches on Streamlit's legacy multipage mode until
`st.navigation` has run once, so a first request to `/lab` would skip this router).

Everything, imports included, runs under `if __name__ == "__main__"` (Streamlit runs this file
as `__main__`). A sweep's worker processes (spawned or forkserver-started, core.lab.sweep_engines)
import the parent's main module as `__mp_main__`, multiprocessing's "safe importing of the main
module": without the guard each worker ran this router and the Home page in bare mode, logging
23 warnings ("missing ScriptRunContext!") apiece.
"""


def main() -> None:
    import os

    import streamlit as st

    from core.cache import check_limits
    from core.cpus import configure_for_server
    from core.settings import ConfigError
    from core.tools.warmup import warm_in_background
    from app_pages.kit.links import enter_page

    st.set_page_config(page_title="Saturation Lab", page_icon=":material/show_chart:",
                       layout="wide")
    # Every page computes with torch, not only those that train through the run store: one
    # thread per run and pools sized to the container before any page runs (cheap to repeat
    # each rerun).
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

    page = st.navigation([
        st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("app_pages/lab.py", title="Training Lab", icon=":material/model_training:",
                url_path="lab"),
        st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:",
                url_path="compare"),
        st.Page("app_pages/sweep.py", title="Sweep", icon=":material/grid_on:", url_path="sweep"),
        st.Page("app_pages/initialization.py", title="Initialization", icon=":material/tune:",
                url_path="initialization"),
        st.Page("app_pages/activations.py", title="Activations", icon=":material/show_chart:",
                url_path="activations"),
        st.Page("app_pages/playground.py", title="2-D Playground", icon=":material/scatter_plot:",
                url_path="playground"),
        st.Page("app_pages/optimizers.py", title="Optimizers", icon=":material/route:",
                url_path="optimizers"),
        st.Page("app_pages/recurrent.py", title="Recurrent", icon=":material/repeat:",
                url_path="recurrent"),
        st.Page("app_pages/attention.py", title="Attention", icon=":material/center_focus_strong:",
                url_path="attention"),
        st.Page("app_pages/classics.py", title="Classics", icon=":material/history_edu:",
                url_path="classics"),
        st.Page("app_pages/watched.py", title="Your model", icon=":material/troubleshoot:",
                url_path="watched"),
    ])
    enter_page(page.url_path)
    try:
        page.run()
    finally:
        # Once per process, after the first page has drawn (its imports would compete with the
        # warm-up's for the GIL): in the background, the imports a first training waits for,
        # then the heap frozen out of the collection Streamlit runs after every rerun
        # (core.tools.warmup).
        warm_in_background()


if __name__ == "__main__":
    main()
