"""Recurrent: a vanilla RNN, an LSTM and a GRU read real images row by row; the gradient through
time shows what each of them can still learn from the first rows."""

import math

import streamlit as st

from core import recurrent_charts
from core.config import OPTIMIZERS
from core.recurrent import RecurrentResult, cached_recurrent_run, get_recurrent_run
from core.recurrent_config import (CELLS, DATASETS, DEVICES, RECURRENT_INITS, SEQUENCES,
                                   RecurrentConfig, chunk_sizes)
from core.settings import settings_named
from core.recurrent_presets import RECURRENT_PRESETS
from pages import training
from pages.router import require_router

require_router()

GROUPS = {"data": "Data", "architecture": "Architecture", "initialisation": "Initialisation",
          "optimisation": "Optimisation", "clipping": "Gradient clipping", "run": "Run"}
CHOICES = {"dataset": DATASETS, "sequence": SEQUENCES, "cell": CELLS,
           "recurrent_init": RECURRENT_INITS, "optimizer": OPTIMIZERS, "device": DEVICES}
# Select sliders over these values; a link holds the value as the slider shows it.
GRIDS = {
    "chunk": sorted(set(chunk_sizes("digits")) | set(chunk_sizes("mnist"))),
    "max_train": [100, 200, 500, 1000, 2000, 5000, 10000, 20000, None],
    "hidden": [4, 8, 16, 32, 64, 128, 256, 512],
    "layers": [1, 2],
    "forget_bias": [None, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 5.0],
    "lr": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0],
    "batch_size": [8, 16, 32, 64, 128, 256, 512, 1024],
    "clip_norm": [None, 0.01, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0],
    "record_every": [None, 1, 2, 5, 10, 20, 50, 100],
}
LABELS = {"dataset": "Dataset", "sequence": "Read the image by", "chunk": "Pixels per step "
          "(chunks)", "max_train": "Training images", "cell": "Cell", "hidden": "Hidden units",
          "layers": "Layers", "recurrent_init": "Recurrent weights", "forget_bias":
          "Forget/update-gate bias", "optimizer": "Optimizer", "lr": "Learning rate",
          "batch_size": "Batch size", "epochs": "Epochs", "clip_norm": "Clip gradient norm at",
          "seed": "Seed", "device": "Device", "record_every": "Measure ‖∂L/∂h_t‖ every (steps)"}
EXPANDED = ("data", "architecture", "initialisation", "optimisation")

st.title("Recurrent networks")
st.write("A recurrent network reads an image one row at a time (28 rows for Fashion-MNIST) and "
         "classifies it from its last hidden state, so whatever it learns from the first rows "
         "has to travel back through every later step. The heatmap below measures exactly that "
         "during real training: ‖∂L/∂h_t‖, how strongly the loss depends on the hidden state "
         "after each time step t. For the vanilla tanh RNN it fades by orders of magnitude "
         "towards the first rows; the LSTM's gated, additive cell state keeps it alive. Pick a "
         "preset, or change a setting in the sidebar and press **Train**.")


def _widget(name: str):
    f, default = RecurrentConfig.fields()[name], RecurrentConfig.fields()[name].default
    common = dict(key=name, help=f.metadata["help"], bind="query-params")
    if name in CHOICES:  # raw values, no format_func: a link holds the option as displayed
        options = list(CHOICES[name])
        return st.selectbox(LABELS[name], options, index=options.index(default), **common)
    if name in GRIDS:
        return st.select_slider(LABELS[name], GRIDS[name], value=default, **common,
                                format_func=lambda v, n=name: RecurrentConfig.format_setting(n, v))
    if name == "epochs":
        return st.slider(LABELS[name], 1, int(f.metadata["hi"]), default, **common)
    return st.number_input(LABELS[name], 0, int(f.metadata["hi"]), default, 1, **common)


raw_url = {k: st.query_params.get(k) for k in RecurrentConfig.fields() if k in st.query_params}
values = {}
with st.sidebar.form("recurrent", border=False):
    st.form_submit_button("Train", type="primary", width="stretch",
                          help="Train this configuration (instant if it ran before).")
    for group, title in GROUPS.items():
        with st.expander(title, expanded=group in EXPANDED):
            for name, f in RecurrentConfig.fields().items():
                if f.metadata["group"] == group:
                    values[name] = _widget(name)
# Combinations the widgets allow but the config forbids (a chunk that does not fit the images)
# fall back to the defaults, with a warning; so does what a link asked for and no widget offers.
cfg, problems = RecurrentConfig.with_fallbacks(values)
replaced = settings_named(problems)
for message in problems + RecurrentConfig.url_problems(
        {k: v for k, v in raw_url.items() if k not in replaced}, cfg):
    st.warning(message, icon=":material/warning:")


