"""`core.watch` on models no one here wrote, each statistic checked against a second computation:
by hand with torch functions (no modules, so no hook of the watch sees it), or by a hook of the
test's own on the module whose output the activation reads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from core.lab.doctor import diagnose
from core.watch import WatchedRun, load, watch
from tests.helpers import rows_with


def _digits(n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    bunch = load_digits()
    x = torch.tensor(bunch.data[:n] / 16.0, dtype=torch.float32)
    return x, torch.tensor(bunch.target[:n])


def _at(run: WatchedRun, step: int, layer: str, metric: str) -> float:
    rows = run.layers[(run.layers.step == step) & (run.layers.layer == layer)
                      & (run.layers.metric == metric)]
    assert len(rows) == 1, (step, layer, metric, len(rows))
    return float(rows.value.iloc[0])


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_mlp_statistics_match_a_hand_computation(device):
    """A 2-layer tanh MLP under SGD with momentum: weight-gradient norms, grad:data, the
    gradient at each layer's output, the optimizer's real update:data, drift and the saturated
    share, each recomputed from the weights with torch functions."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)).to(device)
    with torch.no_grad():
        model[0].weight.mul_(4.0)   # some units saturated, so the share is not trivially 0
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = (t.to(device) for t in _digits(256))
    w0 = [model[0].weight.detach().clone(), model[2].weight.detach().clone()]
    expected: dict[tuple[int, str, str], float] = {}
    with watch(model, opt, every=2) as w:
        for step in range(5):
            xb, yb = x[step * 32:(step + 1) * 32], y[step * 32:(step + 1) * 32]
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            w.after_backward(loss)
            if step % 2 == 0:
                W0, b0, W1, b1 = (p.detach().clone().requires_grad_() for p in
                                  (model[0].weight, model[0].bias, model[2].weight,
                                   model[2].bias))
                z0 = F.linear(xb, W0, b0)
                z1 = F.linear(torch.tanh(z0), W1, b1)
                gz0, gz1, gW0, gW1 = torch.autograd.grad(F.cross_entropy(z1, yb),
                                                         (z0, z1, W0, W1))
                # |tanh′(z)| = 1 − tanh² below 6% of its maximum, 1
                sat = ((1 - torch.tanh(z0) ** 2) < 0.06).float().mean()
                before = [W0.detach().clone(), W1.detach().clone()]
            opt.step()
            if step % 2 == 0:
                for name, W, g, gz, Wb, W_init in (("0", model[0].weight, gW0, gz0, before[0],
                                                    w0[0]),
                                                   ("2", model[2].weight, gW1, gz1, before[1],
                                                    w0[1])):
                    expected[(step, name, "weight_grad_norm")] = float(g.norm())
                    expected[(step, name, "grad_data_ratio")] = float(g.norm() / Wb.norm())
                    expected[(step, name, "out_grad_norm")] = float(gz.norm())
                    expected[(step, name, "update_data_ratio")] = float(
                        (W.detach() - Wb).norm() / Wb.norm())
                    expected[(step, name, "drift")] = float((W.detach() - W_init).norm()
                                                            / W_init.norm())
                expected[(step, "1", "saturation")] = float(sat)
    run = w.result()
    assert 0.05 < expected[(0, "1", "saturation")] < 0.95
    for (step, layer, metric), value in expected.items():
        assert _at(run, step, layer, metric) == pytest.approx(value, rel=1e-4, abs=1e-7), \
            (step, layer, metric)
    assert sorted(set(run.layers.step)) == [0, 2, 4]
    assert run.layer_names == ["0", "1", "2"]
    assert list(run.steps.step) == [0, 1, 2, 3, 4]
    assert run.config.activation == "tanh" and run.config.optimizer == "sgd"
    assert run.device.startswith(device)


def _encoder(activation: str = "relu") -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, activation=activation,
                                       batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


