"""Sweep: a grid over two settings, every cell a real run, read as heatmaps."""

from urllib.parse import urlencode

import streamlit as st

from core.data.datasets import IMAGE_DATASETS
from core.lab import sweep_charts
from core.lab.config import FIELDS, RunConfig
from core.lab.metrics import DEPTH_RATIO
from core.lab.sweep import (AXES, MAX_CELLS, SweepFailed, SweepSpec, axis_problems, run_sweep,
                            suggested_values, values_text)
from core.lab.sweep_engines import page_engine
from core.cache import Busy
from core.settings import ConfigError
from app_pages.kit.charts import spec_dict
from app_pages.kit.controls import LAB, config_controls, warn
from app_pages.kit.links import link_texts


FIELDS_HERE = [name for name in FIELDS if name != "noise"]
# Depth × activation with plain SGD: where sigmoid and tanh stop learning as the net deepens.
DEFAULT = SweepSpec(RunConfig(epochs=5, optimizer="sgd", lr=0.05, init="xavier_normal"),
                    x="depth", x_values=(2, 4, 8, 16), y="activation",
                    y_values=("relu", "tanh", "sigmoid"))

st.title("Sweep")
st.write("Pick two settings and their values: every combination trains as a real run (cells "
         "that differ only in values train together as one stacked network, and every cell is "
         "cached), and the heatmaps show what each ended with. Click a cell to open that run in "
         "the Training Lab.")


# What the link asked for, as opened: the bound widgets drop what they cannot take.
asked_axes = {axis: texts[-1] for axis, texts in link_texts(("x", "y")).items()}
with st.sidebar.form("sweep", border=False):
    st.form_submit_button("Run sweep", type="primary", width="stretch",
                          help=f"Train every cell (at most {MAX_CELLS}); cells that ran before "
                               "come from the run store.")
    with st.expander("Axes", expanded=True, icon=":material/grid_on:"):
        # Raw setting names, no format_func: Streamlit links a select by its displayed label.
        x = st.selectbox("x axis (columns)", AXES, index=AXES.index(DEFAULT.x), key="x",
                         bind="query-params",
                         help="The setting that varies across the columns.")
        xv = st.text_input("x values", values_text(DEFAULT.x, DEFAULT.x_values), key="xv",
                           bind="query-params",
                           help="Comma-separated values of the x setting, e.g. 2, 4, 8, 16. "
                                f"Suggested for {x}: {values_text(x, suggested_values(x))}.")
        y = st.selectbox("y axis (rows)", AXES, index=AXES.index(DEFAULT.y), key="y",
                         bind="query-params",
                         help="The setting that varies down the rows; not the same as x.")
        yv = st.text_input("y values", values_text(DEFAULT.y, DEFAULT.y_values), key="yv",
                           bind="query-params",
                           help="Comma-separated values of the y setting. Suggested for "
                                f"{y}: {values_text(y, suggested_values(y))}.")
    st.caption("Every other setting, for all cells:")
    base, warnings = config_controls(LAB, FIELDS_HERE, defaults=DEFAULT.base,
                                     options={"dataset": sorted(IMAGE_DATASETS)})

spec, axis_warnings = SweepSpec.from_params_lenient(
    {"x": x, "xv": xv.replace(" ", ""), "y": y, "yv": yv.replace(" ", ""), **base.to_params()},
    defaults=DEFAULT)
warn(warnings + axis_problems(asked_axes, {"x": x, "y": y}) + axis_warnings)

progress = st.progress(0.0, text="Looking up the cells in the run store…")
try:
    result = run_sweep(spec, engine=page_engine(), on_progress=lambda done, total, message:
                       progress.progress(done / total, text=message))
# A combination no cell can take, a busy server, an unreachable Ray cluster, failed cells.
except (ConfigError, ValueError, Busy, SweepFailed) as err:
    progress.empty()
    st.error(f"This sweep cannot run: {err}", icon=":material/error:")
    st.stop()
progress.empty()

t = result.timing
st.caption(f"{t['cells']} cells: {t['cells_from_store']} from the run store, "
           f"{t['cells_trained']} trained now ({t['cells_batched']} of them in stacked groups) "
           f"in {t['seconds']:.1f} s.")



x_order, y_order = spec.labels("x"), spec.labels("y")
cols = st.columns(len(sweep_charts.HEATMAPS))
clicked = []
for col, metric in zip(cols, sweep_charts.HEATMAPS):
    with col:
        event = st.vega_lite_chart(spec_dict(sweep_charts.heatmap(
            result.table, metric, x_title=LAB.label(spec.x), y_title=LAB.label(spec.y),
            x_order=x_order, y_order=y_order)), width="stretch",
            key=f"heat_{metric}", on_select="rerun")
        clicked += [p["key"] for p in event.selection.get(sweep_charts.SELECTION) or []
                    if isinstance(p, dict) and p.get("key") in result.configs]

# A click shows the cell and a link into the Lab. (st.switch_page cannot carry the cell's
# settings: this page's own controls hold the same link parameters.)
if clicked:
    row = result.table.set_index("key").loc[clicked[-1]]
    with st.container(border=True):
        st.markdown(f"**{LAB.label(spec.x)} = {row['x']}, {LAB.label(spec.y)} = {row['y']}** "
                    f"· validation accuracy {row['val_accuracy']:.1%} · "
                    f"{DEPTH_RATIO.label.lower()} {row['depth_ratio']:.2g}"
                    + (" · diverged" if row["diverged"] else ""))
        st.page_link("app_pages/lab.py", label="Open this run in the Training Lab",
                     query_params=result.config(clicked[-1]).to_params(),
                     icon=":material/open_in_new:")
else:
    st.caption("Click a cell of a heatmap to see it and open that run in the Training Lab.")

with st.expander("All cells as a table", icon=":material/table:"):
    table = result.table.assign(
        lab=["lab?" + urlencode(result.config(k).to_params()) for k in result.table["key"]])
    st.dataframe(
        table[["x", "y", "val_accuracy", "depth_ratio", "flat_metric", "flat_max", "diverged",
               "batched",
               "from_store", "lab"]],
        hide_index=True, width="stretch",
        column_config={
            "x": st.column_config.TextColumn(LAB.label(spec.x)),
            "y": st.column_config.TextColumn(LAB.label(spec.y)),
            "val_accuracy": st.column_config.NumberColumn("Val accuracy", format="percent"),
            "depth_ratio": st.column_config.NumberColumn(
                DEPTH_RATIO.label, format="%.2g", help=f"{DEPTH_RATIO.symbol}: {DEPTH_RATIO.help}"),
            "flat_metric": st.column_config.TextColumn(
                "Flat region", help="saturation: sigmoid and tanh; inactive: the ReLU family."),
            "flat_max": st.column_config.NumberColumn(
                sweep_charts.flat_title(result.table), format="percent",
                help="The largest share of any hidden layer at the last recorded step."),
            "diverged": st.column_config.CheckboxColumn("Diverged?"),
            "batched": st.column_config.CheckboxColumn(
                "Stacked", help="Trained together with other cells as one stacked network."),
            "from_store": st.column_config.CheckboxColumn("From the store"),
            "lab": st.column_config.LinkColumn("Training Lab", display_text="open"),
        })
    st.download_button("Sweep as CSV", result.table.to_csv(index=False).encode(),
                       file_name="sweep.csv", mime="text/csv", icon=":material/download:",
                       help="One row per cell, with the run key of each.")
