"""Initialization: the network before any training, measured and held against mean-field theory."""

import math

import numpy as np
import streamlit as st

from core.data.datasets import IMAGE_DATASETS
from core.init import charts as init_charts
from core.init.phase import phase_diagram
from core.init.probe import METRICS, probe
from core.init.spectra import spectra
from core.lab.config import RunConfig
from core.lab.metrics import readable
from app_pages.kit.charts import chart, spec_dict
from app_pages.kit.controls import LAB, apply_settings, config_controls, warn


FIELDS_HERE = ["dataset", "depth", "width", "activation", "init", "sigma_w2", "bias_init",
               "bias_value", "seed"]
# A deep tanh net with mean-field weights on the critical line (σ_b² = 0.05 → σ_w² ≈ 1.76):
# move σ_w² down into the ordered phase or up into the chaotic one and watch the profile tilt.
DEFAULTS = RunConfig(depth=50, width=256, activation="tanh", init="mean_field", sigma_w2=1.76,
                     bias_init="normal", bias_value=0.05)
SIGMA_W2 = tuple(float(v) for v in np.round(np.geomspace(0.25, 8.0, 11), 3))
SIGMA_B2 = (0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5)
PHASE_COLOURS = {"ordered": "blue", "critical": "green", "chaotic": "orange"}

st.title("Initialization")
st.info("**In short.** Before any training, the size of a network's random weights decides "
        "what happens to the gradient on its way back from the output to the first layers. "
        "Once the signal's scale has settled, each layer multiplies the gradient by about the "
        "same factor: below one it shrinks exponentially and the first layers barely learn "
        "(vanishing), above one it grows exponentially (exploding). Where the factor is one, "
        "the critical line, it does neither, and far deeper networks can be trained. This page "
        "measures that factor in a real network, layer by layer, beside what theory predicts "
        "from the weights' and biases' variances and the activation.",
        icon=":material/lightbulb:")
st.write("In detail: the page builds the network (the same code and seed the Training Lab "
         "trains), feeds it a batch of real inputs and back-propagates once, then sets each "
         "layer's measurements beside **mean-field theory** (Poole et al. 2016; Schoenholz et "
         "al. 2016): the fixed point q* of the pre-activation variance and the per-layer "
         "gradient factor χ₁ = σ_w² E[φ′(√q* z)²]. χ₁ < 1 is the ordered phase (gradients "
         "vanish), χ₁ > 1 the chaotic one (they explode), χ₁ = 1 the critical line between.")

with st.sidebar:  # no form: nothing trains, so every change redraws at once
    cfg, warnings = config_controls(LAB, FIELDS_HERE, defaults=DEFAULTS,
                                    options={"dataset": sorted(IMAGE_DATASETS)})
    st.caption("σ_w² applies with init = mean_field; σ_b² with bias init = normal. Other inits "
               "have their own σ_w² (Xavier ≈ 1, He = 2, PyTorch's default 1/3), which the "
               "theory uses.")
warn(warnings)


@st.cache_data(max_entries=64, show_spinner=False)
def _probe(cfg: RunConfig):
    return probe(cfg)


@st.cache_data(max_entries=16, show_spinner=False)
def _phase(cfg: RunConfig):
    # The grid keeps cfg's depth; a narrower net for big widths keeps it immediate (theory does
    # not depend on width, and the measurement is already an average over many units).
    return phase_diagram(cfg, SIGMA_W2, SIGMA_B2, width=min(cfg.width, _grid_width(cfg)))


def _grid_width(cfg: RunConfig) -> int:
    # Cost grows as depth × width²: narrower nets keep very deep grids near a second.
    return 128 if cfg.depth <= 30 else 64


@st.cache_data(max_entries=16, show_spinner=False)
def _spectra(cfg: RunConfig):
    # A Jacobian costs depth × width³.
    return spectra(cfg, width=min(cfg.width, 256 if cfg.depth <= 30 else 128))


try:
    with st.spinner("Measuring the network at initialisation…"):
        p = _probe(cfg)
except Exception as err:  # an unavailable dataset, say: a message, not a traceback
    st.error(f"This network could not be probed: {err}", icon=":material/error:")
    st.stop()

if p.dataset.get("notice"):
    st.info(p.dataset["notice"], icon=":material/info:")
if p.theory:
    st.info(f"Mean-field theory here is approximate: {p.theory}", icon=":material/info:")

s = p.summary()
mf = p.mean_field
st.badge(f"{mf.phase} phase · χ₁ = {mf.chi1:.3f}", color=PHASE_COLOURS.get(mf.phase, "gray"),
         icon=":material/insights:")