@pytest.mark.parametrize("activation, metric", [("relu", "inactive"), ("gelu", "inactive")])
def test_transformer_functional_activations_are_attributed_to_their_layer(activation, metric):
    """nn.TransformerEncoderLayer calls F.relu/F.gelu as functions, on linear1's output: the
    watch sees them inside `layers.<i>`, and their inactive share is the one a hook on linear1
    computes by hand."""
    torch.manual_seed(0)
    model = _encoder(activation)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    seen: dict[tuple[int, int], torch.Tensor] = {}
    step = 0
    threshold = 0.06 * (1.0 if activation == "relu" else 1.1289)   # max GELU′ ≈ 1.1289

    def hand(i):
        def hook(module, args, z):
            z = z.detach()
            if activation == "relu":
                seen[(step, i)] = (z <= 0).float().mean()
            else:
                cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
                slope = cdf + z * torch.exp(-z * z / 2) / math.sqrt(2 * math.pi)
                seen[(step, i)] = (slope.abs() < threshold).float().mean()
        return hook
    for i, layer in enumerate(model.layers):
        layer.linear1.register_forward_hook(hand(i))
    x = torch.randn(6, 8, 16)
    with watch(model, opt, every=3) as w:
        for step in range(4):
            opt.zero_grad()
            loss = model(x).pow(2).mean()
            loss.backward()
            w.after_backward(loss)
            opt.step()
    run = w.result()
    for s in (0, 3):
        for i in range(2):
            assert _at(run, s, f"layers.{i}", metric) == pytest.approx(float(seen[(s, i)]),
                                                                        abs=1e-6)
    names = run.layer_names
    assert names.index("layers.0.self_attn") < names.index("layers.0.self_attn.out_proj") \
        < names.index("layers.0.linear1") < names.index("layers.1.self_attn")
    # LayerNorm and the attention's projections are layers with weight statistics
    for layer in ("layers.0.norm1", "layers.1.norm2", "layers.0.self_attn",
                  "layers.0.self_attn.out_proj"):
        assert _at(run, 3, layer, "update_data_ratio") > 0
    assert run.config.activation == activation and run.config.batch_norm


