"""Compare: two runs side by side or overlaid — change one setting and see what it does."""

from dataclasses import dataclass
from typing import Callable

import streamlit as st

from core.lab import charts

from core.data.datasets import IMAGE_DATASETS
from core.lab import compare_charts
from core.lab.compare import differences, outcome_rows, outcomes
from core.lab.config import FIELDS, RunConfig
from core.lab.metrics import DEPTH_RATIO, MOST_FLAT
from core.lab.runs import load_run, run_label, stored_runs
from core.lab.tabs import TABS
from app_pages.kit.charts import open_tab, runs_chart
from app_pages.kit.controls import (LAB, apply_settings, config_controls, epoch_slider,
                                    labelled_choice, warn)
from app_pages.kit.runs import notices, obtain_all


FIELDS_HERE = [name for name in FIELDS if name != "noise"]
OPTIONS = {"dataset": sorted(IMAGE_DATASETS)}
# The vanishing-gradient lesson, against the same network with batch norm: one change that
# matters, so a first visit shows a real difference.
DEFAULT_A = RunConfig(depth=10, activation="sigmoid", init="xavier_normal", optimizer="sgd",
                      lr=0.05)


def one_change(a: RunConfig) -> RunConfig:
    """B's starting point: A with batch norm toggled (its controls keep what the user sets)."""
    return a.replace(batch_norm=not a.batch_norm)
# Streamlit puts a button group's label (not its value) in the link, so the labels are short.
CONFIGURE, STORED = "Configure A and B", "Stored runs"

st.title("Compare")
st.write("Two runs, the same charts: set up **A** and **B** in the sidebar (B starts as A with "
         "batch norm toggled; B's settings that differ from A are marked ●), or pick two runs "
         "from the run store. The table shows which "
         "settings differ and what came out of each; the charts below overlay them or put them "
         "side by side, with one epoch slider for both.")

mode = st.segmented_control("Runs", [CONFIGURE, STORED], default=CONFIGURE,
                            key="mode", bind="query-params", required=True,
                            help="Train two configurations, or compare runs already in the store "
                                 "(any page's runs, from any session).")


def _configured() -> dict:
    with st.sidebar.form("compare", border=False):
        st.form_submit_button("Train A and B", type="primary", width="stretch",
                              help="Train both configurations (instant for runs that ran "
                                   "before, on any page).")
        tab_a, tab_b = st.tabs(["A", "B"])
        with tab_a:
            cfg_a, warn_a = config_controls(LAB, FIELDS_HERE, defaults=DEFAULT_A,
                                            options=OPTIONS)
        with tab_b:
            cfg_b, warn_b = config_controls(LAB, FIELDS_HERE, defaults=one_change(cfg_a),
                                            options=OPTIONS,
                                            prefix="b_", compare_to=cfg_a)
    st.sidebar.button("Copy A into B", on_click=apply_settings,
                      args=(LAB, {n: getattr(cfg_a, n) for n in FIELDS_HERE}, "b_"),
                      icon=":material/content_copy:", width="stretch",
                      help="Set every control of B to A's value, then change the one setting "
                           "you want to study.")
    warn(warn_a, "A")
    warn(warn_b, "B")
    run_a, run_b = obtain_all([cfg_a, cfg_b], live_chart=charts.loss_accuracy)
    return {"A": run_a, "B": run_b}


def _stored() -> dict:
    runs = stored_runs()
    if len(runs) < 2:
        st.info("The run store holds fewer than two runs yet: train some on the Training Lab "
                "or with **Configure A and B**, then come back.", icon=":material/info:")
        st.stop()
    labels = {r["key"]: run_label(r) for r in runs}
    keys = list(labels)
    picked, problems = {}, []
    # One under the other, full width: a run's description is long, and its end (accuracy,
    # when it trained) is what tells two similar runs apart.
    for name, default in (("A", keys[1]), ("B", keys[0])):
        picked[name], asked = labelled_choice(
            f"Run {name}", keys, labels, key=f"run_{name.lower()}", default=default,
            why_not="no run in the store has this key (any more)",
            help="Stored runs, most recently used first: data, network, optimizer, epochs, "
                 "seed, any other setting changed, then the validation accuracy and when it "
                 "trained.")
        problems += asked
    warn(problems)
    results = {name: load_run(key) for name, key in picked.items()}
    for name, result in results.items():
        if result is None:
            st.warning(f"Run {name} is no longer in the store: pick another.",
                       icon=":material/warning:")
    return results


