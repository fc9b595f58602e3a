"""Recurrent networks: ‖∂L/∂h_t‖ against an independent computation, the presets' claims on real
data, clipping, divergence, config and links, the run store, the charts and the page."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.cache import default_store, forget_recent
from core.chart_parts import MAX_STEPS
from core.data.datasets import load_splits
from core.lab.config import ConfigError
from core.recurrent import charts as recurrent_charts
from core.recurrent.config import RecurrentConfig, chunk_sizes
from core.recurrent.model import build_recurrent
from core.recurrent.presets import RECURRENT_PRESETS
from core.recurrent.result import RecurrentResult
from core.lab.metrics import readable
from core.recurrent.trainer import cached_recurrent_run, get_recurrent_run, train_recurrent
from core.store import RunStore
from tests.helpers import charts, clean, open_page

# One step on 32 digits read in 4-pixel chunks (16 time steps): the whole set is one batch.
ONE_STEP = dict(dataset="digits", sequence="chunks", chunk=4, max_train=32, batch_size=32,
                epochs=1, record_every=1, hidden=16)
# 64 one-pixel steps through N(0, 1) recurrent weights of width 256: the gradient through time
# overflows float32 on the first backward pass.
OVERFLOWS = RecurrentConfig(dataset="digits", sequence="chunks", chunk=1, hidden=256,
                            recurrent_init="normal_large", optimizer="sgd", lr=0.1,
                            max_train=128, epochs=2)


@pytest.fixture(scope="module")
def presets() -> dict[str, RecurrentResult]:
    """Each preset's run, trained once into the process's run store (the page reuses them)."""
    return {pid: get_recurrent_run(p.config, default_store())
            for pid, p in RECURRENT_PRESETS.items()}


def independent(cfg: RecurrentConfig):
    """Loss, [‖∂L/∂h_t‖ for t = 1…T] and the total parameter-gradient norm of the model at
    initialisation on the whole (single-batch) training set, by a hand-unrolled loop of
    nn.RNNCell / LSTMCell / GRUCell holding the same weights, and torch.autograd.grad."""
    splits = load_splits(cfg.dataset, seed=cfg.seed, max_train=cfg.max_train)
    x = (torch.as_tensor(splits.x_train).float() - float(splits.mean.ravel()[0])) \
        / float(splits.std.ravel()[0])
    x = x.reshape(len(x), -1, cfg.step_size)
    y = torch.as_tensor(splits.y_train)
    model = build_recurrent(cfg, 10)
    cell_cls = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[cfg.cell]
    cells = []
    for layer in range(cfg.layers):
        cell = cell_cls(cfg.step_size if layer == 0 else cfg.hidden, cfg.hidden)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).copy_(getattr(model.rnn, f"{name}_l{layer}"))
        cells.append(cell)
    h = [torch.zeros(len(y), cfg.hidden) for _ in cells]
    c = [torch.zeros(len(y), cfg.hidden) for _ in cells]
    top = []
    for t in range(x.shape[1]):
        inp = x[:, t]
        for layer, cell in enumerate(cells):
            if cfg.cell == "lstm":
                h[layer], c[layer] = cell(inp, (h[layer], c[layer]))
            else:
                h[layer] = cell(inp, h[layer])
            inp = h[layer]
        top.append(h[-1])
    loss = F.cross_entropy(model.head(top[-1]), y)
    params = [p for cell in cells for p in cell.parameters()] + list(model.head.parameters())
    grads = torch.autograd.grad(loss, top + params)
    per_t = torch.stack([g.norm() for g in grads[:len(top)]])
    total = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads[len(top):]]))
    return loss.item(), per_t.numpy(), total.item()


@pytest.mark.parametrize("cell,layers", [("rnn", 1), ("lstm", 2), ("gru", 1)])
def test_time_grads_match_a_hand_unrolled_loop(cell, layers):
    cfg = RecurrentConfig(**ONE_STEP, cell=cell, layers=layers, recurrent_init="orthogonal")
    result = train_recurrent(cfg)
    loss, per_t, total = independent(cfg)
    recorded = result.time_grads.sort_values("t")
    assert list(recorded.t) == list(range(1, cfg.seq_len + 1)) and set(recorded.step) == {0}
    np.testing.assert_allclose(recorded.value, per_t, rtol=1e-4)
    assert result.steps.loss.iloc[0] == pytest.approx(loss, rel=1e-5)
    assert result.steps.grad_norm.iloc[0] == pytest.approx(total, rel=1e-4)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_recurrent_init_and_gate_bias(cell):
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    H = 64
    for init, check in [
            ("orthogonal", lambda w: torch.allclose(w @ w.T, torch.eye(H), atol=1e-5)),
            ("xavier_normal", lambda w: abs(w.std().item() * H ** 0.5 - 1) < 0.05),
            ("normal_large", lambda w: abs(w.std().item() - 1) < 0.05),
            ("normal_small", lambda w: abs(w.std().item() / 0.01 - 1) < 0.05)]:
        model = build_recurrent(RecurrentConfig(cell=cell, layers=2, recurrent_init=init), 10)
        for layer in range(2):
            blocks = getattr(model.rnn, f"weight_hh_l{layer}").detach().chunk(gates)
            assert all(check(w) for w in blocks), (init, layer)
    if cell != "rnn":
        keep = slice(H, 2 * H)   # LSTM: input, forget, …; GRU: reset, update, …
        rnn = build_recurrent(RecurrentConfig(cell=cell, forget_bias=2.0), 10).rnn
        assert (rnn.bias_ih_l0[keep] + rnn.bias_hh_l0[keep] == 2.0).all()
        rnn = build_recurrent(RecurrentConfig(cell=cell, forget_bias=None), 10).rnn
        assert rnn.bias_ih_l0[keep].abs().max() <= 1 / H ** 0.5    # PyTorch's U(±1/√H)


def test_the_fused_output_alone_misses_the_path_through_time():
    """Why the recording steps run step by step: the fused op's output[:, t] is not what its
    next step reads, so its gradient has only the direct path to the loss."""
    cfg = RecurrentConfig(**ONE_STEP)
    model = build_recurrent(cfg, 10)
    splits = load_splits("digits", max_train=32)
    x = model.sequences(torch.as_tensor(splits.x_train).float() / 16)
    out, _ = model.rnn(x)
    out.retain_grad()
    F.cross_entropy(model.head(out[:, -1]), torch.as_tensor(splits.y_train)).backward()
    assert out.grad[:, :-1].abs().max() == 0 and out.grad[:, -1].abs().max() > 0


def test_clipping_records_the_norm_clip_grad_norm_returns():
    cfg = RecurrentConfig(**ONE_STEP, clip_norm=0.01)
    _, _, total = independent(cfg)
    steps = train_recurrent(cfg).steps
    assert steps.grad_norm.iloc[0] == pytest.approx(total, rel=1e-4)   # before clipping
    assert total > 0.01 and steps.clipped.iloc[0] == 1
    assert train_recurrent(cfg.replace(clip_norm=1e4)).steps.clipped.iloc[0] == 0


def test_rnn_vanishes_through_time_and_the_lstm_much_less(presets):
    rnn, lstm = presets["rnn_forgets"], presets["lstm_keeps"]
    assert rnn.config.replace(cell="lstm") == lstm.config   # only the cell differs
    # Fashion-MNIST rows, 28 steps: orders of magnitude for the RNN, as the LSTM preset's text
    # quotes it (about 1e-08 at initialisation, below 1e-03 over training).
    assert 3e-9 < rnn.ratio_at_init() < 3e-8 and rnn.median_ratio() < 1e-3
    # The LSTM: a thousand times more at initialisation, ten times more over training.
    assert lstm.ratio_at_init() > 1e3 * rnn.ratio_at_init()
    assert lstm.median_ratio() > 10 * rnn.median_ratio()
    # Along the sequence, not just at its ends: the RNN's profile falls steadily towards t = 1.
    at_init = rnn.time_grads[rnn.time_grads.step == 0].sort_values("t").value.to_numpy()
    assert (np.diff(np.log(at_init[at_init > 0])) > 0).mean() > 0.9


@pytest.mark.parametrize("pid", list(RECURRENT_PRESETS))
def test_presets_train_in_seconds(presets, pid):
    """(Their claims, on seeds 0-4: tests/test_lessons.py.) One thread; generous for a loaded
    shared machine."""
    assert presets[pid].timing["seconds"] < 20


def test_explosion_and_its_cure_differ_only_in_clipping(presets):
    wild, tamed = presets["rnn_explodes"], presets["clipping_tames"]
    assert wild.config.replace(clip_norm=0.25) == tamed.config
    assert wild.steps.loss.max() > 5 * tamed.steps.loss.max()
    assert tamed.final("val", "accuracy") > wild.final("val", "accuracy")
    # Clipped exactly where the norm before clipping exceeded the threshold.
    np.testing.assert_array_equal(tamed.steps.clipped, tamed.steps.grad_norm > 0.25)


def test_a_diverging_run_is_a_result():
    result = train_recurrent(OVERFLOWS)
    assert result.diverged
    div = result.divergence
    assert div["step"] == 0 and div["epoch"] == 1 and "non-finite" in div["message"]
    assert result.steps.step.max() == div["step"]            # recorded up to the first bad step
    assert not np.isfinite(result.steps.grad_norm.iloc[-1])
    assert len(result.time_grads) == OVERFLOWS.seq_len        # the bad step's profile is kept
    assert "test" not in set(result.epochs.split)
    for build in (recurrent_charts.time_grad_heatmap, recurrent_charts.time_grad_lines,
                  recurrent_charts.time_ratio, recurrent_charts.step_curves,
                  recurrent_charts.loss_accuracy):
        build(result).to_dict()   # gaps and "no data", never an exception
    back = RecurrentResult.from_dict(json.loads(json.dumps(result.to_dict())))  # as stored
    assert back.divergence == div and not np.isfinite(back.steps.grad_norm.iloc[-1])


def test_config_validation_names_the_setting_and_range():
    for bad, field, text in [(dict(hidden=0), "hidden", "from 1 to 512"),
                             (dict(cell="banana"), "cell", "one of rnn, lstm, gru"),
                             (dict(lr=0.0), "lr", "from 1e-05 to 10"),
                             (dict(layers=3), "layers", "from 1 to 2"),
                             (dict(sequence="chunks", dataset="digits", chunk=3), "chunk",
                              "one of 1, 2, 4, 8, 16, 32, 64")]:
        with pytest.raises(ConfigError) as err:
            RecurrentConfig(**bad)
        assert err.value.field == field and text in str(err.value), str(err.value)
    assert all(784 % k == 0 and 784 // k <= 196 for k in chunk_sizes("mnist"))
    assert RecurrentConfig().seq_len == 28
    assert RecurrentConfig(dataset="mnist", sequence="chunks", chunk=16).seq_len == 49


def test_links_round_trip_and_bad_links_fall_back():
    cfg = RecurrentConfig(dataset="mnist", sequence="chunks", chunk=16, cell="gru", layers=2,
                          max_train=None, forget_bias=None, clip_norm=0.5, lr=0.03)
    params = cfg.to_params()
    assert params["max_train"] == "all" and params["forget_bias"] == "none"
    assert "hidden" not in params                           # defaults stay out of the link
    assert RecurrentConfig.from_params(params) == cfg
    assert RecurrentConfig.from_params(cfg.to_params(only_changed=False)) == cfg
    assert cfg.key() == RecurrentConfig.from_params(params).key() != RecurrentConfig().key()
    with pytest.raises(ConfigError, match="depth: unknown setting"):
        RecurrentConfig.from_params({"depth": "3"})
    lenient, warnings = RecurrentConfig.from_params_lenient(
        {"hidden": "-3", "cell": "lstm", "lr": "fast", "sequence": "chunks", "chunk": "5",
         "tab": "x"})                                      # other widgets' parameters: ignored
    assert lenient == RecurrentConfig(cell="lstm", sequence="chunks")
    text = " ".join(warnings)
    assert len(warnings) == 3 and "`hidden=-3`: not an integer from 1 to 512; using 64" in text
    assert "`lr=fast`: not a number" in text and "`chunk=5`: 5 pixels" in text


def test_store_round_trip(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite3")
    cfg = RecurrentConfig(**ONE_STEP, cell="lstm")
    first = get_recurrent_run(cfg, store)
    assert not first.from_store and store.keys() == [cfg.store_key()]
    assert cfg.store_key().startswith("rnn-")
    forget_recent()   # as a new process: read back from SQLite, through JSON
    again = cached_recurrent_run(cfg, store)
    assert again.from_store and again.config == cfg and again.status == first.status
    for name in ("epochs", "steps", "time_grads"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(first, name),
                                      check_dtype=False)
    store.put(cfg.store_key(), {"config": {"cell": "banana"}})   # damaged: counts as missing
    forget_recent()
    assert cached_recurrent_run(cfg, store) is None and cfg.store_key() not in store.keys()


def _long(result: RecurrentResult, n_steps: int) -> RecurrentResult:
    """The run's tables stretched to `n_steps` recorded steps (a long run, for thinning)."""
    T = result.config.seq_len
    profile = result.time_grads[result.time_grads.step == 0].sort_values("t").value.to_numpy()
    steps = np.arange(n_steps)
    return dataclasses.replace(
        result,
        time_grads=pd.DataFrame({"step": np.repeat(steps, T),
                                 "epoch": 1 + np.repeat(steps, T) // 100,
                                 "t": np.tile(np.arange(1, T + 1), n_steps),
                                 "value": np.tile(profile, n_steps)}),
        steps=pd.DataFrame({"step": steps, "epoch": 1 + steps // 100, "loss": 2.0,
                            "grad_norm": 1.0, "clipped": 1.0}))