def _apply(config: RecurrentConfig) -> None:
    """A preset sets the bound widgets (and so the link); the run starts on the rerun."""
    for name in RecurrentConfig.fields():
        st.session_state[name] = getattr(config, name)


with st.expander("Lesson presets", expanded=False, icon=":material/school:"):
    cols = st.columns(len(RECURRENT_PRESETS))
    for col, p in zip(cols, RECURRENT_PRESETS.values()):
        col.button(p.title, icon=p.icon, help=p.summary, width="stretch", on_click=_apply,
                   args=(p.config,), key=f"preset_{p.id}")


def _run(cfg: RecurrentConfig) -> RecurrentResult | None:
    """The result for `cfg` (from the run store when it ran before), with progress while it
    trains; None, with a message, when it cannot be trained."""
    hit = cached_recurrent_run(cfg, training.store())
    if hit is not None:
        return hit
    progress = st.progress(0.0, text="Training…")

    def on_epoch(partial: RecurrentResult) -> None:
        done = int(partial.epochs.epoch.max()) if len(partial.epochs) else 0
        progress.progress(min(1.0, done / cfg.epochs),
                          text=f"Training… epoch {done} of {cfg.epochs}, validation accuracy "
                               f"{partial.final('val', 'accuracy'):.1%}")
    try:
        result = get_recurrent_run(cfg, store=training.store(), on_epoch=on_epoch)
    except Exception as err:  # a missing dataset, an unavailable device: say so, no traceback
        st.error(f"This run could not start: {err}", icon=":material/error:")
        result = None
    progress.empty()
    return result


preset = next((p for p in RECURRENT_PRESETS.values() if p.config == cfg), None)
result = _run(cfg)
if result is None:
    st.stop()

if preset:
    training.lesson(preset, result)

if result.dataset.get("notice"):
    st.info(result.dataset["notice"], icon=":material/info:")
if result.diverged:
    st.error(f"The run diverged: {result.divergence['message']}. Everything up to that step is "
             "shown below.", icon=":material/error:")

T = cfg.seq_len
cols = st.columns(5)
cols[0].metric("Validation accuracy", f"{result.final('val', 'accuracy'):.1%}",
               help=f"Share of the first {result.dataset['n_val_evaluated']:,} validation "
                    "images classified correctly after the last epoch.")
for col, title, value, text in (
        (cols[1], "First/last at init", result.ratio_at_init(), "at initialisation"),
        (cols[2], "First/last, median", result.median_ratio(), "in the median over training")):
    col.metric(title, f"{value:.1e}" if math.isfinite(value) else "–",
               help=f"‖∂L/∂h_1‖ / ‖∂L/∂h_{T}‖ {text}: how much of the gradient at the last of "
                    f"the {T} time steps reaches the first. Far below 1: vanishing through "
                    "time; far above: exploding.")
cols[3].metric("Status", result.status,
               help="'diverged' when the loss or the gradient became NaN or infinite; the run "
                    "stops there.")
cols[4].metric("Time", f"{result.timing['seconds']:.2f} s",
               delta="from the run store" if result.from_store else "trained now",
               delta_color="off", help=f"Wall time of the training run on {result.device}.")


@st.fragment
def panels() -> None:
    last = int(result.epochs.epoch.max())
    epoch = st.slider("Epoch", 0, max(last, 1), last, key="epoch", bind="query-params",
                      help="The state after this many epochs (0 = at initialisation): its line "
                           "is drawn thicker and a rule marks it in the step charts.",
                      disabled=last == 0)
    epoch = min(epoch, last)
    st.subheader("The gradient through time", anchor=False)
    training.chart(recurrent_charts.time_grad_heatmap(result))
    training.chart(recurrent_charts.time_grad_lines(result, epoch))
    training.chart(recurrent_charts.time_ratio(result, epoch))
    st.caption(f"‖∂L/∂h_t‖ is the norm, over the batch and the {cfg.hidden} hidden units, of the "
               "gradient of the batch's mean loss with respect to the top layer's hidden state "
               "after step t, through every later step; measured every "
               f"{result.timing['record_every']:g} training steps and at each epoch's start.")
    st.subheader("Training", anchor=False)
    training.chart(recurrent_charts.step_curves(result, epoch))
    training.chart(recurrent_charts.loss_accuracy(result, epoch))
    data = result.dataset
    st.caption(f"{data['n_train']:,} training images read as {T} steps of {cfg.step_size} "
               f"pixels; accuracies on the first {data['n_val_evaluated']:,} validation and "
               f"{data['n_test_evaluated']:,} test images. Source: {data['source']}.")


panels()
