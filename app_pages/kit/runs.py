"""Getting a run for a page, of any family: from the run store when it ran before, else trained
with progress; then what the user must know about it, and its downloads.

Training shows a progress bar and, where the family has one, charts that grow epoch by epoch;
where the page offers it, a Stop button ends the run at the next epoch boundary and keeps it.

How Stop works: a click while the script runs asks Streamlit for a rerun. With
`runner.fastReruns` (Streamlit's default, which .streamlit/config.toml keeps) the session stops
the running script and starts the next run at once, in a new thread; the old script gets
StopException at its next Streamlit call, here the progress bar's update after an epoch, which
used to end the training with nothing stored. The next run's first act is the Stop button's
`on_click`, which sets an event the training run shares; the old run waits until the next run
reaches the router (`enter_page`, after every callback), however long a loaded server takes, and
then reads that event. Seeing it set, `on_epoch` raises
core.training.StopTraining instead (the trainer ends after one more epoch, the cache stores the
run as "stopped"), making no Streamlit call until the run is stored. The new run waits for the
run's lock meanwhile (core.cache), then draws the stopped run. Any other cause (another widget
changed, the tab closed) ends the training as before, storing nothing: the user changed the
settings, and a partial run would later pose as one they had stopped.

The run store (core.cache's process-wide one) is not wrapped in `st.cache_data`: a cached
function would skip its progress output on a hit, and the store already makes repeats instant
for every session of the server.
"""

from __future__ import annotations

import functools
import io
import threading
import time
import zipfile
from typing import Any, Callable

import streamlit as st
from streamlit import runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit.runtime.scriptrunner_utils.exceptions import StopException

from core.lab.export import pytorch_script, script_filename
from core.lab.result import TABLES, RunResult
from core.lab.runs import cached_run, get_run, refuse_runs
from core.settings import ConfigError
from core.training import StopTraining
from app_pages.kit.charts import chart
from app_pages.kit.links import NEXT_RUN_KEY

STOP_KEY = "stop_run"             # the Stop button's key
FULL_RUN_KEY = "_kit_full_run"    # the key of the stopped run "Train all N epochs" replaces
# Seconds a stopped script run waits at most for the session's next run to reach the router, to
# learn whether Stop was the cause; a closed session (its tab closed: no next run comes) ends the
# wait at once. (A fixed second to hear the click, as before, lost the Stop on a loaded server:
# the old run gave up before the click's callback ran, and the next run trained from epoch 0.)
NEXT_RUN_WAIT = 15.0


def epoch_progress(epochs: int) -> Callable[[Any], tuple[float, str]]:
    """Progress of a run that hands over its partial result after every epoch (the Lab's and
    the recurrent runs): the share done and the bar's text."""
    def progress(partial) -> tuple[float, str]:
        done = int(partial.epochs.epoch.max()) if len(partial.epochs) else 0
        return min(1.0, done / epochs), (f"Training… epoch {done} of {epochs}, validation "
                                         f"accuracy {partial.final('val', 'accuracy'):.1%}")
    return progress


def obtain(cfg, *, cached: Callable = cached_run, train: Callable = get_run,
           progress: Callable[[Any], tuple[float, str]] | None = None,
           live_chart: Callable | None = None, starting: str = "Training…",
           failure: str = "This run could not start", stoppable: bool = False):
    """The result for `cfg`: from the run store when it ran before, else trained with a progress
    bar; None, with one clear message (never a traceback), when it cannot be trained.

    `cached(cfg)` looks the run up; `train(cfg, on_epoch=, on_wait=)` trains it, calling
    `on_epoch` with what `progress` turns into (share done, text): by default the partial result
    of an epoch-by-epoch run. `live_chart(partial)`, where the family has one, is drawn growing
    while the run has more than a second left. While the run queues for a training slot,
    `on_wait(message)` shows its place on the bar every second; that call is also where a
    closed tab's session stops (Streamlit raises in it), leaving the queue.

    `stoppable`: a Stop button shows while the run trains (see the module's docstring), and a
    run stopped before is served as it is (`cached` and `train` take `stopped=`), until
    "Train all N epochs" (`notices`) asks for it in full.
    """
    if stoppable:
        full = st.session_state.pop(FULL_RUN_KEY, None) == cfg.key()
        cached = functools.partial(cached, stopped=not full)
        train = functools.partial(train, stopped=not full)
    hit = cached(cfg)
    if hit is not None:
        return hit
    progress = progress or epoch_progress(cfg.epochs)
    bar = st.progress(0.0, text=starting)
    stop_slot = st.empty()
    stop_clicked = threading.Event()
    next_run = threading.Event()
    if stoppable:
        st.session_state[NEXT_RUN_KEY] = next_run
        stop_slot.button("Stop training", key=STOP_KEY, icon=":material/stop_circle:",
                         on_click=stop_clicked.set,
                         help="End the run after the next epoch, keeping everything recorded; "
                              "it is stored as stopped, and can be trained in full later.")
    live = st.empty()
    start = time.perf_counter()
    last_drawn = [start]

    def on_epoch(partial) -> None:
        if stop_clicked.is_set():
            raise StopTraining   # before any Streamlit call: this script run is being stopped
        done, text = progress(partial)
        try:
            bar.progress(done, text=text)
            # A run that will be over within a second gets no live chart (building one costs
            # ~0.1 s); a longer one shows its charts growing, redrawn at most twice a second.
            now = time.perf_counter()
            left = (now - start) / done * (1 - done) if done else 0.0
            if live_chart is not None and left > 1.0 and now - last_drawn[0] > 0.5:
                chart(live_chart(partial), live)
                last_drawn[0] = time.perf_counter()
        except StopException:
            # The page's next run has started: the Stop click's, or another widget's, or the
            # tab closed. Its callbacks have run once it reaches the router.
            if stoppable and _next_run_reached(next_run) and stop_clicked.is_set():
                raise StopTraining from None
            raise

    def on_wait(message: str) -> None:
        bar.progress(0.0, text=message)

    try:
        result = train(cfg, on_epoch=on_epoch, on_wait=on_wait)
    except Exception as err:  # a missing dataset, an unavailable device, a busy server: say so
        st.error(f"{failure}: {err}", icon=":material/error:")
        result = None
    # After a Stop these raise StopException: this run ends, its successor draws the stopped run.
    bar.empty()
    stop_slot.empty()
    live.empty()
    return result


