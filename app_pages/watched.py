"""Your model: open a run file (a loop watched with core.watch, or a Lab run), or a watched run
from the run store, and read its per-layer diagnostics and the gradient doctor's findings, without
training anything here."""

from typing import Callable

import streamlit as st

from core.lab import charts, histogram_charts
from core.lab.doctor import diagnose
from core.lab.metrics import DEPTH_RATIO, readable
from core.lab.network_chart import network_diagram
from core.lab.runfile import RunFileError, parse_run_file
from core.lab.tabs import TABS, TabChart
from core.settings import inline
from core.tables import status_word
# Only the result class, but importing it loads torch: core/watch/__init__.py imports the
# watcher. The page itself imports no torch (tests/test_architecture.py).
from core.watch.result import KIND, WatchedRun, load_stored, stored_watched, watched_label
from app_pages.kit.charts import open_tab, run_chart
from app_pages.kit.controls import labelled_choice, warn
from app_pages.kit.diagnosis import doctor_box, flat_share_metric

# Well under Streamlit's 200 MB upload limit: the browser refuses a larger file before sending
# it, and parse_run_file refuses one that arrives anyway. A watched run's file is small (the
# per-layer rows of its recorded steps; no histograms).
MAX_UPLOAD_MB = 64
KINDS = {KIND: WatchedRun}
# Streamlit puts a button group's label (not its value) in the link, so the labels are short.
UPLOAD, STORED = "Upload a file", "Pick a stored run"
RUN_KEY = "run"   # the link's parameter naming a stored run by its key
# A watched run's charts where they differ from a Lab run's (None: left out). Its loop's
# epochs and validation are its own and it keeps no histograms, so the per-epoch loss gives way
# to the loss per step, and the charts drawn from histograms (the network diagram's units and
# the batch-norm shift come from them) or from the mean and max |∇W| the trainer alone records
# (gradient flow) are left out; so is the clipping chart, whose title states the Lab's clipping
# setting, unknown for a loop (the total gradient norm is in the loss-per-step chart).
WATCHED_CHARTS = {charts.loss_accuracy: TabChart(charts.loss_steps), network_diagram: None,
                  histogram_charts.histograms: None, histogram_charts.histogram_over_time: None,
                  charts.gradient_flow: None, histogram_charts.batch_norm_shift: None,
                  charts.clipping: None}

st.title("Your model")
st.write("Open the file of a training loop you ran yourself, and see what the Training Lab shows "
         "of its own runs: every layer's gradients, saturated or inactive units and update sizes, "
         "and the gradient doctor's findings. To make the file, wrap your loop in "
         "`core.watch.watch`, call `w.after_backward(loss)` after each backward pass, and save "
         "`w.result()` to a file, or put it into the run store (`.store()`) and pick it here; "
         "a Lab run's JSON (its **Run as JSON** download, or "
         "`python -m core train --json`) opens here too.")
st.code("""from core.watch import watch

with watch(model, optimizer, every=25) as w:
    for x, y in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        w.after_backward(loss)      # after backward, before any clipping
        optimizer.step()
w.result().save("run.json")         # open it here, or: python -m core diagnose run.json
w.result().store()                  # or pick it here from the run store (SATLAB_STORE)

# Sharpness (the loss's top Hessian eigenvalue, against 2/lr) every 100 steps:
# watch(..., sharpness_every=100) and w.after_backward(loss, lambda: loss_fn(model(x), y))""",
        language="python")

link = {key: st.query_params.get(key) for key in (RUN_KEY,)}
source = st.segmented_control(
    "Open", [UPLOAD, STORED], default=UPLOAD if link[RUN_KEY] is None else STORED,
    key="source", bind="query-params", required=True,
    help="A run file from your computer, or a watched run put into this server's run store "
         "with `w.result().store()`.")


def from_upload() -> tuple[tuple, Callable[[], object]]:
    """The uploaded file's identity and how to read it."""
    upload = st.file_uploader(
        "Run file (.json)", type="json", max_upload_size=MAX_UPLOAD_MB,
        help=f"A watched loop's file (`run.save`) or a Lab run's JSON, at most "
             f"{MAX_UPLOAD_MB} MB. Nothing is trained or stored.")
    if upload is None:
        st.stop()
    return (UPLOAD, upload.file_id), lambda: parse_run_file(
        upload.getvalue(), MAX_UPLOAD_MB * 2**20, kinds=KINDS)


