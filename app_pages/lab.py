"""Training Lab: change one setting, train, and see what happens inside the network."""

import math

import streamlit as st

from core.data.datasets import IMAGE_DATASETS
from core.lab import charts
from core.lab.config import CRITERION_WINDOW, FIELDS
from core.lab.doctor import diagnose
from core.lab.metrics import DEPTH_RATIO, points, readable
from core.lab.presets import PRESETS
from core.lab.tabs import TABS
from app_pages.kit.charts import open_tab, run_chart
from app_pages.kit.diagnosis import doctor_box, flat_share_metric
from app_pages.kit.controls import (EPOCH_KEY, LAB, apply_settings, classroom_editor,
                                    config_form, epoch_slider, warn)
from app_pages.kit.lessons import lesson_box, lesson_notice, open_evidence_tab, preset_buttons
from core.tables import status_word
from app_pages.kit.runs import downloads, notices, obtain


LAB_FIELDS = [name for name in FIELDS if name != "noise"]
TAB_KEY = "tab"   # the open tab, in the link as ?tab=

st.title("Training Lab")
st.write("Train a real network on real images and watch every layer: how large its gradients "
         "are, how many of its units saturate, sit inactive or die, how fast its weights move. "
         "Change one setting in the sidebar, press **Train**, and compare. A diagnosis of the "
         "run and one-click fixes are below the headline numbers.")

cfg, warnings = config_form(LAB, LAB_FIELDS, options={"dataset": sorted(IMAGE_DATASETS)})
classroom_editor(LAB, LAB_FIELDS)
warn(warnings)

preset_buttons(PRESETS, LAB)

result = obtain(cfg, live_chart=charts.live_training, stoppable=True)
if result is None:
    st.stop()

lesson = lesson_box(PRESETS.values(), cfg, result)
open_evidence_tab(lesson, TAB_KEY)
notices(result)

# The headline numbers in one row that wraps, each as wide as it needs: in equal columns a
# laptop's page cut them short, and a seventh (a loss criterion) cut most of them (seen in
# Chromium).
head = st.container(horizontal=True, horizontal_alignment="distribute", gap="medium")
head.metric("Val accuracy", f"{result.final('val', 'accuracy'):.1%}", width="content",
            help="Share of the validation images classified correctly after the last epoch.")
ratio = result.depth_ratio(0)
head.metric(DEPTH_RATIO.label, readable(ratio), width="content",
            help=f"{DEPTH_RATIO.symbol}: {DEPTH_RATIO.help}")
flat_share_metric(head, result, "A linear network has no flat region.", width="content")
# "stopped" and who stopped it under it: "stopped early" does not fit the column (seen in
# Chromium), and early stopping and the Stop button must read apart. "reached target" is cut to
# "reach…" there too (seen in Chromium): its second word runs on under it, with the step.
status = "stopped" if result.early_stop else status_word(result.status, result.steps_to_target)
status, _, target_word = status.partition(" ")
stopped_by = (f"early, at epoch {result.early_stop['epoch']}" if result.early_stop
              else f"by you, at epoch {result.epochs_done}" if result.stopped
              else f"{target_word}, at step {result.steps_to_target:,}" if target_word
              else None)
head.metric("Status", status, delta=stopped_by, delta_color="off", width="content",
            help="'done': every epoch ran; 'diverged': values became NaN or infinite and "
                 "the run stopped there; 'reached' target: the training loss met the loss "
                 "criterion at that step and the run ended with its epoch; 'stopped' "
                 "early: early stopping ended it; 'stopped' by you: the Stop button ended "
                 "it.")
head.metric("Time", f"{readable(result.timing['seconds'], 3)} s",
            delta="from the store" if result.from_store else "trained now",
            delta_color="off", width="content",
            help=f"Wall time of the training run on {result.device} "
                 f"({result.timing['samples_per_sec']:,.0f} samples/s).")
