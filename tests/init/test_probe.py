"""The probe of a network at initialisation, checked against second computations (autograd's
Jacobian, the chain rule by hand, a probe per phase-diagram cell) and against mean-field theory
on wide deep nets, where theory should hold to a few percent."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from core.init import meanfield as mf
from core.init.phase import phase_config, phase_diagram
from core.init.probe import (PROBE_FIELDS, forward, inputs, jacobian_spectrum, probe,
                             probe_text)
from core.init.spectra import SPECTRUM_SETTINGS, spectra
from core.lab.config import ConfigError, RunConfig
from core.lab.models import build_model


def _wide(activation, sigma_w2, sigma_b2=0.05, seed=0, depth=24):
    return RunConfig(depth=depth, width=512, activation=activation, init="mean_field",
                     sigma_w2=sigma_w2, bias_init="normal", bias_value=sigma_b2, seed=seed)


# --- measurement against second computations --------------------------------------------------
@pytest.mark.parametrize("cfg", [RunConfig(depth=4, width=24, activation="tanh"),
                                 RunConfig(depth=4, width=24, model="residual_mlp"),
                                 RunConfig(depth=3, width=24, batch_norm=True, dropout=0.3)])
def test_forward_is_the_models_forward(cfg):
    x, _, info = inputs(cfg, 16)
    model = build_model(cfg, info.input_shape, info.n_classes)
    model.train()
    for layer in model.layers.values():  # the probe leaves dropout out; so does eval dropout
        if layer.drop is not None:
            layer.drop.eval()
    with torch.no_grad():
        torch.testing.assert_close(forward(model, x).logits, model(x))


def test_weight_gradient_is_the_outer_product_of_delta_and_input():
    # ‖∇W_l‖ from autograd = ‖δ_lᵀ x_{l−1}‖ from the recorded δ_l and activations (by hand).
    cfg = RunConfig(depth=3, width=32, activation="tanh", init="xavier_normal")
    p = probe(cfg, n_inputs=64, n_jacobian=0)
    x, y, info = inputs(cfg, 64)
    model = build_model(cfg, info.input_shape, info.n_classes)
    run = forward(model, x)
    torch.nn.functional.cross_entropy(run.logits, y).backward()
    prev = [x.flatten(1)] + run.act[:-1]
    by_hand = [float((h.grad.T @ a.detach()).norm()) for h, a in zip(run.preact, prev)]
    np.testing.assert_allclose(p.metric("weight_grad_norm")["value"], by_hand, rtol=1e-5)
    np.testing.assert_allclose(p.metric("preact_grad_norm")["value"],
                               [float(h.grad.norm()) for h in run.preact], rtol=1e-6)


@pytest.mark.parametrize("cfg", [RunConfig(depth=5, width=32, activation="tanh"),
                                 RunConfig(depth=4, width=32, activation="relu",
                                           model="residual_mlp", init="orthogonal")])
def test_jacobian_singular_values_match_autograd(cfg):
    x, _, info = inputs(cfg, 8)
    model = build_model(cfg, info.input_shape, info.n_classes).double()
    run = forward(model, x.double())
    mine = jacobian_spectrum(model, cfg, run, [3])["singular_value"].to_numpy()

    def stack(x1):  # hidden2 … hiddenL as a function of hidden1's output
        for name, layer in list(model.layers.items())[1:-1]:
            x1 = layer(x1)
        return x1
    jac = torch.autograd.functional.jacobian(stack, run.act[0][3].detach())
    np.testing.assert_allclose(mine, torch.linalg.svdvals(jac).numpy(), rtol=1e-9, atol=1e-12)


# --- measurement against mean-field theory ----------------------------------------------------
@pytest.mark.parametrize("activation,sigma_w2,phase", [
    ("tanh", 0.8, "ordered"), ("tanh", None, "critical"), ("tanh", 3.0, "chaotic"),
    ("relu", 1.5, "ordered"), ("relu", 2.0, "critical"), ("relu", 2.6, "chaotic"),
    ("selu", 0.6, "ordered"), ("linear", 1.15, "chaotic"),
])
def test_measured_gradient_factor_matches_chi_on_wide_deep_nets(activation, sigma_w2, phase):
    sigma_w2 = sigma_w2 or mf.critical_sigma_w2(activation, 0.05)
    measured, theory = [], []
    for seed in (0, 1):
        p = probe(_wide(activation, sigma_w2, seed=seed), n_inputs=128, n_jacobian=0)
        assert p.mean_field.phase == phase
        measured.append(p.measured_chi(8, 20))  # layers 8–20 of 24: q has settled at q*
        theory.append(p.mean_field.chi1)
    assert np.mean(measured) == pytest.approx(np.mean(theory), rel=0.10)


def test_measured_profile_follows_the_layer_by_layer_prediction():
    # From hidden1 on, transient included (tanh σ_b² = 0: q decays as 1/(2l) towards q* = 0).
    p = probe(RunConfig(depth=20, width=512, activation="tanh", init="xavier_normal"),
              n_inputs=128, n_jacobian=0)
    # Per layer, a width-512 layer's variance is itself random to a few percent.
    for metric, tol in (("preact_std", 0.08), ("activation_std", 0.08),
                        ("preact_grad_norm", 0.15)):
        m = p.metric(metric)
        np.testing.assert_allclose(m["value"], m["predicted"], rtol=tol, err_msg=metric)
    assert p.grad_ratio() == pytest.approx(p.grad_ratio("predicted"), rel=0.10)
    assert p.grad_ratio() < 0.5  # and that is a real, predicted, decay


def test_pytorch_default_profile_follows_the_prediction():
    # σ_w² = 1/3 and σ_b² = 1/(3·fan_in), hidden1's from the 64 pixels, the rest from the width:
    # tanh's variance decays layer by layer onto the biases' floor.
    p = probe(RunConfig(depth=8, width=512, activation="tanh", init="pytorch_default",
                        bias_init="pytorch_default"), n_inputs=128, n_jacobian=0)
    m = p.metric("preact_std")
    np.testing.assert_allclose(m["value"], m["predicted"], rtol=0.08)


def test_theory_is_withheld_where_it_does_not_apply():
    p = probe(RunConfig(depth=4, width=16, model="residual_mlp"), n_inputs=32)
    assert "residual" in p.theory and p.layers["predicted"].isna().all()
    assert p.layers["value"].notna().all()
    assert math.isnan(p.sv_predicted_rms)
    with pytest.raises(ConfigError, match="model"):
        probe(RunConfig(model="cnn", depth=2))


# --- the Jacobian spectrum: dynamical isometry ------------------------------------------------
@pytest.fixture(scope="module")
def spectra_30():
    return spectra(RunConfig(depth=30, width=256), n_jacobian=2)


def _stats(table, setting):
    d = table[table["setting"] == setting]
    s = d["singular_value"].to_numpy()
    nz = s[~d["zero"].to_numpy()]
    med = np.median(s)
    return {"s": s, "median": med, "zeros": d["zero"].mean(),
            "near_median": np.mean((s > med / 2) & (s < 2 * med)),
            "spread": np.std(np.log10(nz)), "rms": np.sqrt(np.mean(s ** 2)),
            "predicted_rms": d["predicted_rms"].iloc[0], "phase": d["phase"].iloc[0]}


def test_orthogonal_tanh_at_criticality_is_nearly_isometric(spectra_30):
    t = _stats(spectra_30, "tanh, orthogonal")
    assert t["phase"] == "critical"
    assert t["zeros"] == 0 and t["near_median"] > 0.8 and t["spread"] < 0.35
    # Its scale is theory's: the RMS singular value is √∏χ(q_l), below 1 while tanh's q decays
    # towards q* = 0 (1/√depth-like), which is what keeps the spectrum so narrow.
    assert t["rms"] == pytest.approx(t["predicted_rms"], rel=0.15)


def test_relu_and_gaussian_weights_are_not_isometric(spectra_30):
    ortho = _stats(spectra_30, "tanh, orthogonal")
    for setting in ("ReLU, Gaussian (He)", "ReLU, orthogonal × √2", "tanh, Gaussian (Xavier)"):
        s = _stats(spectra_30, setting)
        assert s["phase"] == "critical"
        assert s["spread"] > 3 * ortho["spread"] and s["spread"] > 1.0, setting
        assert s["near_median"] < 0.5, setting
    relu = _stats(spectra_30, "ReLU, Gaussian (He)")
    assert relu["zeros"] > 0.3  # D_l has zeros: J loses rank
    assert relu["rms"] == pytest.approx(1.0, rel=0.5)  # critical on average, spread widely


def test_orthogonal_tanh_spectrum_near_one_at_moderate_depth():
    s = _stats(spectra(RunConfig(depth=6, width=256), SPECTRUM_SETTINGS[1:2], n_jacobian=2),
               "tanh, orthogonal")
    assert 0.5 < s["median"] < 1.0 and np.mean((s["s"] > 0.5) & (s["s"] < 2)) > 0.5


# --- the phase diagram ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def diagram():
    cfg = RunConfig(depth=12, width=128, activation="tanh")
    return cfg, phase_diagram(cfg, [0.5, 1.0, 1.5, 2.5, 4.0], [0.0, 0.1, 0.4])


def test_a_phase_diagram_cell_is_the_probe_of_that_network(diagram):
    cfg, d = diagram
    for i in (0, 7, 14):
        row = d.cells.iloc[i]
        p = probe(phase_config(cfg, row["sigma_w2"], row["sigma_b2"]), n_inputs=32,
                  n_jacobian=0)
        assert row["measured"] == pytest.approx(p.grad_ratio(), rel=1e-4)
        assert row["predicted"] == pytest.approx(p.grad_ratio("predicted"), rel=1e-6)
        assert row["chi1"] == pytest.approx(p.mean_field.chi1, rel=1e-9)


def test_phase_diagram_measured_follows_predicted_and_the_critical_line(diagram):
    _, d = diagram
    c = d.cells
    assert len(c) == 15 and {"ordered", "chaotic"} <= set(c["phase"])
    assert np.abs(c["log10_measured"] - c["log10_predicted"]).max() < 0.35
    # Clearly ordered cells vanish and clearly chaotic ones explode, in the measured networks
    # too (near χ₁ = 1 the input's transient decides, at depth 12).
    assert (c.loc[c["chi1"] <= 0.9, "measured"] < 1).all()
    assert (c.loc[c["chi1"] >= 1.15, "measured"] > 1).all()
    # The critical line separates the cells' own χ₁ < 1 from χ₁ > 1 (a second computation).
    w_crit = np.interp(c["sigma_b2"], d.critical["sigma_b2"], d.critical["sigma_w2"])
    off = np.abs(c["chi1"] - 1) > 1e-6  # (1, 0) is on the line itself
    assert ((c["chi1"] < 1) == (c["sigma_w2"] < w_crit))[off].all() and off.sum() == 14
    assert d.critical["sigma_w2"].iloc[0] == pytest.approx(1.0, rel=1e-6)  # tanh, σ_b² = 0


def test_phase_diagram_rejects_values_out_of_range():
    with pytest.raises(ConfigError, match="sigma_w2"):
        phase_diagram(RunConfig(depth=3), [500.0], [0.0])
    with pytest.raises(ConfigError, match="bias_value"):
        phase_diagram(RunConfig(depth=3), [1.0], [20.0])


# --- output -----------------------------------------------------------------------------------
def test_probe_tables_json_and_text():
    p = probe(RunConfig(depth=6, width=32, activation="relu", init="mean_field", sigma_w2=3.0,
                        bias_init="normal", bias_value=0.1), n_inputs=32)
    assert list(p.layers.columns) == ["layer", "name", "metric", "value", "predicted"]
    assert set(p.layers["metric"]) == {"preact_std", "activation_std", "preact_grad_norm",
                                       "weight_grad_norm", "grad_factor"}
    assert len(p.metric("grad_factor")) == 5
    assert p.metric("preact_std")["name"].iloc[-1] == "hidden6"
    assert list(p.singular_values.columns) == ["example", "index", "singular_value", "zero"]
    assert len(p.singular_values) == 32
    data = json.loads(p.to_json())  # strict: q* = inf became null
    assert data["summary"]["q_star"] is None and data["summary"]["phase"] == "chaotic"
    assert len(data["layers"]["value"]) == len(p.layers)
    text = probe_text(p)
    assert "χ₁ 1.5000" in text and "hidden6" in text and "chaotic" in text
    assert set(PROBE_FIELDS) <= set(RunConfig().to_dict())


def test_depth_one_has_no_jacobian_and_a_toy_dataset_works():
    p = probe(RunConfig(dataset="moons", depth=1, width=16), n_inputs=32)
    assert p.singular_values.empty and math.isnan(p.summary()["sv_rms"])
    assert len(p.metric("preact_std")) == 1 and p.metric("grad_factor").empty
    assert isinstance(p.layers, pd.DataFrame) and p.dataset["name"] == "moons"
