"""Models: named layers, the right shapes, and init statistics that match nn.init's formulas."""

import math

import pytest
import torch
from torch import nn

from core.lab.config import RunConfig
from core.lab.models import build_model
from core.training import init_weights_, pytorch_default_bias_


def _model(**kw):
    cfg = RunConfig(**kw)
    shape = (1, 8, 8)
    return build_model(cfg, shape, 10), cfg


def test_mlp_layers_are_named_in_order():
    model, _ = _model(depth=4, width=32)
    assert list(model.layers) == ["hidden1", "hidden2", "hidden3", "hidden4", "output"]
    assert model(torch.zeros(5, 1, 8, 8)).shape == (5, 10)


def test_residual_blocks_add_their_input():
    model, _ = _model(model="residual_mlp", depth=3, width=16, activation="linear", init="zeros")
    x = torch.randn(4, 16)
    # With zero weights and biases, a residual block is the identity; a plain one gives zeros.
    assert torch.equal(model.layers["hidden2"](x), x)
    assert not model.layers["hidden1"].residual


def test_cnn_shapes_for_digits_and_mnist():
    cfg = RunConfig(model="cnn", depth=3, width=8)
    for shape in [(1, 8, 8), (1, 28, 28)]:
        model = build_model(cfg, shape, 10)
        assert list(model.layers) == ["conv1", "conv2", "conv3", "dense", "output"]
        assert model(torch.zeros(2, *shape)).shape == (2, 10)


@pytest.mark.parametrize("init,expected_std", [
    ("he_normal", lambda fan_in, fan_out: math.sqrt(2 / fan_in)),
    ("xavier_normal", lambda fan_in, fan_out: math.sqrt(2 / (fan_in + fan_out))),
    ("normal_small", lambda fan_in, fan_out: 0.01),
    ("normal_large", lambda fan_in, fan_out: 1.0),
    ("mean_field", lambda fan_in, fan_out: math.sqrt(3.0 / fan_in)),
    ("he_uniform", lambda fan_in, fan_out: math.sqrt(2 / fan_in)),
    ("xavier_uniform", lambda fan_in, fan_out: math.sqrt(2 / (fan_in + fan_out))),
])
def test_init_variances_follow_their_formulas(init, expected_std):
    model, _ = _model(depth=2, width=512, init=init, sigma_w2=3.0)
    w = model.layers["hidden2"].linear.weight
    assert w.std().item() == pytest.approx(expected_std(512, 512), rel=0.02)


def test_orthogonal_and_zero_inits():
    model, _ = _model(depth=2, width=64, init="orthogonal")
    w = model.layers["hidden2"].linear.weight.detach()
    assert torch.allclose(w @ w.T, torch.eye(64), atol=1e-4)
    model, _ = _model(depth=2, width=64, init="zeros")
    assert model.layers["hidden2"].linear.weight.abs().sum() == 0


def test_bias_inits():
    model, _ = _model(bias_init="constant", bias_value=0.1)
    assert torch.allclose(model.layers["hidden1"].linear.bias, torch.tensor(0.1))
    model, _ = _model(width=1024, bias_init="normal", bias_value=0.25)
    assert model.layers["hidden1"].linear.bias.std().item() == pytest.approx(0.5, rel=0.1)


@pytest.mark.parametrize("make", [lambda: nn.Linear(30, 7), lambda: nn.Conv2d(3, 5, 3)],
                         ids=["linear", "conv2d"])
def test_pytorch_default_draws_what_torch_draws(make):
    # torch's constructor calls reset_parameters(): the same generator state must give the
    # very same weights and biases.
    torch.manual_seed(11)
    layer = make()
    torch.manual_seed(11)
    w, b = torch.empty_like(layer.weight), torch.empty_like(layer.bias)
    init_weights_(w, "pytorch_default")
    pytorch_default_bias_(b, w)
    assert torch.equal(w, layer.weight) and torch.equal(b, layer.bias)


@pytest.mark.parametrize("kw", [dict(), dict(model="cnn", depth=2, width=8)], ids=["mlp", "cnn"])
def test_a_pytorch_default_model_is_torchs_reset_parameters(kw):
    cfg = RunConfig(init="pytorch_default", bias_init="pytorch_default", **kw)
    model = build_model(cfg, (1, 8, 8), 10)
    # Zero inits draw nothing, so torch's generator is where build_model left it before
    # initialising: reset_parameters() layer by layer must then draw the same numbers.
    want = build_model(cfg.replace(init="zeros", bias_init="zeros"), (1, 8, 8), 10)
    for layer in want.layers.values():
        layer.linear.reset_parameters()
    for name in model.layers:
        for p, q in zip(model.layers[name].linear.parameters(),
                        want.layers[name].linear.parameters()):
            assert torch.equal(p, q), name


def test_pytorch_default_statistics_are_uniform_over_one_over_root_fan_in():
    model, _ = _model(width=1024, init="pytorch_default", bias_init="pytorch_default")
    linear = model.layers["hidden2"].linear           # fan_in 1024
    bound = 1 / math.sqrt(1024)
    for p in (linear.weight, linear.bias):
        assert p.abs().max().item() <= bound
        assert p.var().item() == pytest.approx(bound ** 2 / 3, rel=0.05 if p.dim() == 1 else 0.01)
    # Biases follow bias_init: with its default they start at zero, as Glorot & Bengio's do.
    model, _ = _model(init="pytorch_default")
    assert model.layers["hidden1"].linear.bias.abs().sum() == 0


def test_same_seed_same_weights():
    a, _ = _model(seed=3)
    b, _ = _model(seed=3)
    c, _ = _model(seed=4)
    wa, wb, wc = (m.layers["hidden1"].linear.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_batch_norm_and_dropout_are_torch_modules():
    model, _ = _model(batch_norm=True, dropout=0.3)
    layer = model.layers["hidden1"]
    assert isinstance(layer.norm, torch.nn.BatchNorm1d)
    assert isinstance(layer.drop, torch.nn.Dropout) and layer.drop.p == 0.3
    assert model.layers["output"].norm is None and model.layers["output"].act is None
