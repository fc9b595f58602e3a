"""The settings machinery itself (core/settings.py), on a tiny config declared here.

The four real configs are pinned in test_invariants.py; this file checks what the machinery
promises any config: its key, its link round trip, lenient fallbacks (field by field, then
across fields), the empty word of each field, the link's problems, and the two hooks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

import pytest

from core.settings import ConfigError, Settings, Span, settings_named, setting

SIZES = {"small": 10.0, "large": 100.0}


@dataclass(frozen=True)
class Tiny(Settings):
    SCHEMA_VERSION = 7

    kind: str = setting("mlp", "Model.", choices=("mlp", "cnn"))
    depth: int = setting(4, "Layers.", lo=1, hi=10)
    rate: float = setting(0.1, "Rate.", lo=1e-3, hi=1.0, log=True)
    norm: bool = setting(False, "Norm.")
    clip: float | None = setting(None, "Clip (empty = off).", lo=0.1, hi=10.0)
    cap: int | None = setting(None, "Cap (empty = all).", lo=1, hi=100, none="all")

    def check_rules(self) -> None:
        if self.kind == "cnn" and self.depth > 5:
            raise ConfigError("depth", f"a cnn has at most 5 layers, got {self.depth}")


@dataclass(frozen=True)
class Boxed(Settings):
    """Defaults and a range that hang on another setting, as the optimizer race's surface."""
    SCHEMA_VERSION = 1

    box: str = setting("small", "Box.", choices=tuple(SIZES))
    x: float = setting(1.0, "Point in the box.")

    @classmethod
    def defaults_with(cls, values: Mapping[str, Any]) -> Boxed:
        box = values.get("box")
        box = box if isinstance(box, str) and box in SIZES else "small"
        return cls(box=box, x=SIZES[box] / 2)

    @classmethod
    def span(cls, name: str, values: Mapping[str, Any]) -> Span | None:
        return (0.0, SIZES[values["box"]], f"the {values['box']} box") if name == "x" else None


def test_key_is_the_hash_of_the_schema_and_every_field():
    cfg = Tiny(depth=3, clip=1.0)
    blob = json.dumps({"schema": 7, "kind": "mlp", "depth": 3, "rate": 0.1, "norm": False,
                       "clip": 1.0, "cap": None}, sort_keys=True)
    assert cfg.key() == hashlib.sha256(blob.encode()).hexdigest()[:20]
    assert Tiny(depth=3.0, clip=1).key() == cfg.key()  # normalised before hashing
    assert Tiny(depth=2).key() != cfg.key()


def test_fields_are_the_declared_ones_in_order_computed_once():
    assert list(Tiny.fields()) == ["kind", "depth", "rate", "norm", "clip", "cap"]
    assert Tiny.fields() is Tiny.fields()
    assert list(Boxed.fields()) == ["box", "x"]


def test_links_round_trip_and_hold_only_what_changed():
    cfg = Tiny(kind="cnn", depth=2, norm=True, cap=50)
    params = cfg.to_params()
    assert params == {"kind": "cnn", "depth": "2", "norm": "true", "cap": "50"}
    assert Tiny.from_params(params) == cfg
    assert Tiny.from_params(cfg.to_params(only_changed=False)) == cfg
    assert Tiny.from_json(cfg.to_json()) == cfg
    assert Tiny.from_params_lenient(params) == (cfg, [])
    assert cfg.changed() == {"kind": "cnn", "depth": 2, "norm": True, "cap": 50}
    with pytest.raises(ConfigError, match="^width: unknown setting"):
        Tiny.from_params({"width": "3"})
    with pytest.raises(ConfigError, match="^depth: `x` is not an integer from 1 to 10$"):
        Tiny.from_params({"depth": "x"})


def test_each_field_writes_its_own_empty_word_and_reads_every_one():
    assert Tiny.format_setting("clip", None) == "off"
    assert Tiny.format_setting("cap", None) == "all"
    assert Tiny(clip=None, cap=None).to_params(only_changed=False)["cap"] == "all"
    for word in ("", "none", "off", "all", "auto", " Off "):
        assert Tiny.parse_setting("cap", word) is None
        assert Tiny.parse_setting("clip", word) is None
    with pytest.raises(ConfigError):
        Tiny.parse_setting("depth", "off")  # not optional: no empty word


def test_a_bad_link_falls_back_field_by_field_then_across_fields():
    cfg, warnings = Tiny.from_params_lenient(
        {"depth": "8", "rate": "fast", "kind": "cnn", "norm": "maybe", "page": "lab"})
    assert cfg == Tiny(kind="cnn")
    assert warnings == [  # in the link's order, then the rule across fields
        "`rate=fast`: not a number from 0.001 to 1; using 0.1.",
        "`norm=maybe`: not true or false; using false.",
        "`depth=8`: a cnn has at most 5 layers, got 8; using 4.",  # the setting the rule blames
    ]
    assert settings_named(warnings) == {"rate", "norm", "depth"}


def test_a_clash_with_the_defaults_gives_up_the_other_setting():
    page = Tiny(depth=7)  # the rule blames depth, but depth is the page's own default
    cfg, warnings = Tiny.with_fallbacks({"kind": "cnn", "rate": 0.5}, defaults=page)
    assert cfg == page.replace(rate=0.5)
    assert warnings == ["`kind=cnn`: does not go with depth (a cnn has at most 5 layers, "
                        "got 7); using mlp."]


def test_url_problems_name_the_link_value_and_what_is_used():
    used = Tiny(depth=2)
    raw = {"depth": "2", "rate": "0.3", "clip": "oops", "other": "x"}
    assert Tiny.url_problems(raw, used, {"rate": (0.1, 0.5)}, prefix="b_") == [
        "`b_rate=0.3`: not one of this control's values (0.1, 0.5); using 0.1.",
        "`b_clip=oops`: not a number from 0.1 to 10 (or empty for off); using off.",
    ]


def test_defaults_and_a_range_can_hang_on_another_setting():
    large = Boxed.defaults_with({"box": "large"})
    assert large == Boxed(box="large", x=50.0)
    assert large.to_params() == {"box": "large"}  # x is the large box's default
    assert Boxed.from_params({"box": "large"}) == large
    assert Boxed(box="large", x=80).to_params() == {"box": "large", "x": "80.0"}
    with pytest.raises(ConfigError, match="^x: 20.0 is out of range: must be a number in the "
                                          "small box, from 0 to 10$"):
        Boxed(x=20.0)
    assert Boxed.parse_setting("x", "80", {"box": "large"}) == 80.0
    cfg, warnings = Boxed.from_params_lenient({"x": "200", "box": "large"})
    assert cfg == large
    assert warnings == ["`x=200`: not a number in the large box, from 0 to 100; using 50.0."]