cols = st.columns(5)
cols[0].metric("q* (fixed point)", "∞" if mf.diverges else f"{mf.q_star:.3g}",
               help="The pre-activation variance the layers settle at, from the length map "
                    "q ↦ σ_w² E[φ(√q z)²] + σ_b².")
cols[1].metric("χ₁ theory", f"{mf.chi1:.3f}",
               help="Predicted factor on ‖δ‖² per layer once q has settled (Gaussian "
                    "expectation by composite quadrature, accurate to ~1e-12).")
cols[2].metric("χ measured", f"{s['measured_chi']:.3f}",
               help="Geometric mean of ‖δ_l‖²/‖δ_l+1‖² over the middle half of the layers, in "
                    "this network on this batch.")
cols[3].metric("Depth scale ξ", "∞" if math.isinf(mf.depth_scale) else f"{mf.depth_scale:.1f}",
               help="Layers over which the gradient changes by a factor e: 1/|ln χ₁|. "
                    "Trainable depth is a few ξ.")
cols[4].metric("First/last gradient", readable(s['grad_ratio']),
               delta=f"theory {readable(s['predicted_grad_ratio'])}", delta_color="off",
               help="‖δ₁‖/‖δ_L‖ measured, and what theory predicts for this depth.")

chart(init_charts.profile(p.layers))
with st.expander("Every measurement, layer by layer", icon=":material/table:"):
    st.dataframe(p.layers.assign(metric=p.layers["metric"].map(METRICS)), hide_index=True,
                 width="stretch")

st.subheader("Phase diagram", anchor=False)
st.write(f"The same depth ({cfg.depth} layers), with W ~ N(0, σ_w²/fan_in) and b ~ N(0, σ_b²): "
         "the first/last gradient ratio that theory predicts and that the network shows, cell "
         "by cell, and the critical line χ₁ = 1. Click a cell to set those values above.")


def _pick_cell() -> None:
    event = st.session_state.get("phase_click")
    picked = (event or {}).get("selection", {}).get("cell") or []
    if picked and isinstance(picked[-1], dict):
        cell = picked[-1]
        values = {"init": "mean_field", "bias_init": "normal",
                  "sigma_w2": cell.get("sigma_w2"), "bias_value": cell.get("sigma_b2")}
        apply_settings(LAB, {name: value for name, value in values.items() if value is not None})


# Only what the grid depends on goes into the cache key: moving σ_w² does not recompute it.
grid_net = RunConfig(dataset=cfg.dataset, depth=cfg.depth, width=cfg.width,
                     activation=cfg.activation, seed=cfg.seed)
with st.spinner("Probing the grid…"):
    diagram = _phase(grid_net)
here = (cfg.sigma_w2, cfg.bias_value) if (cfg.init, cfg.bias_init) == ("mean_field", "normal") \
    else None
st.vega_lite_chart(spec_dict(init_charts.phase_heatmap(
                       diagram.cells, diagram.critical, current=here)),
                   width="stretch", key="phase_click",
                   on_select=_pick_cell)

st.subheader("Dynamical isometry: the Jacobian's singular values", anchor=False)
st.write(f"Singular values of the Jacobian ∂x_L/∂x_1 of the hidden stack at this depth "
         f"({cfg.depth}), one input (Pennington et al. 2017). Orthogonal tanh at the critical "
         "point (σ_w² = 1, σ_b² = 0) keeps them in a narrow band, every direction of the "
         "gradient scaled alike; the band's centre sits below 1 and drifts lower with depth as "
         "the pre-activations shrink toward q* = 0, as theory predicts (its RMS is marked). "
         "Gaussian weights and ReLU spread them over orders of magnitude, and ReLU zeroes many: "
         "some directions of the gradient vanish while others do not.")
relative = st.toggle("Divide by each setting's RMS", key="relative", bind="query-params",
                     help="Compare the shapes of the spectra without their overall scale: "
                          "isometry is a narrow band around 1 here.")
with st.spinner("Computing Jacobians…"):
    table = _spectra(grid_net)  # the settings choose activation and init themselves
# At its own size: Streamlit stretches a stack's panels to the page, and their axes then
# overflowed it (seen in Chromium at 1400 px).
chart(init_charts.spectrum(table, relative=relative), width="content")
if len(p.singular_values):
    chart(init_charts.spectrum(p.singular_values.assign(setting="this network"),
                               title="This network's Jacobian singular values"))
st.caption(f"Measured on {p.dataset['n_inputs']} {p.dataset['name']} inputs in "
           f"{p.seconds:.2f} s. `python -m core probe` prints the same analysis.")
