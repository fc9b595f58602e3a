"""Home: what Saturation Lab shows, and the lessons as one-click cards."""

import streamlit as st

from core.lab.presets import PRESETS


st.title("Saturation Lab")
st.markdown(
    "Deep networks fail in a few typical ways: gradients **vanish** on their way back to the "
    "first layers, or **explode**; sigmoid and tanh units **saturate** near their asymptotes, "
    "ReLUs go **inactive** below zero, and a unit inactive for every example is **dead**. "
    "Saturation Lab trains real small networks on real data and "
    "records every layer while they learn, so you can see these failures, and their fixes, "
    "for yourself.")
st.markdown("Pick a lesson to open it in the **Training Lab** with its settings; each lesson "
            "says what to look at, and checks what it says against the run you get.")

cols = st.columns(3)
for i, preset in enumerate(PRESETS.values()):
    with cols[i % 3].container(border=True, height="stretch"):
        st.markdown(f"#### {preset.title}")
        st.caption(preset.summary)
        st.page_link("app_pages/lab.py", label="Open in the Training Lab", icon=preset.icon,
                     query_params={**preset.config.to_params(), "tab": preset.tab})

st.markdown(
    "Or go straight to a page: the **Training Lab** for any image network; **Compare** to put "
    "two runs on the same charts; **Sweep** for a grid of runs over two settings; "
    "**Initialization** for the network before training, held against mean-field theory; "
    "**Activations** for where each nonlinearity is flat and where a real layer's units sit "
    "on it; the **2-D Playground** for decision boundaries on toy data; **Optimizers** for "
    "torch.optim's update rules racing on 2-D surfaces; **Recurrent** for gradients vanishing "
    "through time in RNNs and LSTMs; and **Attention** for softmax saturation. Every page keeps "
    "its settings in the link: copy it to share the exact experiment.")
