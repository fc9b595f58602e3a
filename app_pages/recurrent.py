"""Recurrent: a vanilla RNN, an LSTM and a GRU read real images row by row; the gradient through
time shows what each of them can still learn from the first rows."""

import streamlit as st

from core.lab.metrics import readable
from core.recurrent import charts as recurrent_charts
from core.recurrent.presets import RECURRENT_PRESETS
from core.recurrent.trainer import cached_recurrent_run, get_recurrent_run
from app_pages.kit.charts import chart
from app_pages.kit.controls import RECURRENT, config_form, epoch_slider, warn
from app_pages.kit.lessons import lesson_box, preset_buttons
from core.tables import status_word
from app_pages.kit.runs import notices, obtain


st.title("Recurrent networks")
st.write("A recurrent network reads an image one row at a time (28 rows for Fashion-MNIST) and "
         "classifies it from its last hidden state, so whatever it learns from the first rows "
         "has to travel back through every later step. The heatmap below measures exactly that "
         "during real training: ‖∂L/∂h_t‖, how strongly the loss depends on the hidden state "
         "after each time step t. For the vanilla tanh RNN it fades by orders of magnitude "
         "towards the first rows; the LSTM's gated, additive cell state keeps it alive. Pick a "
         "preset, or change a setting in the sidebar and press **Train**.")


# Combinations the widgets allow but the config forbids (a chunk that does not fit the images)
# fall back to the defaults, with a warning; so does what a link asked for and no widget offers.
cfg, warnings = config_form(RECURRENT, form_key="recurrent")
warn(warnings)

preset_buttons(RECURRENT_PRESETS, RECURRENT)

result = obtain(cfg, cached=cached_recurrent_run, train=get_recurrent_run, stoppable=True)
if result is None:
    st.stop()

lesson_box(RECURRENT_PRESETS.values(), cfg, result)
notices(result)

T = cfg.seq_len
cols = st.columns(5)
cols[0].metric("Validation accuracy", f"{result.final('val', 'accuracy'):.1%}",
               help=f"Share of the first {result.dataset['n_val_evaluated']:,} validation "
                    "images classified correctly after the last epoch.")
for col, title, value, text in (
        (cols[1], "First/last at init", result.ratio_at_init(), "at initialisation"),
        (cols[2], "First/last, median", result.median_ratio(), "in the median over training")):
    col.metric(title, readable(value),   # 0.31 for an LSTM, not 3.1e-01; 2.4e-9 for an RNN
               help=f"‖∂L/∂h_1‖ / ‖∂L/∂h_{T}‖ {text}: how much of the gradient at the last of "
                    f"the {T} time steps reaches the first. Far below 1: vanishing through "
                    "time; far above: exploding.")
cols[3].metric("Status", status_word(result.status),
               delta=f"by you, at epoch {result.epochs_done}"
               if result.stopped else None, delta_color="off",
               help="'done': every epoch ran; 'diverged' when the loss or the gradient became "
                    "NaN or infinite: the run stops there; 'stopped': the Stop button ended it.")
cols[4].metric("Time", f"{result.timing['seconds']:.2f} s",
               # The Lab's words: "from the run store" wraps its sixth number on a laptop.
               delta="from the store" if result.from_store else "trained now",
               delta_color="off", help=f"Wall time of the training run on {result.device}.")


@st.fragment
def panels() -> None:
    last = int(result.epochs.epoch.max())
    epoch = epoch_slider(result.key, last,
                         help="The state after this many epochs (0 = at initialisation): its "
                              "line is drawn thicker and a rule marks it in the step charts.")
    st.subheader("The gradient through time", anchor=False)
    chart(recurrent_charts.time_grad_heatmap(result))
    chart(recurrent_charts.time_grad_lines(result, epoch))
    chart(recurrent_charts.time_ratio(result, epoch))
    st.caption(f"‖∂L/∂h_t‖ is the norm, over the batch and the {cfg.hidden} hidden units, of the "
               "gradient of the batch's mean loss with respect to the top layer's hidden state "
               "after step t, through every later step; measured every "
               f"{result.timing['record_every']:g} training steps and at each epoch's start.")
    st.subheader("Training", anchor=False)
    chart(recurrent_charts.step_curves(result, epoch))
    chart(recurrent_charts.loss_accuracy(result, epoch))
    data = result.dataset
    st.caption(f"{data['n_train']:,} training images read as {T} steps of {cfg.step_size} "
               f"pixels; accuracies on the first {data['n_val_evaluated']:,} validation and "
               f"{data['n_test_evaluated']:,} test images. Source: {data['source']}.")


panels()
