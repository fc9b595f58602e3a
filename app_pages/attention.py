"""Attention: softmax saturation in scaled dot-product attention, and what 1/√d does about it."""

import math

import streamlit as st

from core.attention import charts as attention_charts
from core.attention.config import AttentionConfig
from core.attention.presets import ATTENTION_PRESETS, Evidence, sweep_value
from core.attention.softmax import (VARIANTS,
                                    cached_attention,
                                    example_image,
                                    example_weights,
                                    get_attention,
                                    softmax_saturation)
from core.lab.metrics import readable
from app_pages.kit.charts import chart
from app_pages.kit.controls import ATTENTION, config_controls, warn
from app_pages.kit.lessons import lesson_box, preset_buttons
from app_pages.kit.runs import obtain


st.title("Attention")
st.write("A self-attention head compares every token's query with every token's key, q·k, and "
         "takes a softmax. With query/key weights N(0, 1/fan_in), q·k is a sum of d products, so "
         "its spread grows with √d: **without dividing by √d** the softmax drifts toward an "
         "argmax as d grows (entropy toward 0, largest weight toward 1), and its Jacobian "
         "diag(p) − ppᵀ, the factor every gradient to the queries and keys passes through, "
         "shrinks toward 0. Below, real digits are the token sequences (their pixel rows or "
         "patches): watch the red curves fall while the blue ones hold, then a tiny attention "
         "classifier trained both ways.")


with st.sidebar:  # no form: the sweep is immediate and the classifier is cached
    cfg, warnings = config_controls(ATTENTION)
warn(warnings)

preset_buttons(ATTENTION_PRESETS, ATTENTION)
claims_box = st.container()


@st.cache_data(max_entries=64, show_spinner=False)
def _sweep(cfg: AttentionConfig):
    return softmax_saturation(cfg), example_weights(cfg), example_image(cfg)


try:
    sat, weights, (image, label) = _sweep(cfg)
except Exception as err:  # data that cannot be loaded: a message, not a traceback
    st.error(f"The attention statistics could not be computed: {err}", icon=":material/error:")
    st.stop()

mine = "scaled" if cfg.scaled else "unscaled"
other = VARIANTS[1 - VARIANTS.index(mine)]
log_n = float(sat.log_n.iloc[0])
st.caption(f"At d = {cfg.d}, logits {attention_charts.LABELS[mine]} (the toggle's choice, "
           f"drawn thick below); under each number, the same {other}.")
cols = st.columns(4)
for col, (metric, title, fmt, help_) in zip(cols, [
        ("entropy", "Entropy", "{:.2f} nats".format,
         f"Mean over queries; uniform attention over the {round(math.exp(log_n))} tokens has "
         f"log n = {log_n:.2f}."),
        ("max_weight", "Largest weight", "{:.2f}".format,
         "Mean over queries of the largest weight."),
        # A decimal where one reads (0.352, not 3.52e-01), a power of ten once it is tiny.
        ("jacobian_norm", "Softmax Jacobian", lambda v: readable(v, 3),
         "Mean Frobenius norm of diag(p) − ppᵀ."),
        ("saturated", "Saturated queries", "{:.0%}".format,
         "Share of queries whose largest weight exceeds 0.99.")]):
    col.metric(title, fmt(sweep_value(sat, mine, metric, d=cfg.d)),
               delta=f"{other}: {fmt(sweep_value(sat, other, metric, d=cfg.d))}",
               delta_color="off", delta_arrow="off", help=help_)

chart(attention_charts.saturation_curves(sat, cfg.d, mine))
st.caption("Each point averages over the queries of 256 real digits, with query/key weights "
           "drawn once (seeded) at width 512 and cut to width d. A query saturates once its "
           "largest logit beats the runner-up by several units; among 8 rows or 16 small patches "
           "the runner-up is usually closer than among four 4×4 patches, so those sequences need "
           "a larger d (or logit scale) to saturate.")
chart(attention_charts.weights_heatmap(weights, image, label, cfg.tokens))
chart(attention_charts.spread_chart(sat, mine))

st.subheader("A tiny attention classifier", anchor=False)
st.write(f"Tokens → linear embedding + position → one single-head self-attention layer "
         f"(d = {cfg.d}, torch's `scaled_dot_product_attention`) → mean over tokens → 10 "
         "classes. Both variants start from the same weights and see the same batches; only "
         "the 1/√d differs.")


def _train(cfg: AttentionConfig, on_epoch, on_wait):
    """Both classifiers, reporting (epochs done, epochs) as they go."""
    return get_attention(cfg, on_progress=lambda done, total: on_epoch((done, total)),
                         on_wait=on_wait)


def _progress(epochs: tuple[int, int]) -> tuple[float, str]:
    done, total = epochs
    return done / total, f"Training both classifiers… epoch {done} of {total}"


result = obtain(cfg, cached=cached_attention, train=_train, progress=_progress,
                starting="Training both classifiers…",
                failure="The classifier could not be trained")
lesson_box(ATTENTION_PRESETS.values(), cfg, Evidence(sat, result), container=claims_box)

if result is not None:
    for variant in VARIANTS:
        if result.diverged(variant):
            st.error(f"The {variant} classifier diverged: its loss became NaN or infinite. Try "
                     "a smaller learning rate or logit scale.", icon=":material/error:")
    chart(attention_charts.training_curves(result, mine))
    chart(attention_charts.gradient_charts(result, mine))
    st.caption(f"Validation accuracy after {cfg.epochs} epochs: "
               f"{result.final('scaled', 'accuracy'):.1%} scaled, "
               f"{result.final('unscaled', 'accuracy'):.1%} unscaled. Trained in "
               f"{result.seconds:.1f} s" + (" (from the run store)." if result.from_store
                                            else "."))
