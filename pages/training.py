"""Getting a run for a page: from the run store when it ran before, else trained with progress.

Training shows a progress bar and a loss curve that grows epoch by epoch. The run store is not
wrapped in `st.cache_data`: a cached function would skip its progress output on a hit, and the
store already makes repeats instant for every session of the server.
"""

from __future__ import annotations

import io
import time
import zipfile
from typing import Callable

import altair as alt
import streamlit as st

from core import chart_parts, charts
from core.config import RunConfig
from core.cpus import configure_for_server
from core.export import pytorch_script, script_filename
from core.result import TABLES, RunResult
from core.runs import cached_run, get_run
from core.store import RunStore


@st.cache_resource
def store() -> RunStore:
    """One run store per server process, shared by every session (set up once per process)."""
    configure_for_server()
    return RunStore()


def run(cfg: RunConfig, *, live_chart=charts.loss_accuracy) -> RunResult | None:
    """The result for `cfg`; None (with a message shown) if it cannot be trained."""
    hit = cached_run(cfg, store())
    if hit is not None:
        return hit
    progress = st.progress(0.0, text="Training…")
    live = st.empty()
    start = time.perf_counter()
    last_drawn = [start]

    def on_epoch(partial: RunResult) -> None:
        done = int(partial.epochs.epoch.max())
        progress.progress(done / cfg.epochs,
                          text=f"Training… epoch {done} of {cfg.epochs}, "
                               f"validation accuracy {partial.final('val', 'accuracy'):.1%}")
        # A run that will be over within a second gets no live chart (building one costs
        # ~0.1 s); a longer one shows its curve growing, redrawn at most twice a second.
        now = time.perf_counter()
        left = (now - start) / done * (cfg.epochs - done) if done else 0.0
        if done and left > 1.0 and now - last_drawn[0] > 0.5:
            chart(live_chart(partial), live)
            last_drawn[0] = time.perf_counter()

    try:
        result = get_run(cfg, store=store(), on_epoch=on_epoch)
    except Exception as err:  # a missing dataset, an unavailable device: say so, no traceback
        progress.empty()
        st.error(f"This run could not start: {err}")
        return None
    progress.empty()
    live.empty()
    return result


def lesson(preset, evidence, claims=None, container=st) -> None:
    """A preset's box: its title, what to look at, and ✓/✗ for each claim on `evidence` (the
    run, or whatever the page's claims are functions of)."""
    with container.container(border=True):
        st.markdown(f"**{preset.title}** — {preset.look_at}")
        for claim in preset.claims if claims is None else claims:
            ok = claim.holds(evidence)
            st.markdown(f"{':material/check_circle:' if ok else ':material/cancel:'} "
                        f"{claim.text(evidence)}" + ("" if ok else " *(not true for this run)*"))


def notices(result: RunResult) -> None:
    """What the user must know about the run's data and outcome."""
    if result.dataset.get("notice"):
        st.info(result.dataset["notice"], icon=":material/info:")
    if result.early_stop:
        stop = result.early_stop
        st.info(f"Stopped early after epoch {stop['epoch']} of {result.config.epochs}: the "
                f"validation loss was lowest at epoch {stop['best_epoch']} "
                f"({stop['best_val_loss']:.3f}) and did not improve for {stop['patience']} "
                "epochs.", icon=":material/front_hand:")
    if result.diverged:
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


def chart(spec: alt.TopLevelMixin, container=st) -> None:
    """Draw an Altair chart stretched to the page's width."""
    container.vega_lite_chart(spec=spec_dict(spec), width="stretch")


spec_dict = chart_parts.vega_spec  # what every chart on a page goes through


def run_chart(result: RunResult, builder: Callable, *args, container=st, **kwargs) -> None:
    """Draw `builder(result, *args, **kwargs)`, stretched to the page's width.

    A page reruns on every click (a tab, the epoch scrubber, a selectbox), and Altair takes
    10–170 ms to build and serialise one chart of a run that has not changed (measured on the
    Lab's charts). The specs are cached by the run's identity and the builder's arguments: the
    config key plus the tables' lengths and status, which tell a live partial result from the
    finished one."""
    run_id = (result.key, result.status, len(result.epochs), len(result.steps),
              len(result.layers), len(result.histograms))
    spec = _run_spec(run_id, builder.__module__, builder.__qualname__, args,
                     tuple(sorted(kwargs.items())), result, builder)
    container.vega_lite_chart(spec=spec, width="stretch")


@st.cache_data(max_entries=256, show_spinner=False)
def _run_spec(run_id: tuple, module: str, name: str, args: tuple, kwargs: tuple,
              _result: RunResult, _builder: Callable) -> dict:
    # _result and _builder are not hashed (a leading underscore): run_id, module and name say
    # which they are.
    return spec_dict(_builder(_result, *args, **dict(kwargs)))
