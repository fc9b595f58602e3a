"""The Initialization page's charts, checked through the Vega-Lite spec they produce (validated
against the schema by `to_dict()`) and the data it carries."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from core.init import charts as init_charts
from core.init.phase import phase_diagram
from core.init.probe import probe
from core.init.spectra import SPECTRUM_SETTINGS, spectra
from core.lab.config import RunConfig
from tests.helpers import assert_clean, rows, walk


@pytest.fixture(scope="module")
def tables():
    cfg = RunConfig(depth=8, width=32, activation="tanh", init="xavier_normal")
    plain = probe(cfg, n_inputs=32)
    several = pd.concat([probe(cfg.replace(init=i), n_inputs=32).layers.assign(setting=i)
                         for i in ("xavier_normal", "orthogonal", "normal_small")])
    residual = probe(cfg.replace(model="residual_mlp"), n_inputs=32)
    diagram = phase_diagram(cfg, [0.5, 1.0, 2.0, 4.0], [0.0, 0.2], n_inputs=16)
    spec = spectra(cfg.replace(depth=10), n_inputs=16)
    return {"plain": plain, "several": several, "residual": residual, "diagram": diagram,
            "spectra": spec}


def panel_rows(spec: dict, panel: dict) -> list[dict]:
    """The rows one sub-chart uses: Altair names each data set and keeps it at the top."""
    names = {n["data"]["name"] for n in walk(panel) if isinstance(n, dict)
             and isinstance(n.get("data"), dict) and "name" in n["data"]}
    return [row for name in names for row in spec["datasets"][name]]


def test_profile_draws_measured_and_theory_on_a_log_axis(tables):
    spec = clean_spec(init_charts.profile(tables["plain"].layers).to_dict())
    data = rows(spec)
    assert {r["source"] for r in data} == {"measured", "mean-field theory"}
    assert {r["metric"] for r in data} == {"activation_std", "preact_grad_norm"}
    measured = sorted((r["layer"], r["value"]) for r in data
                      if r["metric"] == "activation_std" and r["source"] == "measured")
    expected = tables["plain"].metric("activation_std")
    np.testing.assert_allclose([v for _, v in measured], expected["value"])
    scales = [n["scale"] for n in walk(spec) if isinstance(n, dict) and "scale" in n]
    assert {"type": "log"} in scales
    dash = [n for n in walk(spec) if isinstance(n, dict) and n.get("field") == "source"
            and "scale" in n]
    assert dash and dash[0]["scale"]["domain"] == ["measured", "mean-field theory"]


def test_profile_colours_several_settings_and_marks_chi_one(tables):
    spec = clean_spec(init_charts.profile(tables["several"], ("preact_grad_norm", "grad_factor"))
                 .to_dict())
    colors = [n for n in walk(spec) if isinstance(n, dict) and n.get("field") == "setting"
              and "sort" in n]
    assert colors and colors[0]["sort"] == ["xavier_normal", "orthogonal", "normal_small"]
    assert any(r.get("label", "").startswith("1: critical") for r in rows(spec))


def test_profile_without_theory_shows_the_measurement_only(tables):
    spec = clean_spec(init_charts.profile(tables["residual"].layers).to_dict())
    assert {r["source"] for r in rows(spec)} == {"measured"}


def test_phase_heatmap_selection_and_critical_line(tables):
    d = tables["diagram"]
    spec = clean_spec(init_charts.phase_heatmap(d.cells, d.critical, current=(1.0, 0.0)).to_dict())
    params = [p for n in walk(spec) if isinstance(n, dict) for p in n.get("params", [])]
    cell = [p for p in params if p.get("name") == "cell"]
    assert len(cell) == 1 and cell[0]["select"]["fields"] == ["sigma_w2", "sigma_b2"]
    data = rows(spec)
    heat = [r for r in data if r["kind"] == "cell"]
    assert len(heat) == 2 * len(d.cells)  # predicted and measured panels
    got = {(r["panel"], r["sigma_w2"], r["sigma_b2"]): r["log10_ratio"] for r in heat}
    for _, c in d.cells.iterrows():
        assert got["measured", c["sigma_w2"], c["sigma_b2"]] == pytest.approx(c["log10_measured"])
        assert got["mean-field prediction", c["sigma_w2"], c["sigma_b2"]] == pytest.approx(
            c["log10_predicted"])
    line = [r for r in data if r["kind"] == "critical"]
    assert line and min(r["sigma_w2"] for r in line) == pytest.approx(1.0, rel=1e-6)
    colors = [n for n in walk(spec) if isinstance(n, dict) and n.get("field") == "log10_ratio"
              and "scale" in n]
    scale = colors[0]["scale"]
    assert scale["domainMid"] == 0 and scale["domain"][0] == -scale["domain"][1]


def test_phase_heatmap_log_axis_for_geometric_sigma_w2(tables):
    cells = tables["diagram"].cells.assign(sigma_w2=lambda c: c["sigma_w2"])
    spec = clean_spec(init_charts.phase_heatmap(cells, None).to_dict())  # 0.5, 1, 2, 4: geometric
    assert any(n.get("type") == "log" for n in walk(spec) if isinstance(n, dict))
    heat = [r for r in rows(spec) if r["kind"] == "cell"]
    w = sorted({(r["w0"], r["w1"]) for r in heat})
    assert w[1][0] == pytest.approx(math.sqrt(0.5 * 1.0))  # geometric half way


def test_spectrum_one_panel_per_setting_with_references(tables):
    spec = clean_spec(init_charts.spectrum(tables["spectra"]).to_dict())
    titles = [p["title"] for p in spec["vconcat"]]
    assert [t.split(" — ")[0] for t in titles] == [s["label"] for s in SPECTRUM_SETTINGS]
    assert any("numerically zero" in t for t in titles if t.startswith("ReLU"))
    labels = {r.get("label") for r in rows(spec)}
    assert {"1: isometry", "theory's RMS"} <= labels
    # The rules' words in the subtitle, not as text on the bars (where they overlapped).
    assert "theory's RMS" in spec["title"]["subtitle"]
    marks = [n["mark"] for n in walk(spec) if isinstance(n, dict) and "mark" in n]
    assert "text" not in {m if isinstance(m, str) else m["type"] for m in marks}
    # The bars hold every non-zero singular value of each setting.
    t = tables["spectra"]
    counts = [sum(r["count"] for r in panel_rows(spec, p) if "count" in r)
              for p in spec["vconcat"]]
    expected = [int((~t[t["setting"] == s["label"]]["zero"]).sum()) for s in SPECTRUM_SETTINGS]
    assert counts == expected


def test_spectrum_relative_is_centred_on_one(tables):
    t = tables["spectra"]
    one = t[t["setting"] == "tanh, orthogonal"]
    spec = clean_spec(init_charts.spectrum(one, relative=True).to_dict())
    bins = [r for r in rows(spec) if "count" in r]
    centre = sum(r["count"] * math.sqrt(r["lo"] * r["hi"]) for r in bins) / sum(
        r["count"] for r in bins)
    assert 0.7 < centre < 1.3


def test_empty_inputs_say_so():
    empty = pd.DataFrame(columns=["example", "index", "singular_value", "zero"])
    for chart in (init_charts.spectrum(empty), init_charts.phase_heatmap(pd.DataFrame())):
        assert "no" in json.dumps(chart.to_dict())


def clean_spec(spec: dict) -> dict:
    assert_clean(spec)
    return spec
