"""The Attention page's core: softmax statistics against torch's Jacobian and numpy, saturation on
real digit tokens, the classifier's recorded gradients against a hand-written float64 forward,
the presets' claims, the config and its URL form, the charts, and the page through AppTest."""

from __future__ import annotations

import json
import math
from decimal import Decimal, getcontext

import numpy as np
import pandas as pd
import pytest
import torch

from core.attention import charts as ac
from core.attention.config import D_GRID, KEY_PREFIX, AttentionConfig
from core.attention.presets import ATTENTION_PRESETS, sweep_value
from core.attention.softmax import (attention_stats,
                                    build_classifier,
                                    cached_attention,
                                    example_image,
                                    example_weights,
                                    get_attention,
                                    jacobian_norm,
                                    logits_for,
                                    projections,
                                    softmax_saturation,
                                    tokenize,
                                    train_attention)
from core.data.datasets import load_splits
from core.lab.config import ConfigError
from tests.helpers import charts, clean, open_page

PAGE = "app_pages/attention.py"


def _curve(table, variant, metric, sweep="d"):
    rows = table[(table.sweep == sweep) & (table.variant == variant) & (table.metric == metric)]
    return rows.set_index(sweep).value.sort_index()


def _np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _digits(tokens="rows", n=32, seed=0, max_train=None):
    """Standardised digit token sequences built with numpy reshapes (not F.unfold), with the
    (capped) training split's pixel mean and std, as the trainer standardises."""
    s = load_splits("digits", seed=seed, max_train=max_train)
    x = (s.x_train[:n, 0].astype(np.float64) - float(s.mean.ravel()[0])) / float(s.std.ravel()[0])
    if tokens == "rows":
        return x
    k = {"patch2": 2, "patch4": 4}[tokens]
    m = 8 // k
    return x.reshape(n, m, k, m, k).transpose(0, 1, 3, 2, 4).reshape(n, m * m, k * k)


# --- softmax statistics -------------------------------------------------------------------------
def test_jacobian_norm_matches_torchs_jacobian():
    torch.manual_seed(0)
    spread = torch.logspace(-1, 1.5, 12, dtype=torch.float64)[:, None]
    z = torch.randn(12, 9, dtype=torch.float64) * spread
    closed = jacobian_norm(torch.softmax(z, -1))
    for i in range(len(z)):
        j = torch.autograd.functional.jacobian(lambda r: torch.softmax(r, -1), z[i])
        # autograd's diagonal p − p² rounds at ~1e-16 where p ≈ 1: hence the absolute slack
        assert closed[i].item() == pytest.approx(np.linalg.norm(j.numpy(), "fro"), rel=1e-9,
                                                 abs=1e-15)
    jr = torch.vmap(torch.func.jacrev(lambda r: torch.softmax(r, -1)))(z)
    assert torch.allclose(closed, torch.linalg.matrix_norm(jr), rtol=1e-9, atol=1e-15)
    n = 8  # uniform attention: √(n−1)/n; one-hot: 0
    assert jacobian_norm(torch.full((n,), 1 / n, dtype=torch.float64)).item() == pytest.approx(
        math.sqrt(n - 1) / n)
    assert jacobian_norm(torch.eye(n, dtype=torch.float64)[0]).item() == 0.0


@pytest.mark.parametrize("gap", [5.0, 20.0, 60.0])
def test_jacobian_norm_stays_accurate_as_attention_turns_one_hot(gap):
    """Logits (gap, 0, …, 0): against 50-digit decimal arithmetic, where p − p² would cancel."""
    n = 8
    getcontext().prec = 50
    e = Decimal(-gap).exp()
    p = [1 / (1 + (n - 1) * e)] + [e / (1 + (n - 1) * e)] * (n - 1)
    exact = math.sqrt(sum((pi * ((1 if i == j else 0) - pj)) ** 2
                          for i, pi in enumerate(p) for j, pj in enumerate(p)))
    z = torch.tensor([gap] + [0.0] * (n - 1), dtype=torch.float64)
    assert jacobian_norm(torch.softmax(z, -1)).item() == pytest.approx(exact, rel=1e-12)


