"""Attention: softmax saturation in scaled dot-product attention, and what 1/√d does about it."""

import math

import streamlit as st

from core import attention_charts
from core.attention import D_GRID, OPTIMIZERS, SCALE_GRID, TOKENS, VARIANTS, AttentionConfig, \
    cached_attention, example_image, example_weights, get_attention, softmax_saturation
from core.attention_presets import ATTENTION_PRESETS, Evidence, sweep_value
from core.settings import ConfigError
from pages import training
from pages.router import require_router

require_router()

DEFAULTS = AttentionConfig()
# Widgets: a select slider over these values, else a selectbox (choices), a toggle (bools), a
# slider (epochs) or a number box (seed).
GRIDS = {"d": D_GRID, "logit_scale": SCALE_GRID,
         "lr": (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0),
         "batch_size": (8, 16, 32, 64, 128, 256, 512, 1024),
         "max_train": (None, 100, 200, 500, 1000)}
CHOICES = {"tokens": TOKENS, "optimizer": OPTIMIZERS}
LABELS = {"tokens": "Tokens", "d": "Query/key width d", "scaled": "Scale logits by 1/√d",
          "logit_scale": "Logit scale", "seed": "Seed", "epochs": "Epochs",
          "lr": "Learning rate", "optimizer": "Optimizer", "batch_size": "Batch size",
          "max_train": "Training digits"}

st.title("Attention")
st.write("A self-attention head compares every token's query with every token's key, q·k, and "
         "takes a softmax. With query/key weights N(0, 1/fan_in), q·k is a sum of d products, so "
         "its spread grows with √d: **without dividing by √d** the softmax drifts toward an "
         "argmax as d grows (entropy toward 0, largest weight toward 1), and its Jacobian "
         "diag(p) − ppᵀ, the factor every gradient to the queries and keys passes through, "
         "shrinks toward 0. Below, real digits are the token sequences (their pixel rows or "
         "patches): watch the red curves fall while the blue ones hold, then a tiny attention "
         "classifier trained both ways.")


def _widget(name: str):
    f, default = AttentionConfig.fields()[name], getattr(DEFAULTS, name)
    common = dict(key=name, help=f.metadata["help"], bind="query-params")
    if name in CHOICES:
        return st.selectbox(LABELS[name], CHOICES[name], index=CHOICES[name].index(default),
                            **common)
    if isinstance(default, bool):
        return st.toggle(LABELS[name], value=default, **common)
    if name in GRIDS:
        return st.select_slider(LABELS[name], GRIDS[name], value=default, **common,
                                format_func=lambda v, n=name: AttentionConfig.format_setting(n, v))
    if name == "epochs":
        return st.slider(LABELS[name], 1, int(f.metadata["hi"]), default, **common)
    return st.number_input(LABELS[name], 0, int(f.metadata["hi"]), default, 1, **common)


raw_url = {k: st.query_params.get(k) for k in AttentionConfig.fields() if k in st.query_params}
values = {}
with st.sidebar:  # no form: the sweep is immediate and the classifier is cached
    for group, title in (("attention", "Attention"), ("classifier", "Classifier")):
        with st.expander(title, expanded=True):
            for name, f in AttentionConfig.fields().items():
                if f.metadata["group"] == group:
                    values[name] = _widget(name)
try:
    cfg = AttentionConfig(**values)
except ConfigError as err:  # the widgets only offer valid values; kept as a guard
    st.warning(f"{err}; using the defaults.", icon=":material/warning:")
    cfg = DEFAULTS
for message in AttentionConfig.url_problems(raw_url, cfg, GRIDS):
    st.warning(message, icon=":material/warning:")


def _apply(config: AttentionConfig) -> None:
    """A preset sets the bound widgets (and so the link); the page redraws with them."""
    for name in AttentionConfig.fields():
        st.session_state[name] = getattr(config, name)


with st.expander("Lesson presets", expanded=False, icon=":material/school:"):
    cols = st.columns(len(ATTENTION_PRESETS))
    for col, p in zip(cols, ATTENTION_PRESETS.values()):
        col.button(p.title, icon=p.icon, help=p.summary, width="stretch", on_click=_apply,
                   args=(p.config,), key=f"preset_{p.id}")
preset = next((p for p in ATTENTION_PRESETS.values() if p.config.replace(scaled=cfg.scaled)
               == cfg), None)
claims_box = st.container()


store = training.store()  # also sets the server's one-thread torch, before any computing


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
        ("entropy", "Entropy", "{:.2f} nats", f"Mean over queries; uniform attention over the "
                                              f"{round(math.exp(log_n))} tokens has "
                                              f"log n = {log_n:.2f}."),
        ("max_weight", "Largest weight", "{:.2f}", "Mean over queries of the largest weight."),
        ("jacobian_norm", "Softmax Jacobian", "{:.2e}", "Mean Frobenius norm of diag(p) − ppᵀ."),
        ("saturated", "Saturated queries", "{:.0%}", "Share of queries whose largest weight "
                                                      "exceeds 0.99.")]):
    col.metric(title, fmt.format(sweep_value(sat, mine, metric, d=cfg.d)),
               delta=f"{other}: {fmt.format(sweep_value(sat, other, metric, d=cfg.d))}",
               delta_color="off", delta_arrow="off", help=help_)

training.chart(attention_charts.saturation_curves(sat, cfg.d, mine))
st.caption("Each point averages over the queries of 256 real digits, with query/key weights "
           "drawn once (seeded) at width 512 and cut to width d. A query saturates once its "
           "largest logit beats the runner-up by several units; among 8 rows or 16 small patches "
           "the runner-up is usually closer than among four 4×4 patches, so those sequences need "
           "a larger d (or logit scale) to saturate.")
training.chart(attention_charts.weights_heatmap(weights, image, label, cfg.tokens))
training.chart(attention_charts.spread_chart(sat, mine))

st.subheader("A tiny attention classifier", anchor=False)
st.write(f"Tokens → linear embedding + position → one single-head self-attention layer "
         f"(d = {cfg.d}, torch's `scaled_dot_product_attention`) → mean over tokens → 10 "
         "classes. Both variants start from the same weights and see the same batches; only "
         "the 1/√d differs.")
result = cached_attention(cfg, store)
if result is None:
    progress = st.progress(0.0, text="Training both classifiers…")
    try:
        result = get_attention(cfg, store=store, on_progress=lambda done, total:
                               progress.progress(done / total, text=f"Training both "
                                                 f"classifiers… epoch {done} of {total}"))
    except Exception as err:  # an unavailable dataset or device: say so, no traceback
        st.error(f"The classifier could not be trained: {err}", icon=":material/error:")
        result = None
    progress.empty()

if preset:
    training.lesson(preset, Evidence(sat, result), container=claims_box,
                    claims=[c for c in preset.claims if result is not None
                            or not c.needs_classifier])

if result is not None:
    for variant in VARIANTS:
        if result.diverged(variant):
            st.error(f"The {variant} classifier diverged: its loss became NaN or infinite. Try "
                     "a smaller learning rate or logit scale.", icon=":material/error:")
    training.chart(attention_charts.training_curves(result, mine))
    training.chart(attention_charts.gradient_charts(result, mine))
    st.caption(f"Validation accuracy after {cfg.epochs} epochs: "
               f"{result.final('scaled', 'accuracy'):.1%} scaled, "
               f"{result.final('unscaled', 'accuracy'):.1%} unscaled. Trained in "
               f"{result.seconds:.1f} s" + (" (from the run store)." if result.from_store
                                            else "."))