results = _configured() if mode == CONFIGURE else _stored()
if any(r is None for r in results.values()):
    st.stop()

diff = differences(results["A"].config, results["B"].config)
table = outcomes(results)
left, right = st.columns([2, 3])
with left:
    st.markdown("**Settings that differ**")
    if diff.empty:
        st.caption("None: A and B are the same configuration (the same run).")
    else:
        st.dataframe(diff.assign(setting=diff["setting"].map(LAB.label)), hide_index=True,
                     width="stretch", column_config={"setting": st.column_config.TextColumn("")})
with right:
    st.markdown("**Outcomes**", help="\n\n".join(
        f"**{m.label}**: {m.help}" for m in (DEPTH_RATIO, *MOST_FLAT.values())))
    st.dataframe(outcome_rows(table), hide_index=True, width="stretch",
                 column_config={"outcome": st.column_config.TextColumn("")})
for name, result in results.items():
    if result.dataset.get("notice") or result.diverged:
        st.caption(f"Run {name}:")
        notices(result)


@st.fragment
def panels() -> None:
    last = min(int(r.epochs.epoch.max()) for r in results.values())
    epoch = epoch_slider(tuple(r.key for r in results.values()), last,
                         help="Moves every per-epoch chart of both runs: 0 is at initialisation.")
    layout = st.segmented_control("Layout", ["Overlay", "Side by side"], default="Overlay",
                                  key="layout", bind="query-params", required=True,
                                  help="Overlay draws A and B on the same axes where the chart "
                                       "allows it; side by side draws each run's own charts, "
                                       "next to each other on the same scales.")
    for name, tab in open_tab(list(TABS), key="tab"):
        with tab:
            if layout == "Overlay" and name in OVERLAYS:
                for overlay in OVERLAYS[name]:
                    overlay.draw(epoch)
            else:
                _side_by_side(name, epoch)


@dataclass(frozen=True)
class Overlay:
    """One chart that overlays every run: `build(results, *args)`, then the epoch where it
    takes one. Named builders and arguments (not lambdas) key its cached spec (runs_chart): a
    rerun (the slider, a tab) draws it again without building it again."""
    build: Callable
    args: tuple = ()
    per_epoch: bool = False

    def draw(self, epoch: int) -> None:
        runs_chart(results, self.build, *self.args, *((epoch,) if self.per_epoch else ()))


# Tab name (core.lab.tabs.TABS) -> the charts that overlay every run; the other tabs are drawn
# side by side.
OVERLAYS = {
    "Training": [Overlay(compare_charts.loss_accuracy, per_epoch=True)],
    "Gradients": [Overlay(compare_charts.over_training),
                  Overlay(compare_charts.layer_profile, ("weight_grad_norm",), True),
                  Overlay(compare_charts.layer_profile, ("out_grad_norm",), True)],
    "Activations": [Overlay(compare_charts.flat_profile, per_epoch=True),
                    Overlay(compare_charts.layer_profile, ("dead",), True),
                    Overlay(compare_charts.layer_profile, ("act_std",), True)],
    "Weights & ratios": [Overlay(compare_charts.update_ratio_profile, per_epoch=True),
                         Overlay(compare_charts.layer_profile, ("grad_data_ratio",), True),
                         Overlay(compare_charts.layer_profile, ("drift",), True)],
    "Clipping": [Overlay(compare_charts.total_grad_norm)],
}


def _side_by_side(tab: str, epoch: int) -> None:
    for tab_chart in TABS[tab]:
        if tab_chart.side_by_side:
            # At its own size: sized to fit, it overflowed once Streamlit stretched it.
            runs_chart(results, compare_charts.side_by_side, tab_chart.build,
                       *tab_chart.args(epoch), width="content")


panels()
