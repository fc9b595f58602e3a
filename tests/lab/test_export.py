"""The exported PyTorch script: valid for every option, standalone, and the same network and run."""

import ast
import math
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from core.activations import ACTIVATIONS
from core.data.datasets import DATASETS, IMAGE_DATASETS
from core.lab.config import BIAS_INITS, DEVICES, FIELDS, INITS, SCHEDULES, RunConfig
from core.lab.export import pytorch_script, script_filename
from core.lab.models import build_model
from core.lab.trainer import train
from core.training import loss_of
from core.optimizer_choices import OPTIMIZERS

INPUT_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28)}
SMALL = dict(depth=2, width=8)


def _spread() -> list[RunConfig]:
    """Every value of every choice field at least once, plus the on/off switches."""
    kws = [dict(activation=a) for a in ACTIVATIONS]
    kws += [dict(init=i) for i in INITS]
    kws += [dict(optimizer=o, weight_decay=0.01) for o in OPTIMIZERS]
    kws += [dict(schedule=s) for s in SCHEDULES]
    kws += [dict(bias_init=b, bias_value=0.2) for b in BIAS_INITS]
    kws += [dict(device=d) for d in DEVICES]
    kws += [dict(dataset=d) for d in DATASETS]
    kws += [dict(clip_norm=1.0), dict(clip_value=0.5), dict(max_train=100)]
    kws += [dict(bias=False, bias_init="constant", bias_value=0.2), dict(loss="mse", patience=2),
            dict(model="cnn", bias=False)]
    for model in ("mlp", "residual_mlp", "cnn"):
        kws += [dict(model=model, batch_norm=True, dropout=0.2, schedule="cyclic"),
                dict(model=model, activation="linear", init="orthogonal", depth=4)]
    kws += [dict(model="cnn", dataset=d, depth=5) for d in ("mnist", "fashion-mnist")]
    kws += [dict(model="residual_mlp", dataset="spiral", batch_norm=True, schedule="cosine")]
    return [RunConfig(**{**SMALL, **kw}) for kw in kws]


SPREAD = _spread()


def _id(cfg: RunConfig) -> str:
    return ",".join(f"{k}={v}" for k, v in cfg.changed().items() if k not in SMALL) or "defaults"


def _code(src: str) -> str:
    """The script without its header docstring (which lists every field)."""
    return src.split('"""', 2)[2]


def _load(cfg: RunConfig) -> dict:
    """Exec the script as a module (not as __main__): defines build_model(), trains nothing."""
    namespace = {"__name__": "exported_script"}
    exec(compile(pytorch_script(cfg), script_filename(cfg), "exec"), namespace)
    return namespace


def _core_model(cfg: RunConfig) -> torch.nn.Module:
    shape = INPUT_SHAPES.get(cfg.dataset, (2,))
    return build_model(cfg, shape, 10 if cfg.dataset in IMAGE_DATASETS else 2)


def _leaves(model: torch.nn.Module) -> list[str]:
    # Core flattens inside its first layer; the script uses an explicit nn.Flatten.
    return [repr(m) for m in model.modules()
            if not list(m.children()) and not isinstance(m, torch.nn.Flatten)]


def _start(cfg: RunConfig, tmp_path) -> subprocess.Popen:
    """Start the script as a user would: `python saturation_lab_xxx.py` in a fresh folder."""
    path = tmp_path / script_filename(cfg)
    path.write_text(pytorch_script(cfg))
    # One thread: this test shares two cores with the in-process run (and maybe others).
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, path.name], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _assert_close_to_core(cfg: RunConfig, tmp_path, *, above: float) -> None:
    script = _start(cfg, tmp_path)
    try:
        result = train(cfg)  # overlaps with the script's start-up (importing torch)
        out, err = script.communicate(timeout=180)
    finally:
        script.kill()
    assert script.returncode == 0, err[-3000:]
    val = [float(v) for v in re.findall(r"val accuracy ([0-9.]+)", out)]
    test = re.search(r"^test accuracy ([0-9.]+)$", out, re.MULTILINE)
    assert len(val) == cfg.epochs and test, out
    assert result.status == "completed"
    core_val = result.epochs.query("split == 'val' and metric == 'accuracy' and epoch > 0")
    # Not exact in general (thread counts, devices); on one CPU it tracks core closely.
    assert val == pytest.approx(core_val.sort_values("epoch").value.tolist(), abs=0.05)
    assert float(test.group(1)) == pytest.approx(result.final("test", "accuracy"), abs=0.05)
    assert float(test.group(1)) > above