class _Block(nn.Module):
    """A ResNet basic block as torchvision writes it: one in-place ReLU module called twice."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


def test_an_in_place_relu_called_twice_in_a_conv_block_is_measured_on_its_input():
    """In-place ReLU overwrites its input: its inactive share and pre-activation mean, pooled
    over both calls, equal a pre-hook's (the mean would be the output's if taken after)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), _Block(8), nn.Flatten(),
                          nn.Linear(8 * 64, 10))
    counts = {}
    step = 0

    def hand(module, args):
        z = args[0].detach()
        flat, total, n = counts.get(step, (0.0, 0.0, 0))
        counts[step] = (flat + float((z <= 0).sum()), total + float(z.sum()),
                        n + z.numel())
    model[1].relu.register_forward_pre_hook(hand)
    x, y = _digits(64)
    x = x.view(-1, 1, 8, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with watch(model, opt, every=2) as w:
        for step in range(3):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            w.after_backward(loss)
            opt.step()
    run = w.result()
    for s in (0, 2):
        flat, total, n = counts[s]
        assert _at(run, s, "1.relu", "inactive") == pytest.approx(flat / n)
        assert _at(run, s, "1.relu", "preact_mean") == pytest.approx(total / n, rel=1e-4)
    for layer in ("0", "1.conv1", "1.bn1", "1.conv2", "1.bn2", "3"):
        assert _at(run, 2, layer, "update_data_ratio") > 0
    assert run.layer_names == ["0", "1.conv1", "1.bn1", "1.relu", "1.conv2", "1.bn2", "3"]


def _mlp(activation: type[nn.Module], he: bool, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for fan_in in [64] + [64] * 9:
        layers += [nn.Linear(fan_in, 64), activation()]
    model = nn.Sequential(*layers, nn.Linear(64, 10))
    if he:
        for m in model:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
    return model


def _train(model: nn.Module, steps: int = 20, every: int = 5) -> WatchedRun:
    x, y = _digits(steps * 16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with watch(model, opt, every=every, probe=x[:256]) as w:
        for s in range(steps):
            opt.zero_grad()
            loss = F.cross_entropy(model(x[s * 16:(s + 1) * 16]), y[s * 16:(s + 1) * 16])
            loss.backward()
            w.after_backward(loss)
            opt.step()
    return w.result()


@pytest.mark.parametrize("seed", range(5))
def test_the_doctor_finds_a_deep_sigmoid_mlp_vanishing_and_a_relu_he_one_healthy(seed):
    sick = _train(_mlp(nn.Sigmoid, he=False, seed=seed))
    assert "vanishing" in {f.id for f in diagnose(sick)}
    assert sick.depth_ratio(0) < 1e-3
    healthy = _train(_mlp(nn.ReLU, he=True, seed=seed))
    found = diagnose(healthy)
    assert not [f for f in found if f.severity == "error"], found
    assert 0.1 < healthy.depth_ratio(0) < 10


def test_dead_units_match_a_hand_computation_on_the_probe():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        model[0].bias[:12] -= 5.0    # these units never fire on digits
    x, y = _digits(256)
    hand = (F.linear(x, model[0].weight, model[0].bias) <= 0).all(0).float().mean()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with watch(model, opt, every=2, probe=x) as w:
        for _ in range(3):
            opt.zero_grad()
            loss = F.cross_entropy(model(x[:32]), y[:32])
            loss.backward()
            w.after_backward(loss)
            opt.step()
    end = (F.linear(x, model[0].weight, model[0].bias) <= 0).all(0).float().mean()
    run = w.result()
    assert float(hand) >= 12 / 32
    assert _at(run, 0, "1", "dead") == pytest.approx(float(hand))
    assert _at(run, 2, "1", "dead") == pytest.approx(float(end))


def test_the_doctor_names_one_dead_layer_in_an_otherwise_healthy_model():
    """A 10-layer ReLU MLP under He init, three quarters of its last hidden layer's biases set to
    -5: those units never fire on digits, and the nine layers before barely lose a unit. The mean over the layers stays under the doctor's
    25%, so only the one-layer rule finds it; its share is recomputed from the probe by hand."""
    model = _mlp(nn.ReLU, he=True, seed=0)
    with torch.no_grad():
        model[18].bias[:48] = -5.0    # the tenth Linear's: its ReLU is module "19"
    run = _train(model)
    x, _ = _digits(256)
    with torch.no_grad():
        hand = float((model[:19](x) <= 0).all(0).float().mean())
    dead = run.layers[(run.layers.metric == "dead") & (run.layers.step == run.layers.step.max())]
    shares = dead.set_index("layer").value
    assert hand > 0.5 and shares["19"] == pytest.approx(hand)
    assert shares.mean() < 0.25 and shares.drop("19").max() < 0.5
    found = {f.id: f for f in diagnose(run)}
    assert found["dead"].evidence.startswith(
        f"{hand:.0%} of layer 19's ReLUs are dead from initialisation on "
        f"({shares.mean():.1%} over all hidden layers)"), found["dead"].evidence
    # 24.9% read "25%", beside a limit of "above 25% on average".
    assert f"{shares.mean():.0%}" == "25%"


def _hook_count(model: nn.Module, opt: torch.optim.Optimizer) -> int:
    return (sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                for m in model.modules())
            + len(opt._optimizer_step_pre_hooks) + len(opt._optimizer_step_post_hooks))


@pytest.mark.parametrize("fail_at", [None, 0, 2])
def test_every_hook_is_removed_on_exit_also_after_an_error(fail_at):
    """Also when the loop raises in the middle of a recorded step's forward (step 0) or of an
    unrecorded one: no hook is left and the activation mode is off."""
    torch.manual_seed(0)
    model = _encoder()
    opt = torch.optim.Adam(model.parameters())
    before = _hook_count(model, opt)

    def boom(module, args):
        if step == fail_at:
            raise RuntimeError("the user's loop failed")
    model.layers[1].linear1.register_forward_pre_hook(boom)
    before += 1
    x = torch.randn(2, 4, 16)
    with pytest.raises(RuntimeError) if fail_at is not None else _nothing():
        with watch(model, opt, every=2) as w:
            for step in range(4):
                opt.zero_grad()
                loss = model(x).sum()
                loss.backward()
                w.after_backward(loss)
                opt.step()
    assert _hook_count(model, opt) == before
    assert torch._C._len_torch_function_stack() == 0
    run = w.result()
    assert run.status == ("completed" if fail_at is None else "stopped")
    assert len(run.steps) == (4 if fail_at is None else fail_at)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("where", ["output", "gradient"])
def test_a_non_finite_value_is_reported_at_its_first_step_and_module(where):
    """An inf put before step 3 (not a recorded step) into the second Linear's weight, or into
    its weight's gradient alone (the loss and every output stay finite): the divergence names
    step 3, that module and where, and the doctor calls the run diverged."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = _digits(64)
    step = 0
    if where == "gradient":
        model[2].weight.register_hook(lambda g: g + math.inf if step >= 3 else g)
    with watch(model, opt, every=5) as w:
        for step in range(7):
            if step == 3 and where == "output":
                with torch.no_grad():
                    model[2].weight[0, 0] = math.inf
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            w.after_backward(loss)
            if step < 3 or where == "output":
                opt.step()
    run = w.result()
    assert run.status == "diverged"
    assert (run.divergence["step"], run.divergence["layer"], run.divergence["where"]) == \
        (3, "2", where)
    assert run.steps.step.max() == 3 and math.isfinite(run.steps.loss.iloc[2])
    assert diagnose(run)[0].id == "diverged"


def test_clipping_by_the_loop_is_seen_and_the_norm_is_taken_before_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = _digits(64)
    norms = []
    with watch(model, opt, every=1) as w:
        for clip in (1e-3, 1e3):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            w.after_backward(loss)
            norms.append(float(nn.utils.clip_grad_norm_(model.parameters(), clip)))
            opt.step()
    run = w.result()
    assert list(run.steps.clipped) == [1.0, 0.0]
    assert list(run.steps.grad_norm) == pytest.approx(norms, rel=1e-5)


def test_autocast_statistics_are_finite_and_match_float32_closely():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 10))
    x, y = _digits(64)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)   # the same weights for both passes
    runs = []
    for mixed in (False, True):
        with watch(model, opt, every=1) as w:
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            w.after_backward(loss)
            opt.step()
        runs.append(w.result())
    full, half = (r.layers.set_index(["layer", "metric"]).value for r in runs)
    assert np.isfinite(half.drop(index="update_data_ratio", level="metric")).all()
    assert half.loc[("0", "weight_grad_norm")] == pytest.approx(full.loc[("0", "weight_grad_norm")],
                                                               rel=0.05)
    assert half.loc[("1", "inactive")] == pytest.approx(full.loc[("1", "inactive")], abs=0.05)


def test_a_run_saves_and_loads_and_a_bad_file_gets_one_message(tmp_path):
    run = _train(_mlp(nn.ReLU, he=True, seed=0), steps=3, every=2)
    path = tmp_path / "run.json"
    run.save(path)
    back = load(path)
    assert back.config == run.config and back.layer_names == run.layer_names
    assert back.layers.equals(run.layers) or np.allclose(back.layers.value, run.layers.value,
                                                         equal_nan=True)
    assert diagnose(back) == diagnose(run)
    (tmp_path / "bad.json").write_text('{"kind": "lab"}')
    with pytest.raises(ValueError, match="not a watched run"):
        load(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("\x00junk")
    with pytest.raises(ValueError, match="not a JSON file"):
        load(tmp_path / "junk.json")


def test_bad_arguments_name_the_setting():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="every: a whole number"):
        watch(model, every=0)
    with pytest.raises(TypeError, match="optimizer: a torch.optim.Optimizer"):
        watch(model, "adam")
    with pytest.raises(ValueError, match="model: it has no trainable parameters"):
        watch(nn.ReLU())
    w = watch(model)
    with w, pytest.raises(RuntimeError, match="result: call it after"):
        w.result()


def test_the_labs_per_layer_charts_draw_a_watched_run():
    """The charts that apply to any network read a watched run's tables: each draws its metric's
    rows for the run's layers."""
    from core.lab import charts

    run = _train(_mlp(nn.ReLU, he=True, seed=0), steps=6, every=2)
    for build, metric in ((charts.grad_norm_heatmap, "weight_grad_norm"),
                          (charts.ratios, "update_data_ratio"), (charts.flat_dead, "inactive"),
                          (charts.flat_dead, "dead")):
        drawn = {r["layer"] for r in rows_with(build(run).to_dict(), "layer", "value")
                 if r.get("metric", metric) == metric}
        expected = set(run.layers[run.layers.metric == metric].layer)
        assert expected and drawn >= expected, (build.__name__, metric, drawn)


def test_watching_imports_nothing_heavy_beyond_torch():
    """A practitioner's training job imports core.watch: no Streamlit, scikit-learn or Altair
    comes with it (pandas and numpy hold the tables)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, core.watch\n"
            "print(sorted({m.split('.')[0] for m in sys.modules}"
            " & {'streamlit', 'sklearn', 'altair', 'scipy', 'matplotlib'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
