"""The network diagram (core.lab.network_chart), checked through its spec and the data it
carries, on the small real runs of tests/lab/conftest.py."""

import dataclasses
import json
from urllib.parse import unquote

import pandas as pd
import pytest

from core import chart_parts
from tests.helpers import rows_with, scrubbed_from, texts, walk


def test_network_diagram_draws_the_layers_to_scale_coloured_at_every_epoch(runs):
    from core.lab.network_chart import SHOWN_KEY, network_diagram
    r = runs["plain"]   # digits (8 × 8 inputs, 10 classes), 2 tanh layers of 16
    s = network_diagram(r, 1).to_dict()
    scrubbed_from(s, 1, 3)
    labels = {x["layer"]: x["label"] for x in rows_with(s, "label", "x")}
    assert labels == {"input": "64 inputs", "hidden1": "16 units", "hidden2": "16 units",
                      "output": "10 units"}
    dots = rows_with(s, "units", "y")
    # One dot = ceil(64 / 12) = 6 units: 11 dots for the input, 3 per hidden layer, 2 output.
    per_layer = {layer: len({d["y"] for d in dots if d["layer"] == layer})
                 for layer in labels}
    assert per_layer == {"input": 11, "hidden1": 3, "hidden2": 3, "output": 2}
    # Each drawn unit looks its colour up at the scrubbed epoch: key "layer|epoch".
    lookups = [t for t in walk(s) if isinstance(t, dict) and "lookup" in t]
    assert lookups and all(t["lookup"] == "key" for t in lookups)
    keyed = [t for t in walk(s) if isinstance(t, dict) and t.get("calculate") == SHOWN_KEY]
    assert len(keyed) == len(lookups) == 2   # the gradient panel and the saturation panel
    values = rows_with(s, "key", "value")
    assert {v["metric"] for v in values} == {"out_grad_norm", "saturation"}
    assert all(v["key"] == f"{v['layer']}|{v['epoch']}" for v in values)
    # Coloured by ‖∂L/∂z‖ at each epoch's state, straight from the records, for every dot of
    # every layer that has the measure.
    grads = {v["key"]: v for v in values if v["metric"] == "out_grad_norm"}
    for epoch in range(4):
        step = chart_parts.state_step(r.layers, epoch)
        want = r.layers[(r.layers.step == step) & (r.layers.metric == "out_grad_norm")]
        for layer, value in zip(want.layer, want.value):
            got = grads[f"{layer}|{epoch}"]
            assert got["step"] == step and got["value"] == pytest.approx(value, rel=1e-6)
    # The lines between layers: one image, a line from every dot to every dot of the next layer.
    (image,) = [x for x in rows_with(s, "url")]
    svg = unquote(image["url"].split(",", 1)[1])
    assert svg.count("<line") == 11 * 3 + 3 * 3 + 3 * 2
    assert image["x"] == 0 and image["y"] == max(d["y"] for d in dots)
    assert "no data" in texts(network_diagram(runs["initial"]).to_dict())


def test_a_deep_networks_diagram_closes_up_its_layers_and_stacks_its_panels(runs):
    """Past MAX_PANEL_W the layers close up and the two panels stand one above the other (side
    by side, a 15-layer net's ran 1,800 px wide, off the page); the layers' labels give way to
    one line in the title. A shallow net keeps both panels side by side, labelled."""
    from core.lab import network_chart as nc
    plain = runs["plain"]
    shallow = nc.network_diagram(plain, 1).to_dict()
    assert shallow["columns"] == 2 and len(shallow["concat"]) == 2
    assert rows_with(shallow, "label", "x")
    names = [f"hidden{i}" for i in range(1, 16)] + ["output"]
    hist = plain.histograms
    first = hist[(hist.kind == "weight") & (hist.epoch == 0)]
    # Weight histograms of a 15-layer net of 16 units on digits: fan_in × fan_out weights each.
    weights = pd.DataFrame([{**first.iloc[0].to_dict(), "layer": n, "bin": 0,
                             "count": float(64 * 16 if i == 0 else 16 * (10 if n == "output"
                                                                          else 16))}
                            for i, n in enumerate(names)])
    deep = dataclasses.replace(plain, layer_names=names, histograms=weights,
                               config=dataclasses.replace(plain.config, depth=15))
    s = nc.network_diagram(deep, 1).to_dict()
    assert s["columns"] == 1
    widths = [p["width"] for p in s["concat"]]
    assert widths == [nc.MAX_PANEL_W] * 2
    assert not rows_with(s, "label", "x")
    after = json.loads(s["title"]["text"]["expr"].rsplit(" + ", 1)[1])   # after the epoch
    assert after == "; one dot = 6 units: 64 inputs → 15 × 16 units → 10 units"
    # The lines' image spans the first to the last layer at the closed-up gap.
    (image,) = rows_with(s, "url")
    svg = unquote(image["url"].split(",", 1)[1])
    assert 'width="%.1f"' % (nc.MAX_PANEL_W * 16 / 17) in svg