# --------------------------------------------------------------------------- source


@pytest.mark.parametrize("cfg", SPREAD, ids=_id)
def test_script_compiles_is_standalone_and_tidy(cfg):
    src = pytorch_script(cfg)
    tree = ast.parse(compile(src, script_filename(cfg), "exec", ast.PyCF_ONLY_AST))
    assert cfg.key() in src and f"python {script_filename(cfg)}" in src
    # Standalone: nothing from Saturation Lab, only the libraries the brief allows.
    roots = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    roots |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom)}
    assert roots <= {"math", "collections", "numpy", "torch", "sklearn", "torchvision"}
    assert ("torchvision" in roots) == (cfg.dataset in ("mnist", "fashion-mnist"))
    # PEP 8-ish: short lines, no trailing spaces, every imported name used.
    assert all(len(line) <= 79 and line == line.rstrip() for line in src.splitlines())
    imported = {(a.asname or a.name).split(".")[0] for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert imported <= used
    # The header lists every field with its value.
    for name in FIELDS:
        assert re.search(rf"^    {name} +=", src, re.MULTILINE), name
        assert f"= {getattr(cfg, name)!r}" in src


def test_filename_uses_the_key():
    cfg = RunConfig(depth=7)
    assert script_filename(cfg) == f"saturation_lab_{cfg.key()[:8]}.py"
    assert script_filename(cfg) != script_filename(RunConfig(depth=8))


def test_only_the_configured_branches_are_written():
    src = _code(pytorch_script(RunConfig(activation="sigmoid", optimizer="sgd", lr=0.1)))
    assert "nn.Sigmoid()" in src and "torch.optim.SGD(" in src
    for absent in ("nn.ReLU", "nn.Tanh", "torch.optim.Adam", "lr_scheduler", "clip_grad",
                   "BatchNorm", "Dropout", "Residual", "momentum"):
        assert absent not in src, absent
    src = _code(pytorch_script(RunConfig(model="residual_mlp", batch_norm=True, dropout=0.3,
                                         optimizer="adamw", schedule="exponential",
                                         clip_norm=2.0, init="mean_field")))
    for present in ("class Residual", "nn.BatchNorm1d(WIDTH)", "nn.Dropout(DROPOUT)",
                    "torch.optim.AdamW(", "ExponentialLR(", "clip_grad_norm_(",
                    "math.sqrt(SIGMA_W2 / fan_in)", "zero_grad(set_to_none=True)"):
        assert present in src, present
    assert "nn.init.kaiming" not in src and "clip_grad_value_" not in src


# --------------------------------------------------------------------------- the network


@pytest.mark.parametrize("cfg", SPREAD, ids=_id)
def test_script_builds_the_same_network_with_the_same_init(cfg):
    built = _load(cfg)["build_model"]
    torch.manual_seed(cfg.seed)  # the script's main() seeds before building
    mine, core = built(), _core_model(cfg)
    assert _leaves(mine) == _leaves(core)
    mine_p, core_p = list(mine.parameters()), list(core.parameters())
    assert [p.shape for p in mine_p] == [p.shape for p in core_p]
    assert sum(p.numel() for p in mine_p) == sum(p.numel() for p in core_p)
    # Same creation order and init calls after the same seed: the very same initial weights.
    assert all(torch.equal(a, b) for a, b in zip(mine_p, core_p))


@pytest.mark.parametrize("kw", [
    dict(model="mlp", depth=3, width=16),
    dict(model="residual_mlp", depth=4, width=16, batch_norm=True),
    dict(model="cnn", depth=3, width=8),
    dict(model="cnn", depth=6, width=4, batch_norm=True, dataset="mnist"),
])
def test_architecture_matches_core_and_forwards(kw):
    cfg = RunConfig(**kw)
    model, core = _load(cfg)["build_model"](), _core_model(cfg)
    assert [p.shape for p in model.parameters()] == [p.shape for p in core.parameters()]
    names = [n for n, _ in model.named_children() if n != "flatten"]
    assert names == list(core.layers)  # hidden1 … / conv1 … dense, output
    x = torch.zeros(3, *INPUT_SHAPES[cfg.dataset])
    assert model(x).shape == core(x).shape == (3, 10)
    if cfg.model == "residual_mlp":
        assert [type(m).__name__ for m in model.children()][2:4] == ["Residual", "Residual"]


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_the_scripts_loss_is_cores(loss):
    cfg = RunConfig(depth=1, width=8, loss=loss, patience=2)
    script = _load(cfg)
    model = script["build_model"]()
    x = torch.randn(50, 64, generator=torch.Generator().manual_seed(0))
    y = torch.arange(50) % 10
    with torch.no_grad():
        expected = loss_of(loss, model(x), y).item()
    assert script["mean_loss"](model, x, y) == pytest.approx(expected, rel=1e-5)


def test_mean_field_hidden_weights_have_the_configured_std():
    cfg = RunConfig(init="mean_field", sigma_w2=3.0, depth=2, width=512)
    model = _load(cfg)["build_model"]()
    w = model.hidden2.linear.weight
    assert w.std().item() == pytest.approx(math.sqrt(3.0 / 512), rel=0.02)
    assert w.mean().item() == pytest.approx(0.0, abs=0.002)


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_torchvision_data_is_split_like_core(dataset, monkeypatch):
    """The MNIST branch, run against a stand-in torchvision (the real one is not installed)."""
    class FakeSet:
        def __init__(self, root, train, download):
            n = 5_300 if train else 200
            gen = torch.Generator().manual_seed(1 if train else 2)
            self.data = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=gen)
            self.targets = torch.arange(n) % 10

    datasets = types.ModuleType("torchvision.datasets")
    datasets.MNIST = datasets.FashionMNIST = FakeSet
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)
    cfg = RunConfig(dataset=dataset, seed=3, max_train=250)
    (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = _load(cfg)["load_data"]()
    assert x_tr.shape == (250, 1, 28, 28) and x_val.shape == (5_000, 1, 28, 28)
    assert x_te.shape == (200, 1, 28, 28) and x_tr.dtype == np.float32
    # Validation = the first 5,000 of a seeded permutation of the training set, as in core.
    order = np.random.default_rng(3).permutation(5_300)
    targets = np.arange(5_300) % 10
    assert np.array_equal(y_val, targets[order[:5_000]])
    assert np.array_equal(y_tr, targets[order[5_000:5_250]])
    assert abs(x_tr.mean()) < 1e-3 and x_tr.std() == pytest.approx(1.0, abs=1e-3)


# --------------------------------------------------------------------------- running it


def test_digits_script_trains_like_core(tmp_path):
    _assert_close_to_core(RunConfig(depth=2, width=32, epochs=3, lr=0.01), tmp_path, above=0.8)


def test_moons_script_trains_like_core(tmp_path):
    cfg = RunConfig(dataset="moons", depth=2, width=16, epochs=4, lr=0.01, batch_norm=True,
                    dropout=0.1, schedule="cyclic", clip_norm=1.0)
    _assert_close_to_core(cfg, tmp_path, above=0.75)


def test_cnn_script_trains_like_core(tmp_path):
    cfg = RunConfig(model="cnn", depth=2, width=16, epochs=2, lr=0.01, batch_norm=True,
                    schedule="cosine", clip_value=1.0)
    _assert_close_to_core(cfg, tmp_path, above=0.6)