def test_chart_builders(presets):
    for result in (presets["rnn_forgets"], presets["clipping_tames"]):
        for chart in (recurrent_charts.time_grad_heatmap(result),
                      recurrent_charts.time_grad_lines(result, 1),
                      recurrent_charts.time_ratio(result, 2),
                      recurrent_charts.step_curves(result, 1),
                      recurrent_charts.loss_accuracy(result, 1)):
            spec = json.dumps(chart.to_dict())    # validates against the Vega-Lite schema
            assert '"scale": null' not in spec    # the browser's theming breaks on it
    tamed = presets["clipping_tames"]
    spec = json.dumps(recurrent_charts.step_curves(tamed).to_dict())
    assert "clip threshold 0.25" in spec and "Clipped steps per epoch" in spec
    lines_spec = recurrent_charts.time_grad_lines(tamed, 2).to_dict()
    lines = json.dumps(lines_spec)
    assert "at initialisation (step 0)" in lines and "after epoch 3" in lines
    # The chosen epoch's thicker line: a width on a discrete field, sorted (else Vega-Lite
    # warns in the browser's console).
    assert lines_spec["encoding"]["strokeWidth"]["sort"] == ["yes", "no"]
    heat = recurrent_charts.time_grad_heatmap(_long(tamed, 1500)).to_dict()
    rows = next(v for v in heat["datasets"].values() if v and "t0" in v[0])
    assert len({r["step"] for r in rows}) <= MAX_STEPS and len(rows) <= 20_000
    curves = recurrent_charts.step_curves(_long(tamed, 1500)).to_dict()
    assert all(len({r["step"] for r in v}) <= MAX_STEPS for v in curves["datasets"].values()
               if v and "step" in v[0])


