"""Home: what Saturation Lab shows, and every page's lessons as one ordered path."""

import streamlit as st

from app_pages.kit.lessons import PATH


st.title("Saturation Lab")
st.markdown(
    "Deep networks fail in a few typical ways: gradients **vanish** on their way back to the "
    "first layers, or **explode**; sigmoid and tanh units **saturate** near their asymptotes, "
    "ReLUs go **inactive** below zero, and a unit inactive for every example is **dead**. "
    "Saturation Lab trains real small networks on real data and "
    "records every layer while they learn, so you can see these failures, and their fixes, "
    "for yourself.")
first_stage = PATH[0]
first = first_stage.presets[0]
n_lessons = sum(len(stage.presets) for stage in PATH)
st.markdown(f"The {n_lessons} lessons below make one path, in order. Each opens its page with "
            "its settings, says what to notice beside the chart, and checks what it says "
            "against the run you get.")
with st.container(border=True, horizontal=True, vertical_alignment="center"):
    st.markdown("New here?")
    st.page_link(first_stage.page, label=f"Start here: lesson 1, {first.title}",
                 icon=":material/flag:", query_params=first_stage.link(first))

PER_ROW = 4
step = 0
for n, stage in enumerate(PATH, 1):
    st.subheader(f"{n} · {stage.title}", anchor=False)
    st.caption(stage.why)
    for row in range(0, len(stage.presets), PER_ROW):
        # A row of its own: the cards of a row share its height.
        for col, preset in zip(st.columns(PER_ROW), stage.presets[row:row + PER_ROW]):
            step += 1
            with col.container(border=True, height="stretch"):
                if step == 1:
                    st.badge("Start here", icon=":material/flag:", color="orange")
                st.markdown(f"#### {preset.title}")
                st.caption(f"Lesson {step}. {preset.hint}")
                st.page_link(stage.page, label=stage.opens, icon=preset.icon,
                             query_params=stage.link(preset))

st.markdown(
    "Or go straight to a page: the **Training Lab** for any image network; **Compare** to put "
    "two runs on the same charts; **Sweep** for a grid of runs over two settings; "
    "**Initialization** for the network before training, held against mean-field theory; "
    "**Activations** for where each nonlinearity is flat and where a real layer's units sit "
    "on it; the **2-D Playground** for decision boundaries on toy data; **Optimizers** for "
    "torch.optim's update rules racing on 2-D surfaces; **Recurrent** for gradients vanishing "
    "through time in RNNs and LSTMs; and **Attention** for softmax saturation. Every page keeps "
    "its settings in the link: copy it to share the exact experiment.")