def test_entropy_and_max_weight_match_numpy_on_real_logits():
    x = _digits("patch2")
    logits = logits_for(torch.from_numpy(x), 32, 1.0, False, seed=3)
    # the p×p shortcut against the projections applied the long way, in numpy
    wq, wk = (w.numpy() for w in projections(x.shape[-1], 32, 3))
    assert np.allclose(logits.numpy(), (x @ wq) @ (x @ wk).transpose(0, 2, 1), atol=1e-10)
    p = _np_softmax(logits.numpy())
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p > 0, p * np.log(p), 0.0).sum(-1)
    s2, s3 = (p ** 2).sum(-1), (p ** 3).sum(-1)
    stats = attention_stats(logits)
    assert stats["entropy"] == pytest.approx(ent.mean(), rel=1e-9)
    assert stats["max_weight"] == pytest.approx(p.max(-1).mean(), rel=1e-9)
    assert stats["jacobian_norm"] == pytest.approx(np.sqrt(s2 - 2 * s3 + s2 ** 2).mean(), rel=1e-9)
    assert stats["saturated"] == pytest.approx((p.max(-1) > 0.99).mean())
    assert stats["logit_std"] == pytest.approx(logits.numpy().std(-1, ddof=1).mean(), rel=1e-9)


def test_tokens_are_rows_and_patches_in_reading_order():
    s = load_splits("digits")
    images = torch.from_numpy(s.x_train[:5].astype(np.float32))
    raw = s.x_train[:5, 0].astype(np.float64)
    for kind in ("rows", "patch2", "patch4"):
        k = {"rows": None, "patch2": 2, "patch4": 4}[kind]
        want = raw if k is None else raw.reshape(5, 8 // k, k, 8 // k, k).transpose(
            0, 1, 3, 2, 4).reshape(5, -1, k * k)
        assert np.array_equal(tokenize(images, kind).numpy(), want)


def test_projections_have_variance_one_over_fan_in():
    wq, wk = projections(16, 512, seed=0)
    assert wq.shape == (16, 512) and not torch.equal(wq, wk)
    assert (wq.var() * 16).item() == pytest.approx(1, abs=0.08)
    assert torch.equal(projections(16, 8, seed=0)[0], wq[:, :8])  # nested: a smooth sweep


@pytest.mark.parametrize("tokens", ["rows", "patch4"])
def test_unscaled_softmax_saturates_as_d_grows_and_scaled_does_not(tokens):
    t = softmax_saturation(AttentionConfig(tokens=tokens))
    log_n = t.log_n.iloc[0]
    assert log_n == pytest.approx(math.log({"rows": 8, "patch4": 4}[tokens]))
    assert list(_curve(t, "unscaled", "entropy").index) == list(D_GRID)
    for metric in ("entropy", "jacobian_norm"):
        u, s = _curve(t, "unscaled", metric), _curve(t, "scaled", metric)
        assert u.iloc[0] == pytest.approx(s.iloc[0])            # d = 1: √d = 1, the same logits
        assert u.iloc[-1] < 0.4 * u.iloc[0]                       # falls with d …
        assert pd.Series(u.index).corr(pd.Series(u.values), method="spearman") < -0.9
        assert s.max() / s.min() < 1.6                            # … scaled stays level
    assert _curve(t, "unscaled", "entropy").iloc[-1] < 0.15 * log_n
    assert _curve(t, "scaled", "entropy").min() > 0.55 * log_n
    assert _curve(t, "unscaled", "max_weight").iloc[-1] > 0.85
    spread_u, spread_s = _curve(t, "unscaled", "logit_std"), _curve(t, "scaled", "logit_std")
    assert spread_u.iloc[-1] > 4 * spread_u.iloc[0] and spread_s.max() / spread_s.min() < 3
    # the logit-scale sweep: a larger scale saturates even scaled attention
    scale = _curve(t, "scaled", "entropy", sweep="logit_scale")
    assert scale.is_monotonic_decreasing and scale.iloc[-1] < 0.3 * log_n