def _next_run_reached(next_run: threading.Event) -> bool:
    """Wait for the session's next script run to reach the router (`enter_page` sets
    `next_run`): True once it has; False when the session has closed or NEXT_RUN_WAIT ran out.
    The training holds its slot meanwhile, so a closed tab must not keep it."""
    ctx = get_script_run_ctx()
    deadline = time.monotonic() + NEXT_RUN_WAIT
    while not next_run.wait(0.1):
        if time.monotonic() > deadline:
            return False
        if ctx is not None and runtime.exists() \
                and not runtime.get_instance().is_active_session(ctx.session_id):
            return False
    return True


def obtain_all(cfgs: list, **options) -> list:
    """The Lab runs one request trains (Compare's A and B, the Playground's pair), counted
    together against the budgets before any of them trains, then each as `obtain(cfg,
    **options)`; None for those that could not be had (after the first failure, the rest)."""
    try:
        refuse_runs(cfgs)
    except ConfigError as err:
        st.error(f"These runs could not start: {err}", icon=":material/error:")
        return [None] * len(cfgs)
    results: list = []
    for cfg in cfgs:
        results.append(obtain(cfg, **options) if all(r is not None for r in results) else None)
    return results


def notices(result, *, data_notice: bool = True, divergence: bool = True) -> None:
    """What the user must know about the run's data and outcome (a Lab or a recurrent run;
    only the Lab's can stop early): a run its user stopped says so, with a button that trains
    all its epochs (replacing it in the store). data_notice=False: the data's notice was
    already shown (a page of several runs on one dataset); divergence=False: the page says
    which of its runs diverged itself."""
    if data_notice and result.dataset.get("notice"):
        st.info(result.dataset["notice"], icon=":material/info:")
    if result.stopped:
        epochs = result.config.epochs
        with st.container(border=True, key="stopped_run"):
            st.warning(f"Stopped by you after epoch {result.epochs_done} of {epochs}: "
                       "everything below is what those epochs recorded; the test set was not "
                       "scored.", icon=":material/stop_circle:")
            st.button(f"Train all {epochs} epochs", key="train_full", type="primary",
                      icon=":material/play_arrow:", on_click=st.session_state.__setitem__,
                      args=(FULL_RUN_KEY, result.key),
                      help="Trains this configuration again from the start for every epoch; "
                           "the full run replaces the stopped one in the run store.")
    stop = getattr(result, "early_stop", None)
    if stop:
        st.info(f"Stopped early after epoch {stop['epoch']} of {result.config.epochs}: the "
                f"validation loss was lowest at epoch {stop['best_epoch']} "
                f"({stop['best_val_loss']:.3f}) and did not improve for {stop['patience']} "
                "epochs.", icon=":material/front_hand:")
    if divergence and result.diverged:
        st.error(f"The run diverged: {result.divergence['message']}. Everything up to that "
                 f"step is shown below.", icon=":material/error:")


def downloads(result: RunResult) -> None:
    """The run as JSON or CSV tables, and its config as a runnable PyTorch script."""
    cols = st.columns(3)
    # Callables: the files are built when clicked, not on every rerun of the page.
    cols[0].download_button("Run as JSON", lambda: result.to_json(indent=1),
                            file_name=f"run_{result.key}.json", mime="application/json",
                            icon=":material/data_object:", width="stretch",
                            help="Config, device, timing, per-epoch history and per-layer records.")
    cols[1].download_button("Tables as CSV", lambda: _csv_zip(result),
                            file_name=f"run_{result.key}.zip",
                            mime="application/zip", icon=":material/table:", width="stretch",
                            help="One CSV per table: epochs, steps, layers, histograms…")
    cols[2].download_button("PyTorch script", lambda: pytorch_script(result.config),
                            file_name=script_filename(result.config), mime="text/x-python",
                            icon=":material/code:", width="stretch",
                            help="A standalone script that builds and trains this network in "
                                 "plain PyTorch.")


def _csv_zip(result: RunResult) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name in TABLES:
            z.writestr(f"{name}.csv", getattr(result, name).to_csv(index=False))
        z.writestr("config.json", result.config.to_json())
    return buffer.getvalue()
