"""Settings without effect (`RunConfig.inert`): each one really trains identically whatever its
value, and changes the run once the option that reads it is chosen; Compare leaves them out."""

import pandas as pd
import pytest

from core.lab.compare import differences
from core.lab.config import RunConfig
from core.lab.trainer import train

TINY = RunConfig(depth=1, width=8, epochs=2, max_train=200, batch_size=32)

# setting, two of its values, the options that leave it inert, the options that make it count
CASES = [
    ("noise", 0.1, 0.5, {"dataset": "digits"}, {"dataset": "moons"}),
    ("sigma_w2", 0.5, 4.0, {"init": "he_normal"}, {"init": "mean_field"}),
    ("bias_value", 0.0, 0.5, {"bias_init": "pytorch_default"}, {"bias_init": "constant"}),
    ("bias_init", "zeros", "pytorch_default", {"bias": False}, {"bias": True}),
    ("momentum", 0.5, 0.95, {"optimizer": "adam"}, {"optimizer": "momentum", "lr": 0.05}),
    ("beta1", 0.5, 0.99, {"optimizer": "rmsprop"}, {"optimizer": "adam"}),
    ("beta2", 0.9, 0.999, {"optimizer": "nesterov", "lr": 0.05}, {"optimizer": "rmsprop"}),
    ("eps", 1e-8, 0.1, {"optimizer": "adagrad", "lr": 0.05}, {"optimizer": "adam"}),
    ("lr_decay", 0.9, 0.3, {"schedule": "cosine"}, {"schedule": "exponential"}),
]


def _outcome(cfg: RunConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    r = train(cfg)
    return r.epochs, r.layers


@pytest.mark.parametrize("name,v1,v2,off,on", CASES, ids=[c[0] for c in CASES])
def test_an_inert_setting_changes_nothing_and_counts_once_its_option_is_chosen(
        name, v1, v2, off, on):
    inert_cfg = TINY.replace(**off)
    assert name in inert_cfg.inert() and name not in TINY.replace(**on).inert()
    a, b = (_outcome(inert_cfg.replace(**{name: v})) for v in (v1, v2))
    pd.testing.assert_frame_equal(a[0], b[0])   # losses and accuracies, every epoch
    pd.testing.assert_frame_equal(a[1], b[1])   # per-layer statistics, every record
    c, d = (_outcome(TINY.replace(**on, **{name: v})) for v in (v1, v2))
    assert not c[0].equals(d[0])


def test_the_defaults_leave_only_settings_of_options_not_chosen():
    # Adam, constant schedule, He init, zero biases, digits.
    assert set(RunConfig().inert()) == {"noise", "sigma_w2", "bias_value", "momentum",
                                        "lr_decay"}
    every_option = RunConfig(dataset="moons", init="mean_field", bias_init="normal",
                             optimizer="adam", schedule="exponential")
    assert set(every_option.inert()) == {"momentum"}
    assert "mean_field" in RunConfig().inert()["sigma_w2"]   # the why names what would use it


def test_compare_leaves_out_what_neither_run_uses_and_shows_one_sided_use():
    a = RunConfig(optimizer="adam", momentum=0.5, lr_decay=0.5)
    b = RunConfig(optimizer="adam", momentum=0.9, lr_decay=0.8, depth=3)
    assert list(differences(a, b).setting) == ["depth"]
    c = RunConfig(optimizer="momentum", momentum=0.5)
    diff = differences(c, b)
    row = diff[diff.setting == "momentum"].iloc[0]
    assert row.A == "0.5" and row.B == "unused"