def test_example_weights_are_one_digits_softmax_rows():
    cfg = AttentionConfig(tokens="patch2", d=128)
    w = example_weights(cfg)
    assert set(w.variant) == {"scaled", "unscaled"} and len(w) == 2 * 16 * 16
    sums = w.groupby(["variant", "query"]).weight.sum()
    assert np.allclose(sums, 1.0)
    image, label = example_image(cfg)
    s = load_splits("digits")
    assert label == s.y_train[0] and image.value.sum() == s.x_train[0].sum()


# --- the classifier -----------------------------------------------------------------------------
def _manual(model, x, y):
    """The classifier's forward in float64, attention spelled out (no SDPA): logits s, loss."""
    p = {n: t.detach().double().requires_grad_() for n, t in model.named_parameters()}
    h = x @ p["embed.weight"].T + p["embed.bias"] + p["position"]
    s = (h @ p["query.weight"].T) @ (h @ p["key.weight"].T).transpose(1, 2) * model.scale
    out = torch.softmax(s, -1) @ (h @ p["value.weight"].T)
    logits = out.mean(1) @ p["head.weight"].T + p["head.bias"]
    return p, s, logits


def test_recorded_gradient_norms_match_a_hand_written_forward():
    # One batch of 64 = the whole (capped) training set: one step per variant.
    cfg = AttentionConfig(epochs=1, max_train=64, batch_size=64, d=128)
    result = train_attention(cfg)
    s = load_splits("digits", seed=0, max_train=64)
    x, y = torch.from_numpy(_digits("rows", n=64, max_train=64)), torch.from_numpy(s.y_train)
    assert np.array_equal(s.y_train, y.numpy())
    for variant in ("scaled", "unscaled"):
        model = build_classifier(cfg, variant, 8, 8)
        assert model.scale == pytest.approx(1 / math.sqrt(128) if variant == "scaled" else 1.0)
        p, _, logits = _manual(model, x, y)
        loss = torch.nn.functional.cross_entropy(logits, y)
        grads = dict(zip(p, torch.autograd.grad(loss, list(p.values()))))
        qk = math.sqrt(sum(grads[n].pow(2).sum().item() for n in ("query.weight", "key.weight")))
        rest = math.sqrt(sum(g.pow(2).sum().item() for n, g in grads.items()
                             if n not in ("query.weight", "key.weight")))
        rec = result.steps[(result.steps.variant == variant) & (result.steps.step == 1)]
        got = dict(zip(rec.metric, rec.value))
        assert got["loss"] == pytest.approx(loss.item(), rel=1e-5)
        assert got["grad_qk"] == pytest.approx(qk, rel=1e-4)
        assert got["grad_rest"] == pytest.approx(rest, rel=1e-4)


def test_epoch_zero_attention_statistics_match_an_independent_computation():
    cfg = AttentionConfig(epochs=1, max_train=50, d=256)
    result = train_attention(cfg)
    s = load_splits("digits", seed=0, max_train=50)
    xv = (s.x_val[:, 0].astype(np.float64) - float(s.mean.ravel()[0])) / float(s.std.ravel()[0])
    x, y = torch.from_numpy(xv), torch.from_numpy(s.y_val)
    for variant in ("scaled", "unscaled"):
        _, logits_s, logits = _manual(build_classifier(cfg, variant, 8, 8), x, y)
        loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
        (g,) = torch.autograd.grad(loss, logits_s)
        pn = _np_softmax(logits_s.detach().numpy())
        assert result.at(variant, "max_weight", 0) == pytest.approx(pn.max(-1).mean(), rel=1e-4)
        assert result.at(variant, "grad_logits", 0) == pytest.approx(
            np.linalg.norm(g.numpy(), axis=-1).mean(), rel=1e-3)
        assert result.at(variant, "accuracy", 0) == pytest.approx(
            (logits.argmax(1) == y).double().mean().item())
    # unscaled attention at d = 256 starts saturated, and little gradient reaches its logits
    assert result.at("unscaled", "entropy", 0) < 0.2 * result.at("scaled", "entropy", 0)
    assert result.at("unscaled", "grad_logits", 0) < 0.3 * result.at("scaled", "grad_logits", 0)


