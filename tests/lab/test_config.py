"""RunConfig: validation names the field, the key is stable, every round trip is lossless."""

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.lab.config import FIELDS, ConfigError, RunConfig
from core.settings import describe, field_kind, is_optional


def test_defaults_are_valid_and_frozen():
    cfg = RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.depth = 3
    assert hash(cfg) == hash(RunConfig())


@pytest.mark.parametrize("field,value,words", [
    ("depth", 0, ["depth", "1 to 100"]),
    ("depth", 101, ["depth", "1 to 100"]),
    ("width", 5000, ["width", "1 to 1024"]),
    ("epochs", 1000, ["epochs", "1 to 200"]),
    ("max_train", 10**7, ["max_train", "60000"]),
    ("activation", "banana", ["activation", "relu", "tanh"]),
    ("init", "he", ["init", "he_normal"]),
    ("optimizer", "lbfgs", ["optimizer", "adamw"]),
    ("schedule", "step", ["schedule", "cosine"]),
    ("lr", 0.0, ["lr"]),
    ("lr", float("nan"), ["lr"]),
    ("dropout", 0.95, ["dropout", "0.9"]),
    ("batch_norm", "yes", ["batch_norm", "true or false"]),
    ("depth", 2.5, ["depth", "integer"]),
    ("device", "tpu", ["device", "cuda"]),
    ("dataset", "cifar", ["dataset", "fashion-mnist"]),
])
def test_invalid_values_name_the_field_and_the_allowed_values(field, value, words):
    with pytest.raises(ConfigError) as err:
        RunConfig(**{field: value})
    assert err.value.field == field
    for word in words:
        assert word in str(err.value)


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="clip_value.*not both"):
        RunConfig(clip_norm=1.0, clip_value=0.5)
    with pytest.raises(ConfigError, match="image dataset"):
        RunConfig(model="cnn", dataset="moons")
    with pytest.raises(ConfigError, match="at most 6 conv"):
        RunConfig(model="cnn", depth=10)
    with pytest.raises(ConfigError, match="batch_size"):
        RunConfig(batch_norm=True, batch_size=1)


def test_ints_given_as_whole_floats_are_normalised():
    assert RunConfig(depth=3.0).depth == 3 and isinstance(RunConfig(depth=3.0).depth, int)
    assert isinstance(RunConfig(lr=1).lr, float)


def test_key_is_stable_and_changes_with_any_field_and_the_schema(monkeypatch):
    a, b = RunConfig(depth=3), RunConfig(depth=3)
    assert a.key() == b.key()
    assert len(a.key()) == 20 and int(a.key(), 16) >= 0
    seen = {RunConfig().key()}
    for name, f in FIELDS.items():
        other = _other_value(f)
        try:
            cfg = RunConfig(**{name: other})
        except ConfigError:
            continue  # e.g. model=cnn needs more than one change
        seen.add(cfg.key())
    assert len(seen) > len(FIELDS) - 3  # (almost) every single-field change gives a new key
    before = a.key()
    monkeypatch.setattr(RunConfig, "SCHEMA_VERSION", RunConfig.SCHEMA_VERSION + 1)
    assert RunConfig(depth=3).key() != before


def _other_value(f):
    m = f.metadata
    kind = field_kind(f)
    if m["choices"]:
        return m["choices"][1] if m["choices"][0] == f.default else m["choices"][0]
    if kind is bool:
        return not f.default
    if f.default is None:
        return m["lo"] if kind is float else max(int(m["lo"]), 2)
    return m["hi"] if f.default != m["hi"] else m["lo"]


def test_json_and_flat_string_round_trips():
    cfg = RunConfig(depth=7, activation="tanh", batch_norm=True, clip_norm=0.5, lr=3e-4,
                    max_train=500, record_every=3)
    assert RunConfig.from_json(cfg.to_json()) == cfg
    params = cfg.to_params()
    assert all(isinstance(v, str) for v in params.values())
    assert RunConfig.from_params(params) == cfg
    assert RunConfig.from_params(cfg.to_params(only_changed=False)) == cfg
    assert RunConfig().to_params() == {}  # defaults keep URLs short
    assert json.loads(cfg.to_json())["clip_norm"] == 0.5


def test_from_params_strict_and_lenient():
    with pytest.raises(ConfigError, match="depth"):
        RunConfig.from_params({"depth": "-3"})
    cfg, warnings = RunConfig.from_params_lenient(
        {"depth": "-3", "activation": "banana", "width": "32", "page": "lab"})
    assert cfg == RunConfig(width=32)
    assert len(warnings) == 2
    assert any("depth" in w and "using 4" in w for w in warnings)
    assert any("activation" in w for w in warnings)
    # A combination that is invalid only together falls back field by field.
    cfg, warnings = RunConfig.from_params_lenient({"model": "cnn", "dataset": "moons"})
    assert cfg.dataset == "moons" and cfg.model == "mlp" and warnings


