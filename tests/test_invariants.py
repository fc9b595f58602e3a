"""Pinned invariants: what users hold must survive any refactoring of the machinery.

A stored run is found by its key and a shared link is a set of query parameters, so both are
pinned here as literal values computed once, before the one-machinery move (issue 12): a change
to any of them orphans every run in every store, or breaks every link already shared. Bump a
family's SCHEMA_VERSION on purpose, and change these values in the same commit, or not at all.
"""

from __future__ import annotations

import pytest

from core.attention.config import AttentionConfig
from core.lab.config import RunConfig
from core.lab.sweep import KEY_PREFIX as SWEEP_PREFIX
from core.lab.sweep import SweepSpec
from core.optimizers.race import RaceConfig, defaults_for
from core.recurrent.config import RecurrentConfig

# name -> (config, key, store key or None, link parameters)
# The Lab's keys changed on purpose with RunConfig.SCHEMA_VERSION 5 (issue 13): the new `eps`
# field and the `pytorch_default` inits enter every key, and results gained content; the links
# did not change (a link without the new settings opens with their defaults). They changed again
# on purpose with SCHEMA_VERSION 6 (issue 15): histograms binned per snapshot and a finer decision
# boundary grid change what a stored result holds; the links did not change. And again with
# SCHEMA_VERSION 7 (issues 16 and 17): the new bias, loss, eval_every, target_loss and
# sharpness_every and percentile_traces fields enter every key, and results gained percentile and validation traces and
# the sharpness table; the links did not change.
PINNED = {
    "run default": (RunConfig(), "385e523ba9ad459239a6", None, {}),
    "run vanishing": (
        RunConfig(depth=10, activation="sigmoid", optimizer="sgd", lr=0.1, epochs=5),
        "16d272bc330ac4d886ad", None,
        {"depth": "10", "activation": "sigmoid", "optimizer": "sgd", "lr": "0.1", "epochs": "5"}),
    "run every kind of field": (
        RunConfig(dataset="fashion-mnist", model="cnn", depth=2, width=16, max_train=2000,
                  clip_norm=1.0, record_every=5, patience=3, batch_norm=True,
                  bias_init="normal", bias_value=0.05, init="mean_field", sigma_w2=1.5),
        "d4aab17d25479379c408", None,
        {"dataset": "fashion-mnist", "max_train": "2000", "model": "cnn", "depth": "2",
         "width": "16", "init": "mean_field", "sigma_w2": "1.5", "bias_init": "normal",
         "bias_value": "0.05", "batch_norm": "true", "patience": "3", "clip_norm": "1.0",
         "record_every": "5"}),
    "run PyTorch's init, RMSprop's ε": (
        RunConfig(init="pytorch_default", bias_init="pytorch_default", optimizer="rmsprop",
                  eps=1e-12),
        "4a13a25cb2bd39a80032", None,
        {"init": "pytorch_default", "bias_init": "pytorch_default", "optimizer": "rmsprop",
         "eps": "1e-12"}),
    "recurrent default": (RecurrentConfig(), "2aae033dd18f19626cbf",
                          "rnn-2aae033dd18f19626cbf", {}),
    "recurrent lstm, empty optionals": (
        RecurrentConfig(cell="lstm", sequence="chunks", chunk=16, dataset="mnist",
                        forget_bias=None, clip_norm=1.0, max_train=None),
        "c9bdc6a5591382d5977e", "rnn-c9bdc6a5591382d5977e",
        {"dataset": "mnist", "sequence": "chunks", "max_train": "all", "cell": "lstm",
         "forget_bias": "none", "clip_norm": "1.0"}),
    "attention default": (AttentionConfig(), "8638a445bbab30590cff",
                          "attn-8638a445bbab30590cff", {}),
    "attention unscaled": (
        AttentionConfig(d=256, scaled=False, tokens="patch4", max_train=500),
        "a90a58e5f68d01d58792", "attn-86a8589acf0f30c0f601",
        {"tokens": "patch4", "d": "256", "scaled": "false", "max_train": "500"}),
    "race default": (RaceConfig(), "85eaa8707f2904b3e082", None, {}),
    "race rosenbrock": (
        defaults_for("rosenbrock").replace(adam=False, sgd_lr=0.002, x0=-1.0),
        "d62c52a8a658f80d1d61", None,
        {"surface": "rosenbrock", "x0": "-1.0", "sgd_lr": "0.002", "adam": "false"}),
}


@pytest.mark.parametrize("name", PINNED)
def test_keys_are_pinned(name):
    cfg, key, store_key, _ = PINNED[name]
    assert cfg.key() == key
    if store_key is not None:
        assert cfg.store_key() == store_key


@pytest.mark.parametrize("name", PINNED)
def test_links_are_pinned_and_round_trip(name):
    cfg, _, _, params = PINNED[name]
    assert cfg.to_params() == params
    assert type(cfg).from_params(params) == cfg
    assert type(cfg).from_params_lenient(params) == (cfg, [])


def test_attention_store_key_ignores_which_variant_is_highlighted():
    assert (AttentionConfig(scaled=False).store_key()
            == AttentionConfig(scaled=True).store_key())


def test_sweep_cells_and_link_are_pinned():
    spec = SweepSpec()
    assert spec.to_params() == {"x": "depth", "xv": "2,4,8", "y": "activation",
                                "yv": "relu,tanh"}
    assert SweepSpec.from_params(spec.to_params()) == spec
    assert SWEEP_PREFIX == "sweep-"
    keys = [c.key() for c in spec.cells()]
    # Changed with RunConfig.SCHEMA_VERSION 5, 6 and 7 (the run keys above say why).
    assert keys[:3] == ["542af2c52b57197fe23b", "385e523ba9ad459239a6", "55eb332f974ac7f30d81"]


# A bad link opens with the valid settings kept, defaults for the rest, and one warning per
# value dropped that names the setting.
LENIENT = [
    (RunConfig, {"depth": "500", "lr": "banana", "model": "cnn", "dataset": "moons"},
     RunConfig(dataset="moons"), ["depth", "lr", "model"]),
    (RecurrentConfig, {"hidden": "0", "sequence": "chunks", "chunk": "5", "cell": "x"},
     RecurrentConfig(sequence="chunks"), ["hidden", "cell", "chunk"]),
    (AttentionConfig, {"d": "9999", "scaled": "maybe"}, AttentionConfig(), ["d", "scaled"]),
    (RaceConfig, {"surface": "rosenbrock", "x0": "99", "adam_lr": "-1"},
     defaults_for("rosenbrock"), ["x0", "adam_lr"]),
    (SweepSpec, {"x": "depth", "xv": "2,banana,8", "y": "nope"},
     SweepSpec(x_values=(2, 8)), ["y", "depth"]),
]


@pytest.mark.parametrize("cls, params, expected, named", LENIENT,
                         ids=[c[0].__name__ for c in LENIENT])
def test_bad_links_fall_back_with_one_warning_per_setting(cls, params, expected, named):
    cfg, warnings = cls.from_params_lenient(params)
    assert cfg == expected
    assert len(warnings) == len(named)
    for warning, name in zip(warnings, named):
        assert name in warning and "using" in warning or "dropped" in warning