def test_classifier_is_cached_as_json_and_shared_by_both_highlights(tmp_path):
    from core.store import RunStore
    store = RunStore(tmp_path / "store.sqlite3")
    cfg = AttentionConfig(epochs=2, max_train=100, scaled=False)
    calls = []
    first = get_attention(cfg, store=store, on_progress=lambda done, total: calls.append(
        (done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)] and not first.from_store
    assert store.keys() == [KEY_PREFIX + cfg.replace(scaled=True).key()]
    json.dumps(store.get(store.keys()[0]))               # plain JSON, no pickle
    again = cached_attention(cfg.replace(scaled=True), store)
    assert again.from_store and again.config.scaled
    pd.testing.assert_frame_equal(again.epochs, first.epochs, check_dtype=False)
    pd.testing.assert_frame_equal(again.steps, first.steps, check_dtype=False)
    assert len(first.steps[first.steps.metric == "grad_qk"]) == 2 * 2 * 2  # 2 variants × 2 × 2
    assert not first.diverged("scaled") and not first.diverged("unscaled")


def test_a_diverging_classifier_is_reported_and_still_charted():
    cfg = AttentionConfig(lr=1.0, optimizer="sgd", d=512, logit_scale=32.0, epochs=1,
                          batch_size=16, max_train=300)
    result = train_attention(cfg)
    assert result.diverged("unscaled")
    for chart in (ac.training_curves(result), ac.gradient_charts(result)):
        assert "NaN" not in json.dumps(chart.to_dict())


# --- config and URL -------------------------------------------------------------------------------
@pytest.mark.parametrize("changes,field,words", [
    ({"d": 0}, "d", "from 1 to 512"), ({"d": 1024}, "d", "out of range"),
    ({"tokens": "pixels"}, "tokens", "rows, patch2, patch4"),
    ({"scaled": "yes"}, "scaled", "true or false"), ({"logit_scale": math.nan}, "logit_scale", ""),
    ({"logit_scale": 0.0}, "logit_scale", "0.01 to 100"), ({"max_train": 5}, "max_train", "10"),
    ({"epochs": 2.5}, "epochs", "integer"), ({"optimizer": "lbfgs"}, "optimizer", "adam")])
def test_bad_settings_name_the_field_and_the_range(changes, field, words):
    with pytest.raises(ConfigError) as err:
        AttentionConfig(**changes)
    assert err.value.field == field and words in str(err.value)


def test_url_round_trip_and_lenient_links():
    assert AttentionConfig().to_params() == {}
    for cfg in [p.config for p in ATTENTION_PRESETS.values()] + [
            AttentionConfig(scaled=False, logit_scale=0.25, max_train=200, optimizer="sgd",
                            lr=0.1, seed=7)]:
        assert AttentionConfig.from_params(cfg.to_params()) == cfg
        assert AttentionConfig.from_params(cfg.to_params(only_changed=False)) == cfg
        assert len({cfg.key(), cfg.replace(seed=cfg.seed + 1).key()}) == 2
    with pytest.raises(ConfigError, match="width"):
        AttentionConfig.from_params({"width": "3"})
    cfg, warnings = AttentionConfig.from_params_lenient(
        {"d": "-3", "tokens": "patch4", "scaled": "maybe", "lab": "x", "epochs": "many"})
    assert cfg == AttentionConfig(tokens="patch4")
    text = " ".join(warnings)
    assert len(warnings) == 3 and "`d=-3`" in text and "scaled" in text and "epochs" in text
    problems = AttentionConfig.url_problems({"d": "100", "logit_scale": "oops", "seed": "3"},
                                            AttentionConfig(seed=3), {"d": D_GRID})
    assert len(problems) == 2 and "`d=100`: not one of this control's values (1, 2" in problems[0]
    assert "`logit_scale=oops`" in problems[1] and "using 1.0" in problems[1]
    assert set(AttentionConfig.fields()) >= {"tokens", "d", "scaled", "logit_scale", "seed", "epochs", "lr"}


# --- charts ---------------------------------------------------------------------------------------
def test_chart_builders_give_valid_specs_without_null_scales():
    cfg = AttentionConfig(epochs=2, max_train=100)
    table, result = softmax_saturation(cfg), train_attention(cfg)
    image, label = example_image(cfg)
    built = [ac.saturation_curves(table, 64, "unscaled"), ac.spread_chart(table, "unscaled"),
             ac.weights_heatmap(example_weights(cfg), image, label, "rows"),
             ac.training_curves(result, "scaled"), ac.gradient_charts(result, "scaled")]
    for i, chart in enumerate(built):
        spec = json.dumps(chart.to_dict())   # validates against the Vega-Lite schema
        assert '"scale": null' not in spec
        if i != 2:  # the heatmap colours weights, not variants
            assert "#e45756" in spec and "#4c78a8" in spec   # both variants, fixed colours
    assert "datum.variant === 'unscaled'" in json.dumps(built[0].to_dict())
    assert "jacobian_median" in json.dumps(built[0].to_dict())
    empty = ac.saturation_curves(table.iloc[:0], 64)
    assert "no data" in json.dumps(empty.to_dict())


# --- the page -------------------------------------------------------------------------------------
def test_page_renders_the_sweep_and_the_classifier():
    at = open_page(PAGE)
    clean(at)
    assert len(charts(at)) == 5
    assert [m.label for m in at.metric] == ["Entropy", "Largest weight", "Softmax Jacobian",
                                            "Saturated queries"]
    # The Jacobian's norm as a decimal (it read "3.52e-01"), the table's own number.
    jacobian = at.metric[2].value
    assert "e-0" not in jacobian and float(jacobian) == pytest.approx(
        sweep_value(softmax_saturation(AttentionConfig()), "scaled", "jacobian_norm", d=64),
        rel=2e-3)
    assert any("At d = 64, logits scaled by 1/√d" in c.value for c in at.caption)
    assert any("Validation accuracy after 10 epochs" in c.value for c in at.caption)
    drawn = " ".join(charts(at))
    assert "grad_logits" in drawn and "jacobian_median" in drawn


def test_preset_button_sets_the_link_and_its_claims_hold():
    at = open_page(PAGE)
    at = at.button(key="preset_slower").click().run()
    clean(at)
    assert at.query_params["d"] == "256" and at.select_slider(key="d").value == 256
    text = [m.value for m in at.markdown]
    assert any("Unscaled attention learns slower" in t for t in text)
    claims = [t for t in text if t.startswith(":material/")]
    assert len(claims) == 3 and all("check_circle" in t for t in claims), claims
    # the link the button made opens the same lesson in a fresh session
    again = open_page(PAGE, **dict(at.query_params.items()))
    clean(again)
    assert again.select_slider(key="d").value == 256
    assert sum(m.value.startswith(":material/check_circle") for m in again.markdown) == 3


def test_bad_link_warns_and_still_draws():
    at = open_page(PAGE, d="100", scaled="banana", tokens="pixels", logit_scale="-1",
                   epochs="2", max_train="100")
    clean(at)
    text = " ".join(w.value for w in at.warning)
    for part in ("`d=100`", "`scaled=banana`", "`tokens=pixels`", "`logit_scale=-1`"):
        assert part in text, text
    assert "epochs" not in text and at.slider(key="epochs").value == 2
    assert len(charts(at)) == 5


def test_a_link_sets_every_control_and_round_trips():
    cfg = AttentionConfig(tokens="patch2", d=16, scaled=False, logit_scale=0.25, seed=3,
                          epochs=2, lr=0.01, optimizer="sgd", batch_size=32, max_train=200)
    at = open_page(PAGE, **cfg.to_params())
    clean(at)
    assert not at.warning, [w.value for w in at.warning]
    assert dict(at.query_params.items()) == cfg.to_params()
    assert at.selectbox(key="tokens").value == "patch2" and not at.toggle(key="scaled").value
    assert at.select_slider(key="logit_scale").value == 0.25
    assert at.select_slider(key="max_train").value == 200 and at.number_input(key="seed").value == 3
    assert any("logits unscaled" in c.value for c in at.caption)
