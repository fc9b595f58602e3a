"""Saturation Lab: `streamlit run streamlit_app.py`.

The router: page titles, icons and URL paths live here, each page is a thin script in pages/
(see pages/router.py for why each page first checks that it runs inside this router).
"""

import streamlit as st

from core.cpus import configure_for_server
from pages import router

st.set_page_config(page_title="Saturation Lab", page_icon=":material/show_chart:", layout="wide")
# Every page computes with torch, not only those that train through the run store: one thread
# per run and pools sized to the container before any page runs (cheap to repeat each rerun).
configure_for_server()

page = st.navigation([
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/lab.py", title="Training Lab", icon=":material/model_training:",
            url_path="lab"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:",
            url_path="compare"),
    st.Page("pages/sweep.py", title="Sweep", icon=":material/grid_on:", url_path="sweep"),
    st.Page("pages/initialization.py", title="Initialization", icon=":material/tune:",
            url_path="initialization"),
    st.Page("pages/activations.py", title="Activations", icon=":material/show_chart:",
            url_path="activations"),
    st.Page("pages/playground.py", title="2-D Playground", icon=":material/scatter_plot:",
            url_path="playground"),
    st.Page("pages/optimizers.py", title="Optimizers", icon=":material/route:",
            url_path="optimizers"),
    st.Page("pages/recurrent.py", title="Recurrent", icon=":material/repeat:",
            url_path="recurrent"),
    st.Page("pages/attention.py", title="Attention", icon=":material/center_focus_strong:",
            url_path="attention"),
])
with router.running():
    page.run()