def test_with_fallbacks_uses_the_given_defaults():
    page = RunConfig(dataset="moons", depth=3, width=16)
    cfg, warnings = RunConfig.with_fallbacks({"depth": 500, "model": "cnn", "lr": 0.01},
                                             defaults=page)
    assert cfg == page.replace(lr=0.01)
    assert len(warnings) == 2 and any("using 3" in w for w in warnings)
    assert RunConfig.with_fallbacks({}, defaults=page) == (page, [])


def test_minus_zero_is_zero():
    # Equal configs, one key (a link drops bias_value=-0.0 as the default): found by
    # test_any_valid_config_round_trips_through_params_and_json.
    assert RunConfig(bias_value=-0.0).key() == RunConfig().key()


def test_odd_values_give_a_message_not_a_crash():
    # Found by tests/test_fuzz.py: numbers past any float, numbers too long to print (their
    # str() raises) and arrays (`in` compares them elementwise) raised other errors.
    with pytest.raises(ConfigError, match=r"^lr: must be a number from 1e-06 to 100, got 1000"):
        RunConfig(lr=10**400)
    with pytest.raises(ConfigError, match="^depth: an integer of 5001 digits is out of range"):
        RunConfig(depth=10**5000)
    with pytest.raises(ConfigError, match="^activation: array"):
        RunConfig(activation=__import__("numpy").array(["relu", "tanh"]))


def test_what_a_link_says_is_quoted_as_code_cut_short_on_one_line():
    # Warnings are Markdown: a link's text in a code span cannot become a link or an image.
    with pytest.raises(ConfigError) as err:
        RunConfig.from_params({"lr": "[click](https://evil.example)\n`" + "x" * 100})
    assert str(err.value) == ("lr: `[click](https://evil.example)??xxxxxxxxx…` is not a number "
                              "from 1e-06 to 100")


def test_a_clash_with_the_defaults_themselves_gives_up_the_other_setting():
    # Compare's A is a 10-layer net: a link asking for a cnn there used to raise (the depth
    # named by the rule fell back to 10, which clashed again). Found by tests/test_fuzz.py.
    page = RunConfig(depth=10, activation="sigmoid")
    cfg, warnings = RunConfig.with_fallbacks({"model": "cnn", "lr": 0.01}, defaults=page)
    assert cfg == page.replace(lr=0.01)
    assert warnings == ["`model=cnn`: does not go with depth (a cnn has at most 6 conv "
                        "layers, got 10); using mlp."]
    b = RunConfig(clip_value=0.1)  # Compare's B starts from A, which may clip values
    cfg, warnings = RunConfig.with_fallbacks({"clip_norm": 1.0}, defaults=b)
    assert cfg == b and len(warnings) == 1 and warnings[0].startswith("`clip_norm=1.0`: does not")


_valid_values = {
    name: (st.sampled_from(f.metadata["choices"]) if f.metadata["choices"]
           else st.booleans() if field_kind(f) is bool
           else st.integers(int(f.metadata["lo"]), int(f.metadata["hi"])) if field_kind(f) is int
           else st.floats(f.metadata["lo"], f.metadata["hi"], allow_nan=False))
    | (st.none() if is_optional(f) else st.nothing())
    for name, f in FIELDS.items()
}


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({}, optional=_valid_values))
def test_any_valid_config_round_trips_through_params_and_json(values):
    try:
        cfg = RunConfig(**values)
    except ConfigError:
        return  # cross-field rules; covered above
    assert RunConfig.from_params(cfg.to_params()) == cfg
    assert RunConfig.from_json(cfg.to_json()) == cfg
    assert RunConfig.from_params(cfg.to_params()).key() == cfg.key()


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(list(FIELDS)), st.text(max_size=12), max_size=6))
def test_lenient_parse_never_raises_on_any_strings(params):
    cfg, warnings = RunConfig.from_params_lenient(params)
    assert isinstance(cfg, RunConfig)
    assert all(isinstance(w, str) for w in warnings)


def test_describe_reads_well():
    assert describe(FIELDS["depth"]) == "an integer from 1 to 100"
    assert describe(FIELDS["clip_norm"]).endswith("(or empty for off)")
    assert describe(FIELDS["max_train"]).endswith("(or empty for all)")  # the field's own word
