"""Saturation Lab: `streamlit run streamlit_app.py`.

A placeholder until the app's pages land; it trains the default configuration through the same
`core.runs.get_run` the pages will use, so the whole path already works end to end.
"""

import streamlit as st

from core.config import RunConfig
from core.runs import get_run

st.set_page_config(page_title="Saturation Lab", page_icon=":material/show_chart:", layout="wide")
st.title("Saturation Lab")
st.write("See saturation, vanishing and exploding gradients by training real small networks. "
         "The interactive pages are coming; below is a real run of the default configuration.")

cfg = RunConfig()
with st.spinner("Training the default network on scikit-learn's digits…"):
    result = get_run(cfg)
st.metric("Validation accuracy", f"{result.final('val', 'accuracy'):.1%}")
st.caption(f"{result.dataset['name']}: {result.dataset['source']} · {result.device} · "
           f"{result.timing['seconds']:.2f} s")
st.dataframe(result.at_step("weight_grad_norm", 0).rename("weight-gradient norm at init"))
