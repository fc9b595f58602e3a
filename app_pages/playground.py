"""2-D Playground: decision boundaries on toy data, epoch by epoch."""

import math

import streamlit as st

from core.data.datasets import TOY_DATASETS
from core.lab import charts, compare_charts
from core.lab.config import RunConfig
from app_pages.kit.charts import chart
from app_pages.kit.controls import LAB, classroom_editor, config_form, epoch_slider, warn
from app_pages.kit.runs import notices, obtain_all


FIELDS_HERE = ["dataset", "noise", "max_train", "depth", "width", "activation", "init",
               "optimizer", "lr", "batch_size", "epochs", "seed"]
# Five full batches an epoch: the boundary forms in about a second.
DEFAULTS = RunConfig(dataset="moons", depth=3, width=16, lr=0.05, batch_size=128, epochs=30)

st.title("2-D Playground")
st.write("A small network learns to separate two classes of points in the plane. The colour is "
         "its predicted probability of class 1 (blue); circles are training points, triangles "
         "test points. Move the epoch slider to watch the boundary form. With few training "
         "points (Data → Training examples) and much noise, watch train and test accuracy part.")

cfg, warnings = config_form(LAB, FIELDS_HERE, defaults=DEFAULTS,
                            options={"dataset": sorted(TOY_DATASETS),
                                     "max_train": [None, 20, 50, 100, 200, 400]})
classroom_editor(LAB, FIELDS_HERE)
warn(warnings)
compare = st.toggle("ReLU vs tanh side by side", key="compare", bind="query-params",
                    help="Train the same network twice, once with ReLU and once with tanh units.")

configs = ([cfg.replace(activation="relu"), cfg.replace(activation="tanh")] if compare
           else [cfg])
results = obtain_all(configs, live_chart=charts.loss_accuracy)
if any(r is None for r in results):
    st.stop()

last = min(int(r.boundary.epoch.max()) for r in results)
epoch = epoch_slider(tuple(r.key for r in results), last,
                     help="0 is the network at initialisation.")
epoch = min(epoch, last)
# Two squares of 320 px with their legends fit side by side on a laptop's page (1280 px).
size = 320 if compare else 440
cols = st.columns(len(results))
for col, result in zip(cols, results):
    with col:
        notices(result)
        # The scrubbed epoch's accuracies (train has none at initialisation; test only at the end).
        shown = {"validation": result.at_epoch("val", "accuracy", epoch),
                 "train": result.at_epoch("train", "accuracy", epoch),
                 "test": result.at_epoch("test", "accuracy", epoch)}
        st.markdown(f"**{result.config.activation}** after epoch {epoch} · " + " · ".join(
            f"{split} accuracy {value:.0%}" for split, value in shown.items()
            if not math.isnan(value)))
        chart(charts.decision_boundary(result, epoch, size), width="content")
if compare:  # one chart for both runs: two loss charts would not fit a column each
    chart(compare_charts.loss_accuracy({r.config.activation: r for r in results}, epoch))
else:
    chart(charts.loss_accuracy(results[0], epoch))
