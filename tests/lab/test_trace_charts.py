"""The Lab's charts of the validation trace and the traced units (core.lab.trace_charts): each
draws exactly its run's table, and neither is shown for a run without the record."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from core.lab.config import RunConfig
from core.lab.tabs import TABS
from core.lab.trace_charts import ACT_TITLE, act_percentile, unit_percentiles, val_trace
from core.lab.trainer import train
from tests.helpers import walk

TRACED = RunConfig(depth=2, width=16, epochs=3, max_train=500, batch_size=32, lr=0.01, eval_every=5,
                   target_loss=1.0, percentile_traces=True)


@pytest.fixture(scope="module")
def traced():
    return train(TRACED)


def _rows(spec: dict) -> list[dict]:
    """Every data row a chart's spec holds, its inline values and its named datasets alike."""
    out = [row for rows in spec.get("datasets", {}).values() for row in rows]
    return out + [row for v in walk(spec) if isinstance(v, dict) and isinstance(
        v.get("values"), list) for row in v["values"] if isinstance(row, dict)]


def test_the_validation_trace_chart_draws_the_runs_trace(traced):
    trace = traced.val_trace
    assert len(trace) >= 5 and (trace.step % TRACED.eval_every == 0).all()
    rows = pd.DataFrame(_rows(val_trace(traced).to_dict()))
    loss = rows.dropna(subset=["val_loss"]).set_index("step")["val_loss"]
    acc = rows.dropna(subset=["val_accuracy"]).set_index("step")["val_accuracy"]
    assert list(loss.index) == list(trace.step) == list(acc.index)
    assert loss.to_numpy() == pytest.approx(trace.val_loss.to_numpy())
    assert acc.to_numpy() == pytest.approx(trace.val_accuracy.to_numpy() * 100)


def test_the_unit_chart_draws_each_traced_unit_of_the_picked_layer(traced):
    layer = traced.layer_names[1]
    spec = unit_percentiles(traced, layer).to_dict()
    drawn = pd.DataFrame([r for r in _rows(spec) if "percentile" in r])
    # The independent reading: the run's table filtered by hand.
    table = traced.unit_preacts[traced.unit_preacts.layer == layer]
    assert sorted(drawn.unit.unique()) == sorted(table.unit.unique()) and drawn.unit.nunique() == 3
    expected = table.assign(percentile=table.percentile.map({15.0: "15th", 50.0: "50th",
                                                              85.0: "85th"}))
    key = ["unit", "step", "percentile"]
    merged = drawn.merge(expected, on=key, suffixes=("_drawn", "_run"))
    assert len(merged) == len(drawn) == len(table)
    assert merged.value_drawn.to_numpy() == pytest.approx(merged.value_run.to_numpy())
    # One y scale for every unit's panel, spanning the layer's values.
    domains = [v["scale"]["domain"] for v in walk(spec) if isinstance(v, dict)
               and v.get("field") == "value" and "domain" in v.get("scale", {})]
    assert len(domains) == 3 and all(d == domains[0] for d in domains)
    assert domains[0] == pytest.approx([table.value.min(), table.value.max()])


def test_the_activation_percentile_chart_draws_each_hidden_layer_s_98th(traced):
    spec = act_percentile(traced).to_dict()
    assert spec["title"] == ACT_TITLE
    drawn = pd.DataFrame([r for r in _rows(spec) if "percentile" in r])
    # The independent reading: the run's table filtered by hand, every hidden layer once a step.
    table = traced.act_percentiles
    assert set(table.percentile) == {98.0} and set(drawn.layer) == set(traced.layer_names[:-1])
    merged = drawn.merge(table, on=["layer", "step"], suffixes=("_drawn", "_run"))
    assert len(merged) == len(drawn) == len(table) == 2 * table.step.nunique()
    assert merged.value_drawn.to_numpy() == pytest.approx(merged.value_run.to_numpy())
    (encoding,) = [v["encoding"] for v in walk(spec) if isinstance(v, dict)
                   and v.get("encoding", {}).get("y", {}).get("field") == "value"]
    assert (encoding["x"]["title"], encoding["y"]["title"]) == ("Training step",
                                                                "Activation, 98th percentile")
    # The legend names the hidden layers it draws, not the output layer (no line), while the
    # colours keep the whole network's domain, as every chart of the run.
    assert encoding["color"]["legend"]["values"] == traced.layer_names[:-1]
    assert encoding["color"]["scale"]["domain"] == traced.layer_names


def test_no_trace_chart_is_shown_for_a_run_without_its_record(traced):
    traces = {"val_trace", "unit_percentiles", "act_percentile"}
    shown = {c.build.__name__ for tab in TABS.values() for c in tab if c.applies(traced)}
    assert traces <= shown
    bare = dataclasses.replace(traced, val_trace=traced.val_trace.iloc[:0],
                               unit_preacts=traced.unit_preacts.iloc[:0],
                               act_percentiles=traced.act_percentiles.iloc[:0])
    shown = {c.build.__name__ for tab in TABS.values() for c in tab if c.applies(bare)}
    assert not traces & shown
    assert "not measured (percentile_traces is off)" in str(act_percentile(bare).to_dict())
    plain = train(TRACED.replace(eval_every=None, epochs=1))   # eval_every off: no trace
    assert plain.val_trace.empty
    assert "val_trace" not in {c.build.__name__ for c in TABS["Training"] if c.applies(plain)}