def test_page_renders_a_preset_from_its_link_and_claims_hold(presets):
    preset = RECURRENT_PRESETS["lstm_keeps"]
    at = open_page("app_pages/recurrent.py", **preset.config.to_params())
    clean(at)
    assert len(charts(at)) == 5
    text = " ".join(m.value for m in at.markdown)
    assert preset.title in text
    assert ":material/check_circle:" in text and ":material/cancel:" not in text
    assert at.selectbox(key="cell").value == "lstm"
    assert any("h_28" in c for c in charts(at))
    assert [m.label for m in at.metric][:3] == ["Validation accuracy", "First/last at init",
                                                "First/last, median"]
    # Ratios as decimals where one reads (an LSTM's: it read "3.1e-01"), from the run's numbers.
    result = get_recurrent_run(preset.config)
    assert [m.value for m in at.metric][1:3] == [readable(result.ratio_at_init()),
                                                 readable(result.median_ratio())]
    assert not any("e-0" in m.value for m in at.metric)


def test_page_preset_button_sets_the_controls(presets):
    at = open_page("app_pages/recurrent.py")
    clean(at)
    at = at.button(key="preset_rnn_explodes").click().run()
    clean(at)
    assert at.select_slider(key="lr").value == 1.0
    assert at.selectbox(key="optimizer").value == "momentum"
    assert dict(at.query_params).get("recurrent_init") in ("orthogonal", ["orthogonal"])
    text = " ".join(m.value for m in at.markdown)
    assert RECURRENT_PRESETS["rnn_explodes"].title in text and ":material/cancel:" not in text


