"""Bias-free layers, squared-error loss, validation every N steps, percentile traces and steps
to a loss criterion, each checked against an independent computation (numpy, torch by hand)."""

import numpy as np
import pandas as pd
import pytest
import torch

from core.data.datasets import load_splits
from core.lab.config import RunConfig
from core.lab.criterion import steps_to_target
from core.lab.models import build_model
from core.lab.result import RunResult
from core.lab.trainer import train
from core.lab.unit_trace import percentiles, traced_units

# One full-batch step per epoch: step 0 sees the whole (256-example) training set.
FULL_BATCH = dict(dataset="digits", max_train=256, batch_size=256, record_every=1, depth=2,
                  width=16, epochs=2)


def _initial_forward(cfg: RunConfig):
    """(model, [pre-activation, activation] per hidden layer, outputs, targets) of the initial
    network on the whole training set, by hand."""
    splits = load_splits(cfg.dataset, seed=cfg.seed, max_train=cfg.max_train)
    x = torch.as_tensor((splits.x_train.astype(np.float32) - splits.mean) / splits.std)
    model = build_model(cfg, splits.info.input_shape, splits.info.n_classes)
    h, hidden = x.flatten(1), []
    with torch.no_grad():
        for layer in model.layers.values():
            z = layer.linear(h)
            h = layer.act(z) if layer.act is not None else z
            if layer.act is not None:
                hidden.append((z.numpy(), h.numpy()))
    return model, hidden, h.numpy(), splits.y_train


def test_bias_off_builds_layers_without_biases_and_leaves_bias_init_inert():
    cfg = RunConfig(depth=2, width=16, bias=False)
    model = build_model(cfg, (1, 8, 8), 10)
    assert all(layer.linear.bias is None for layer in model.layers.values())
    assert sum(p.numel() for p in model.parameters()) == 64 * 16 + 16 * 16 + 16 * 10
    assert {"bias_init", "bias_value"} <= set(cfg.inert())
    cnn = build_model(RunConfig(model="cnn", depth=1, width=4, bias=False), (1, 8, 8), 10)
    assert all(layer.linear.bias is None for layer in cnn.layers.values())


def test_mse_is_the_squared_error_against_one_hot_targets_and_accuracy_stays_argmax():
    cfg = RunConfig(**FULL_BATCH, loss="mse", bias=False, activation="linear",
                    init="orthogonal", optimizer="sgd", lr=0.05)
    _, _, out, y = _initial_forward(cfg)
    one_hot = np.eye(10)[y]
    r = train(cfg)
    assert r.steps.loss.iloc[0] == pytest.approx(((out - one_hot) ** 2).mean(), rel=1e-5)
    train_acc = r.epochs.query("epoch == 1 and split == 'train' and metric == 'accuracy'")
    assert train_acc.value.iloc[0] == pytest.approx((out.argmax(1) == y).mean())
    val = r.epochs.query("split == 'val' and metric == 'loss'").value
    assert val.iloc[-1] < val.iloc[0]        # gradient descent on it lowers it


def test_validation_every_n_steps_matches_the_epoch_evaluation_and_changes_no_training():
    base = RunConfig(depth=2, width=16, epochs=2, max_train=320, batch_size=32)  # 10 steps
    off, on = train(base), train(base.replace(eval_every=5))
    pd.testing.assert_frame_equal(off.steps, on.steps)
    pd.testing.assert_frame_equal(off.layers, on.layers)
    assert list(on.val_trace.step) == [0, 5, 10, 15, 20]
    assert off.val_trace.empty
    # digits' validation split is under VAL_TRACE_EXAMPLES: the subset is all of it, so the
    # trace at an epoch's end is that epoch's validation row.
    for epoch, step in ((0, 0), (1, 10), (2, 20)):
        row = on.val_trace.set_index("step").loc[step]
        ep = on.epochs.query("epoch == @epoch and split == 'val'").set_index("metric").value
        assert row.val_loss == pytest.approx(ep["loss"], rel=1e-5)
        assert row.val_accuracy == pytest.approx(ep["accuracy"])
    back = RunResult.from_dict(on.to_dict())
    pd.testing.assert_frame_equal(back.val_trace, on.val_trace, check_dtype=False)


def test_percentile_traces_match_numpy_on_the_same_tensors():
    cfg = RunConfig(**FULL_BATCH, activation="sigmoid", percentile_traces=True)
    _, hidden, _, _ = _initial_forward(cfg)
    r = train(cfg)
    units = traced_units([16, 16], cfg.seed)
    at0 = r.unit_preacts[r.unit_preacts.step == 0]
    for (z, a), name, chosen in zip(hidden, ("hidden1", "hidden2"), units):
        rows = at0[at0.layer == name]
        assert sorted(set(rows.unit)) == chosen and len(chosen) == 3
        for u in chosen:
            got = rows[rows.unit == u].sort_values("percentile").value.to_numpy()
            np.testing.assert_allclose(got, np.percentile(z[:, u], [15, 50, 85]), rtol=1e-5,
                                       atol=1e-6)
        p98 = r.act_percentiles.query("step == 0 and layer == @name").value.iloc[0]
        assert p98 == pytest.approx(np.percentile(a, 98), rel=1e-5)
    assert set(r.act_percentiles.step) == set(r.steps.step)   # record_every=1
    off = train(cfg.replace(percentile_traces=False))   # opt-in: the default records none
    assert off.unit_preacts.empty and off.act_percentiles.empty
    pd.testing.assert_frame_equal(off.layers, r.layers)  # and records the rest alike


@pytest.mark.parametrize("n", [1, 2, 1001, 5003])   # sorted whole, and by the tail (topk)
def test_percentiles_match_numpy(n):
    x = torch.randn(3, n, generator=torch.Generator().manual_seed(0))
    ps = (0.0, 2.0, 15.0, 50.0, 85.0, 98.0, 100.0)
    np.testing.assert_allclose(percentiles(x, ps).numpy(), np.percentile(x.numpy(), ps, axis=1),
                               rtol=1e-6, atol=1e-6)


def test_steps_to_target_is_the_first_full_window_at_or_below_the_target():
    steps = pd.DataFrame({"step": np.arange(30), "loss": np.r_[np.linspace(2, 0.1, 20),
                                                                 np.full(10, 0.1)]})
    smoothed = np.convolve(steps.loss, np.ones(10) / 10, mode="valid")   # windows ending at 9…
    expected = int(np.flatnonzero(smoothed <= 0.5)[0]) + 9
    assert steps_to_target(steps, 0.5) == expected
    assert steps_to_target(steps, 0.01) is None
    assert steps_to_target(steps.head(5), 10.0) is None     # fewer steps than the window


def test_a_run_with_a_loss_criterion_reports_its_step_and_stops_after_that_epoch():
    base = RunConfig(depth=1, width=16, epochs=10, max_train=320, batch_size=32, lr=0.01)
    r = train(base.replace(target_loss=0.5))   # reached in epoch 4 (measured)
    assert r.steps_to_target == steps_to_target(r.steps, 0.5)
    assert r.steps_to_target is not None and r.epochs_done < 10
    assert r.steps.step.max() == r.epochs_done * 10 - 1       # stopped at that epoch's end
    assert r.final("test", "accuracy") > 0.1 and r.status == "completed"
    assert train(base.replace(epochs=1, target_loss=1e-6)).steps_to_target is None
