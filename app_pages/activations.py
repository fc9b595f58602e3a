"""Activations: every nonlinearity, its slope, its flat region, and where real units sit."""

import streamlit as st

from core.activations import ACTIVATIONS
from core.lab import charts
from core.lab.config import RunConfig
from core.lab.metrics import FLAT_WHEN
from app_pages.kit.charts import chart
from app_pages.kit.controls import LAB, config_form, epoch_slider, warn
from app_pages.kit.runs import notices, obtain


st.title("Activations")
st.write("Each curve is an activation f(z) with its slope f′(z). Shaded: its flat region, "
         f"{FLAT_WHEN}, where little gradient passes back through a unit. Sigmoid and tanh "
         "*saturate* there, near an asymptote; a ReLU-family unit there is *inactive* (ReLU's "
         "zero region, the flat negative side of its variants). The Training Lab measures the "
         "same definition. Below, the pre-activations of a "
         "real layer from a real run are laid over the curve: you see which part of the curve "
         "the units actually use.")

cols = st.columns(4)
for i, name in enumerate(ACTIVATIONS):
    with cols[i % 4]:
        chart(charts.activation_curve(name, small=True))

st.subheader("A real layer on its curve", anchor=False)
FIELDS_HERE = ["dataset", "depth", "width", "activation", "init", "batch_norm", "optimizer",
               "lr", "epochs"]
DEFAULTS = RunConfig(depth=6, activation="tanh", init="normal_large", epochs=5)
cfg, warnings = config_form(LAB, FIELDS_HERE, defaults=DEFAULTS,
                            options={"dataset": ["digits", "mnist", "fashion-mnist"]},
                            submit_label="Train and overlay")
warn(warnings)

result = obtain(cfg, live_chart=charts.loss_accuracy)
if result is None:
    st.stop()
notices(result)
last = int(result.histograms.epoch.max())
left, right = st.columns(2)
layer = left.selectbox("Layer", result.layer_names[:-1], key="layer", bind="query-params",
                       help="Whose pre-activations to overlay on the curve.")
epoch = epoch_slider(result.key, last, default=0, help="0 is the network at initialisation.",
                     container=right)
h = result.histograms
pre = h[(h.layer == layer) & (h.kind == "pre_activation") & (h.epoch == min(epoch, last))]
chart(charts.activation_curve(cfg.activation, pre))
kind = result.flat_metric
share = result.layers[(result.layers.layer == layer) & (result.layers.metric == kind)]
if len(share):
    word = charts.FLAT_WORDS[kind]
    st.caption(f"Measured in this run on its training batches: {share.value.iloc[0]:.0%} of "
               f"{layer}'s (example, unit) pairs {word} at initialisation, "
               f"{share.value.iloc[-1]:.0%} at the end.")