def test_page_bad_link_warns_and_uses_defaults(presets):
    at = open_page("app_pages/recurrent.py", hidden="-3", cell="banana", chunk="5",
                   sequence="chunks")
    clean(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "hidden=-3" in warnings and "from 1 to 512" in warnings and "using 64" in warnings
    assert "cell=banana" in warnings and "using rnn" in warnings
    assert "chunk=5" in warnings and "using 16" in warnings
    assert at.selectbox(key="cell").value == "rnn"


_INERT_BASE = RecurrentConfig(dataset="digits", max_train=100, epochs=1, hidden=8,
                              batch_size=32)


@pytest.mark.parametrize("name,v1,v2,off,on", [
    ("chunk", 4, 16, {"sequence": "rows"}, {"sequence": "chunks"}),
    ("forget_bias", 1.0, 3.0, {"cell": "rnn"}, {"cell": "lstm"}),
], ids=["chunk", "forget_bias"])
def test_an_inert_setting_trains_identically_and_counts_once_its_option_is_chosen(
        name, v1, v2, off, on):
    inert_cfg = _INERT_BASE.replace(**off)
    assert name in inert_cfg.inert() and name not in _INERT_BASE.replace(**on).inert()
    a, b = (train_recurrent(inert_cfg.replace(**{name: v})) for v in (v1, v2))
    pd.testing.assert_frame_equal(a.epochs, b.epochs)
    pd.testing.assert_frame_equal(a.steps, b.steps)
    c, d = (train_recurrent(_INERT_BASE.replace(**on, **{name: v})) for v in (v1, v2))
    assert not c.steps.equals(d.steps)