gap = result.final("train", "accuracy") - result.final("val", "accuracy")
head.metric("Train − val gap", f"{'+' if gap >= 0 else ''}{points(gap)} pts"
            if math.isfinite(gap) else "–", width="content",
            help="Training accuracy (measured during the last epoch, dropout on) minus "
                 "validation accuracy. Large and positive: the network memorises its "
                 "training set (overfitting).")
target = cfg.target_loss
if target is not None:
    reached = result.steps_to_target
    head.metric(f"Steps to loss {target:g}",
                f"{reached:,}" if reached is not None else "not reached",
                delta=None if reached is not None else f"in {len(result.steps):,} steps",
                delta_color="off", width="content",
                help=f"The first training step at which the training loss (each step's "
                     f"batch loss) averaged over the last {CRITERION_WINDOW} steps is at or "
                     f"below {target:g}: one lucky batch does not count. The run stops at "
                     "the end of that epoch.")


def fix_buttons(finding) -> None:
    """One button a fix: it sets the fix's settings and trains again."""
    for col, fix in zip(st.columns(len(finding.fixes)), finding.fixes):
        col.button(fix.label, key=f"fix_{finding.id}_{fix.label}", on_click=apply_settings,
                   args=(LAB, fix.changes), icon=":material/build:",
                   help=f"Sets {', '.join(f'{k}={v}' for k, v in fix.changes.items())} "
                        "and trains again.")


doctor_box(result, diagnose(result), fix_buttons)


PLAY_KEY = "play"
PLAY_EVERY = 1.0   # seconds an epoch is shown while playing: one fragment rerun each
# Outside the fragment: switching it reruns the page, which sets the fragment's timer.
st.toggle("Play", key=PLAY_KEY, disabled=int(result.epochs.epoch.max()) == 0,
          help=f"Steps every chart through the epochs, one every {PLAY_EVERY:g} s, until "
               "switched off.")


@st.fragment(run_every=PLAY_EVERY if st.session_state.get(PLAY_KEY) else None)
def panels() -> None:
    last = int(result.epochs.epoch.max())
    # Play: Vega-Lite 6's timer animation (a point selection `on: "timer"` with the `time`
    # channel) drew no marks and its clock stayed at 0 in Streamlit 1.67's renderer (tried in
    # Chromium), so playing advances the scrubber from here, one fragment rerun an epoch.
    if st.session_state.get(PLAY_KEY) and last > 0:
        st.session_state[EPOCH_KEY] = (st.session_state.get(EPOCH_KEY, last) + 1) % (last + 1)
    epoch = epoch_slider(result.key, last, label="Every chart at epoch",
                         help="Where every per-epoch chart starts (0 is the network at "
                              "initialisation). Each chart's own slider, under it, scrubs "
                              "at once in the browser.")
    # The open tab only (open_tab); a switch reruns this fragment, which reuses the specs cached
    # per run (run_chart).
    for name, tab in open_tab(list(TABS), key=TAB_KEY):
        with tab:
            lesson_notice(lesson, name)
            layer = None   # one picker a tab, above the first chart that follows a layer
            for chart in TABS[name]:
                if not chart.applies(result):
                    continue
                if chart.needs_layer and layer is None:
                    layer = st.selectbox("Layer over time",
                                         result.layer_names[:-1] or result.layer_names,
                                         key="layer", bind="query-params",
                                         help="The hidden layer whose activation histogram "
                                              "and traced units the charts below follow.")
                run_chart(result, chart.build, *chart.args(epoch, layer))

panels()
st.divider()
downloads(result)
# Every field, not only those changed from RunConfig's defaults: Compare has defaults of its own.
st.page_link("app_pages/compare.py", label="Compare this run with a variant",
             query_params=cfg.to_params(only_changed=False), icon=":material/compare_arrows:",
             help="Opens Compare with this configuration as A and, as B, the same with batch norm "
                  "toggled; change B's settings there.")