def from_store() -> tuple[tuple, Callable[[], object]]:
    """The picked stored run's identity and how to read it (the link holds its key)."""
    runs = stored_watched()
    if not runs:
        if link[RUN_KEY] is not None:
            warn([f"`{RUN_KEY}={inline(link[RUN_KEY])}`: no watched run in the store has this "
                  "key; it holds none yet."])
        st.info("The run store holds no watched run yet: put one there with "
                "`w.result().store()` in the process that watched it, with SATLAB_STORE naming "
                "this server's store.", icon=":material/info:")
        st.stop()
    labels = {r["key"]: watched_label(r) for r in runs}
    key, problems = labelled_choice(
        "Stored run", list(labels), labels, key=RUN_KEY, default=runs[0]["key"],
        why_not="no watched run in the store has this key (any more)",
        help="Watched runs in the run store, most recently used first: the model, its "
             "optimizer, the activation most units went through, the steps, then the final "
             "loss and when it was stored.")
    warn(problems)

    def read():
        run = load_stored(key)
        if run is None:
            raise RunFileError(f"run {key} is no longer in the run store, or cannot be read")
        return run
    return (STORED, key), read


identity, read = from_upload() if source == UPLOAD else from_store()
# A tab switch reruns the page: the file (up to 64 MB of JSON) or the stored run is read once
# per choice, and the session keeps what it read, rather than reading it again on every rerun.
opened = st.session_state.get("opened_run")
try:
    if opened is None or opened[0] != identity:
        st.session_state.pop("opened_run", None)
        opened = (identity, read())
    result = opened[1]
    findings = diagnose(result)   # made once per run object (RunResult.derived)
    st.session_state["opened_run"] = opened
except RunFileError as err:
    st.error(f"This {'file' if source == UPLOAD else 'run'} cannot be opened: {err}",
             icon=":material/error:")
    st.stop()
except Exception as err:  # shaped like a run, but records the doctor cannot read
    st.error(f"This {'file' if source == UPLOAD else 'run'} cannot be diagnosed: its records do "
             f"not read as a run's ({type(err).__name__}).", icon=":material/error:")
    st.stop()

watched = isinstance(result, WatchedRun)
cfg = result.config
if watched:
    st.subheader(f"A watched {cfg.model}", anchor=False)
    st.caption(f"Optimizer {cfg.optimizer or 'none given'}, learning rate {cfg.lr:g}; per-layer "
               f"statistics every {cfg.every} steps; its activation taken as {cfg.activation} "
               f"(the one most units went through). Run {result.key}, on {result.device}.")
else:
    st.subheader("A Training Lab run", anchor=False)
    st.caption(f"Settings: {cfg.changed() or 'the defaults'}. Run {result.key}, on "
               f"{result.device}.")
if result.diverged:
    st.error(f"The run diverged: {result.divergence.get('message', 'a value became non-finite')}."
             " Everything up to that step is shown below.", icon=":material/error:")

losses = result.steps["loss"].dropna()
cols = st.columns(5)
cols[0].metric("Steps", f"{len(result.steps):,}", delta=status_word(result.status),
               delta_color="off", delta_arrow="off",
               help="Training steps recorded (the loss and the total gradient norm every step), "
                    "and how the run ended.")
cols[1].metric("Final loss", f"{losses.iloc[-1]:.4g}" if len(losses) else "–",
               help="The training loss at the last step with a finite loss.")
cols[2].metric(DEPTH_RATIO.label, readable(result.depth_ratio(0)),
               help=f"{DEPTH_RATIO.symbol}: {DEPTH_RATIO.help}")
flat_share_metric(cols[3], result, "No saturating or ReLU-family activation was seen: a "
                                   "linear network has no flat region.")
cols[4].metric("Layers recorded", len(result.layer_names),
               help=f"A watched model's modules that hold parameters or are activations, by "
                    f"their path in the model; a Lab run's layers. {result.n_params:,} "
                    f"parameters in all." if watched else
                    f"The network's layers; {result.n_params:,} parameters in all.")

doctor_box(result, findings)  # advice, not buttons: nothing here can retrain their model


def shown(tab_charts: tuple[TabChart, ...]) -> list[TabChart]:
    """The tab's charts that this run has the records for (see WATCHED_CHARTS)."""
    replaced = [WATCHED_CHARTS.get(c.build, c) if watched else c for c in tab_charts]
    return [c for c in replaced if c is not None and c.applies(result)]


# Every chart at its last state (epoch None): a watched run has no epochs to scrub, and a Lab
# run's per-epoch charts carry their own sliders.
drawn = {name: shown(tab_charts) for name, tab_charts in TABS.items()}
drawn = {name: tab_charts for name, tab_charts in drawn.items() if tab_charts}
for name, tab in open_tab(list(drawn), key="tab"):
    with tab:
        layer = None   # one picker a tab, above the first chart that follows a layer
        for chart in drawn[name]:
            if chart.needs_layer and layer is None:
                layer = st.selectbox("Layer over time", result.layer_names, key="layer",
                                     help="The layer whose activation histogram and traced "
                                          "units the charts below follow.")
            run_chart(result, chart.build, *chart.args(None, layer))
