"""The page kit's pure parts and the shared lesson types, without a page: which widget a field
gets, what applying a preset sets, which preset a config is."""

from __future__ import annotations

import dataclasses

import pytest

from core.attention.config import AttentionConfig
from core.attention.presets import ATTENTION_PRESETS, Evidence
from core.lab.config import RunConfig
from core.lab.presets import PRESETS
from core.lessons import Claim, Preset, matching
from core.optimizers.race import PRESETS as RACE_PRESETS
from core.optimizers.race import RaceConfig
from core.recurrent.config import RecurrentConfig
from core.recurrent.presets import RECURRENT_PRESETS
from app_pages.kit.controls import ATTENTION, LAB, RECURRENT, Form


# --- the widget a field gets ------------------------------------------------------------------
@pytest.mark.parametrize("form, name, kind", [
    (LAB, "activation", "selectbox"), (LAB, "batch_norm", "toggle"), (LAB, "lr", "select_slider"),
    (LAB, "depth", "slider"), (LAB, "seed", "number"), (LAB, "sigma_w2", "number"),
    (RECURRENT, "cell", "selectbox"), (RECURRENT, "hidden", "select_slider"),
    (RECURRENT, "epochs", "slider"), (RECURRENT, "seed", "number"),
    (ATTENTION, "scaled", "toggle"), (ATTENTION, "d", "select_slider"),
])
def test_each_kind_of_field_gets_its_widget(form, name, kind):
    default = getattr(form.settings(), name)
    assert form.spec(name, default).kind == kind


def test_a_spec_offers_the_fields_own_values_and_range():
    f = {x.name: x for x in dataclasses.fields(RunConfig)}
    spec = LAB.spec("activation", "tanh")
    assert spec.options == tuple(f["activation"].metadata["choices"]) and spec.value == "tanh"
    assert LAB.spec("dataset", "digits", choices=["moons", "digits"]).options == ("moons",
                                                                                 "digits")
    spec = LAB.spec("seed", 3)
    assert (spec.lo, spec.hi, spec.value) == (f["seed"].metadata["lo"], f["seed"].metadata["hi"], 3)
    # A slider whose upper end is the field's own.
    assert RECURRENT.spec("epochs", 3).hi == dataclasses.fields(RecurrentConfig)[
        [x.name for x in dataclasses.fields(RecurrentConfig)].index("epochs")].metadata["hi"]
    # A default the grid lacks starts the slider at the grid's first value, one it offers.
    assert LAB.spec("lr", 0.123).value == LAB.grids["lr"][0]


def test_labels_and_value_texts():
    assert LAB.label("lr") == "Learning rate" and LAB.label("bias_init") == "Bias init"
    assert RunConfig.format_setting("max_train", None) == "all"
    assert RecurrentConfig.format_setting("forget_bias", None) == "none"
    assert AttentionConfig.format_setting("max_train", None) == "all"
    assert RunConfig.format_setting("lr", 0.001) == "0.001"


# --- applying a preset: exactly its settings, as values the widgets offer ----------------------
def _offered(form: Form, name: str, value) -> bool:
    spec = form.spec(name, value)
    if spec.kind in ("selectbox", "select_slider"):
        return value in spec.options
    if spec.kind in ("slider", "number"):
        return spec.lo <= value <= spec.hi
    return isinstance(value, bool)


@pytest.mark.parametrize("form, presets", [(LAB, PRESETS), (RECURRENT, RECURRENT_PRESETS),
                                           (ATTENTION, ATTENTION_PRESETS)],
                         ids=["lab", "recurrent", "attention"])
def test_applying_a_preset_sets_exactly_its_settings(form, presets):
    for preset in presets.values():
        values = form.widget_values(preset.config.to_dict())
        assert values == preset.config.to_dict()   # every preset value is one a widget offers
        assert all(_offered(form, name, v) for name, v in values.items()), preset.id
        # …and the widgets' values make the preset's config again, so its lesson shows.
        assert matching(presets.values(), form.settings(**values)) is preset


def test_applying_settings_snaps_to_the_widget_and_keeps_the_prefix():
    assert LAB.widget_values({"lr": 0.0011, "depth": 7}, prefix="b_") == {"b_lr": 0.001,
                                                                          "b_depth": 7}
    assert LAB.widget_values({"clip_norm": 0.3, "max_train": 120}) == {"clip_norm": 0.25,
                                                                       "max_train": 100}
    race = Form(RaceConfig)  # no grids: values as they are
    cfg = RACE_PRESETS["lr_large"].config
    assert race.widget_values(cfg.to_dict()) == cfg.to_dict()


# --- one Claim and one Preset for every family --------------------------------------------------
def test_a_claim_reads_as_measured_and_waits_for_what_it_needs():
    claim = Claim(lambda ev: f"{ev.classifier} trained", lambda ev: ev.classifier == "yes",
                  needs="classifier")
    assert not claim.ready(Evidence(saturation=None))
    assert claim.ready(Evidence(saturation=None, classifier="yes"))
    assert claim.check(Evidence(saturation=None, classifier="yes")) == ("yes trained", True)
    plain = Claim(lambda r: f"{r:.0%}", lambda r: r > 0.5)
    assert plain.ready(0.7) and plain.check(0.2) == ("20%", False)


def test_every_family_declares_its_lessons_with_the_shared_types():
    for presets in (PRESETS, RECURRENT_PRESETS, ATTENTION_PRESETS, RACE_PRESETS):
        for pid, p in presets.items():
            assert isinstance(p, Preset) and p.id == pid and p.hint
            assert p.claims and all(isinstance(c, Claim) for c in p.claims)


def test_a_preset_matches_its_config_up_to_its_free_settings():
    soft = ATTENTION_PRESETS["soft"]
    assert soft.matches(soft.config.replace(scaled=not soft.config.scaled))
    assert not soft.matches(soft.config.replace(d=8))
    vanishing = PRESETS["vanishing"]
    assert matching(PRESETS.values(), vanishing.config) is vanishing
    assert matching(PRESETS.values(), vanishing.config.replace(seed=5)) is None


def test_the_path_holds_every_lesson_once_and_links_to_its_own_experiment():
    from app_pages.kit.lessons import PATH
    on_path = [p for stage in PATH for p in stage.presets]
    every = [p for presets in (PRESETS, RACE_PRESETS, RECURRENT_PRESETS, ATTENTION_PRESETS)
             for p in presets.values()]
    assert sorted(p.id for p in on_path) == sorted(p.id for p in every)
    assert on_path[0] is PRESETS["vanishing"]   # "start here"
    for stage in PATH:
        for p in stage.presets:
            link = stage.link(p)
            settings = {k: v for k, v in link.items() if k not in ("tab", "iteration")}
            assert type(p.config).from_params(settings) == p.config, p.id
            assert link.get("tab") == p.tab   # the evidence tab, where the page has tabs
            assert settings, p.id   # a link without settings would keep an earlier visit's
