"""The app through Streamlit's AppTest: pages render, widgets change what is drawn, links work."""

import pytest

from core.lab.config import RunConfig
from core.lab.presets import PRESETS
from core.lab.runs import cached_run
from core.lab.tabs import TABS
from core.lab.trainer import train
from tests.helpers import charts, clean, open_page

def test_home_offers_every_preset_as_a_link():
    at = open_page("app_pages/home.py")
    clean(at)
    text = " ".join(m.value for m in at.markdown)
    for preset in PRESETS.values():
        assert preset.title in text


# The charts every run has (a chart with `when` is drawn only for runs with its records).
TAB_CHARTS = {name: sum(c.when is None for c in tab) for name, tab in TABS.items()}


def test_lab_default_run_draws_every_chart():
    at = open_page("app_pages/lab.py")
    clean(at)
    assert len(charts(at)) == TAB_CHARTS["Training"]  # only the open tab is drawn
    for tab, n in TAB_CHARTS.items():
        at = open_page("app_pages/lab.py", tab=tab)
        clean(at)
        assert len(charts(at)) == n, tab
    drawn = charts(open_page("app_pages/lab.py", tab="Gradients"))
    assert any("hidden4" in c for c in drawn) and not any("hidden5" in c for c in drawn)
    labels = [m.label for m in at.metric]
    assert "Val accuracy" in labels and "Status" in labels
    assert float(at.metric[0].value.rstrip("%")) > 80


def test_a_tab_switch_builds_the_open_tab_only():
    """Switching tabs in one session draws the open tab's charts, not those of the tabs left
    (keeping them built made switches slower: app_pages/kit/charts.py open_tab)."""
    at = open_page("app_pages/lab.py")
    at.session_state["tab"] = "Gradients"
    at.run()
    clean(at)
    assert len(charts(at)) == TAB_CHARTS["Gradients"]
    at.session_state["tab"] = "Training"
    at.run()
    assert len(charts(at)) == TAB_CHARTS["Training"]


def test_changing_depth_changes_what_is_drawn():
    at = open_page("app_pages/lab.py", tab="Gradients")
    assert "hidden6" not in " ".join(charts(at))
    at.slider(key="depth").set_value(6)
    at = next(b for b in at.button if b.label == "Train").click().run()
    clean(at)
    assert at.slider(key="depth").value == 6
    assert "hidden6" in " ".join(charts(open_page("app_pages/lab.py", depth="6", tab="Gradients")))
    assert cached_run(RunConfig(depth=6)) is not None  # the submit trained depth 6


def test_the_epoch_scrubber_follows_the_run_it_shows():
    """A preset with fewer epochs than the scrubber's value used to crash the page (a slider
    value above its maximum); another run now starts at its own last epoch."""
    at = open_page("app_pages/lab.py", epoch="3")          # a link's epoch holds
    clean(at)
    assert at.slider(key="epoch").value == 3
    at = at.button(key="preset_exploding").click().run()  # diverges in its first epoch
    clean(at)
    last = int(cached_run(PRESETS["exploding"].config).epochs.epoch.max())
    assert last < 3 and at.slider(key="epoch").value == last
    at = at.button(key="preset_vanishing").click().run()
    clean(at)
    assert at.slider(key="epoch").value == PRESETS["vanishing"].config.epochs


def test_bad_link_warns_and_uses_defaults():
    at = open_page("app_pages/lab.py", depth="-3", activation="banana")
    clean(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "depth=-3" in warnings and "using 4" in warnings
    assert "activation=banana" in warnings and "using relu" in warnings
    assert at.slider(key="depth").value == 4


def test_preset_link_reproduces_the_lesson_and_its_claims_hold():
    preset = PRESETS["vanishing"]
    at = open_page("app_pages/lab.py", **preset.config.to_params())
    clean(at)
    text = " ".join(m.value for m in at.markdown)
    assert preset.title in text
    assert ":material/check_circle:" in text and ":material/cancel:" not in text
    assert at.slider(key="depth").value == 10
    assert at.selectbox(key="activation").value == "sigmoid"
    doctor = " ".join(e.value for e in at.error)
    assert "Vanishing gradients" in doctor


def test_the_headline_numbers_fit_a_laptops_columns():
    """A one-epoch CNN's train − val gap read "-16.3 pts", cut short in a laptop's column (seen
    in Chromium): from 10 points on it is whole, from the run's own accuracies; the time keeps
    three digits."""
    cfg = RunConfig(model="cnn", epochs=1)
    at = open_page("app_pages/lab.py", **cfg.to_params())
    clean(at)
    r = cached_run(cfg)
    gap = 100 * (r.final("train", "accuracy") - r.final("val", "accuracy"))
    shown = {m.label: m.value for m in at.metric}
    assert abs(gap) >= 10 and shown["Train − val gap"] == f"{gap:+.0f} pts"
    seconds = r.timing["seconds"]
    assert float(shown["Time"].removesuffix(" s")) == pytest.approx(seconds, rel=0.01, abs=0.006)
    assert all(len(v) <= 8 for v in shown.values()), shown


def test_the_doctors_overfitting_gap_is_the_headlines():
    """The overfitting lesson's headline read "+6.1 pts" beside a doctor saying "6 points"; a
    0.3-point gap on a toy set read "0 points above". Both now write it alike, from the run."""
    cfg = PRESETS["overfitting"].config
    at = open_page("app_pages/lab.py", **cfg.to_params())
    clean(at)
    r = cached_run(cfg)
    gap = 100 * (r.final("train", "accuracy") - r.final("val", "accuracy"))
    shown = {m.label: m.value for m in at.metric}["Train − val gap"]
    assert 0 < gap < 10 and shown == f"+{gap:.1f} pts"
    doctor = " ".join(e.value for e in at.info)
    assert f"Training accuracy is {gap:.1f} points above validation accuracy" in doctor, doctor
    # Its training loss, under 0.0005, read "0.000".
    assert r.final("train", "loss") < 5e-4 and "training loss 0.000 " not in doctor


def test_the_new_settings_show_where_the_lessons_say():
    # The adam_eps lesson says "Set ε to 1e-12 (Optimisation)": ε's control is there, on a grid
    # that holds torch's 1e-8 and 1e-12; PyTorch's default init is offered for weights and biases.
    preset = PRESETS["adam_eps"]
    at = open_page("app_pages/lab.py", **preset.config.to_params())
    clean(at)
    assert not at.warning, [w.value for w in at.warning]
    text = " ".join(m.value for m in at.markdown)
    assert preset.title in text and ":material/cancel:" not in text
    optimisation = next(e for e in at.expander if e.label == "Optimisation")
    eps = next(w for w in optimisation.select_slider if w.key == "eps")
    assert eps.value == 1e-8 and {"1e-08", "1e-12"} <= set(eps.options)
    initialisation = next(e for e in at.expander if e.label == "Initialisation")
    for key in ("init", "bias_init"):
        assert "pytorch_default" in next(w for w in initialisation.selectbox
                                         if w.key == key).options


def test_doctor_fix_changes_the_config():
    at = open_page("app_pages/lab.py", **PRESETS["vanishing"].config.to_params())
    fix = next(b for b in at.button if b.label == "Switch to ReLU + He init")
    at = fix.click().run()
    clean(at)
    assert at.selectbox(key="activation").value == "relu"
    assert at.selectbox(key="init").value == "he_normal"
    assert "Vanishing gradients" not in " ".join(e.value for e in at.error)


def test_a_lesson_opens_on_the_tab_of_its_evidence_on_every_path():
    """A link (without a tab of its own), a preset button and a doctor fix landing on a preset
    each open the lesson's tab; a link's own tab holds, and so does the user's afterwards."""
    for preset in PRESETS.values():
        assert preset.tab in TABS, preset.id
    exploding = PRESETS["exploding"]
    at = open_page("app_pages/lab.py", **exploding.config.to_params())
    clean(at)
    assert at.session_state["tab"] == "Gradients"
    assert len(charts(at)) == TAB_CHARTS["Gradients"]
    at = next(b for b in at.button if b.label.startswith("Clip the gradient norm")).click().run()
    clean(at)   # the fix lands on the clipping lesson, without a word about the link it replaced
    assert not at.warning
    assert at.session_state["tab"] == "Clipping" and len(charts(at)) == TAB_CHARTS["Clipping"]
    at = at.button(key="preset_overfitting").click().run()
    clean(at)
    assert not at.warning and at.session_state["tab"] == "Training"
    at = open_page("app_pages/lab.py", tab="Weights & ratios", **exploding.config.to_params())
    assert at.session_state["tab"] == "Weights & ratios"


def test_a_fix_to_a_hidden_setting_is_announced_and_the_link_keeps_hiding_it():
    """A classroom link fixes activation and init; the doctor's fix changes both: it says so,
    the caption shows the new values read-only, nothing warns, and they stay hidden."""
    at = open_page("app_pages/lab.py", hide="activation,init",
                   **PRESETS["vanishing"].config.to_params())
    clean(at)
    assert "Set by your teacher" in " ".join(c.value for c in at.caption)
    at = next(b for b in at.button if b.label == "Switch to ReLU + He init").click().run()
    clean(at)
    assert not at.warning
    assert "Activation → relu, Init → he_normal" in " ".join(t.value for t in at.toast)
    teacher = next(c.value for c in at.caption if c.value.startswith("Set by your teacher"))
    assert "Activation **relu**" in teacher and "Init **he_normal**" in teacher
    keys = {w.key for w in at.selectbox}
    assert "activation" not in keys and "init" not in keys
    assert PRESETS["relu_he"].title in " ".join(m.value for m in at.markdown)


def test_diverging_preset_is_shown_not_raised():
    at = open_page("app_pages/lab.py", **PRESETS["exploding"].config.to_params())
    assert not at.exception
    assert "diverged" in " ".join(e.value for e in at.error)
    for tab, n in TAB_CHARTS.items():  # every chart still draws, with gaps for NaN/inf
        page = open_page("app_pages/lab.py", tab=tab, **PRESETS["exploding"].config.to_params())
        assert not page.exception and len(charts(page)) == n, tab


def test_classroom_link_hides_controls_but_keeps_their_values():
    at = open_page("app_pages/lab.py", hide="lr,optimizer", lr="0.01", optimizer="sgd")
    clean(at)
    keys = {w.key for w in [*at.select_slider, *at.selectbox]}
    assert "lr" not in keys and "optimizer" not in keys and "activation" in keys
    # The hidden settings still came from the link: that run is the one in the store.
    assert cached_run(RunConfig(lr=0.01, optimizer="sgd")) is not None
    # ... and they stay hidden when a student trains (the editor used to drop the link's
    # comma-separated `hide`, and the next rerun showed them again).
    at.slider(key="depth").set_value(3)
    at = next(b for b in at.button if b.label == "Train").click().run()
    clean(at)
    keys = {w.key for w in [*at.select_slider, *at.selectbox]}
    assert "lr" not in keys and "optimizer" not in keys
    assert cached_run(RunConfig(depth=3, lr=0.01, optimizer="sgd")) is not None


def test_a_classroom_link_as_the_editor_writes_it_hides_on_opening():
    """The editor writes its choice as Streamlit writes a bound multiselect: one `hide` per
    control, by its label."""
    at = open_page("app_pages/lab.py", hide=["Optimizer", "Learning rate"])
    clean(at)
    keys = {w.key for w in [*at.select_slider, *at.selectbox]}
    assert "lr" not in keys and "optimizer" not in keys and "activation" in keys


def test_activations_page_draws_all_curves_and_the_overlay():
    at = open_page("app_pages/activations.py")
    clean(at)
    drawn = charts(at)
    assert len(drawn) >= 11  # ten curves and the overlay
    assert "saturated" in drawn[-1]


def test_playground_side_by_side():
    at = open_page("app_pages/playground.py", compare="true", epochs="5")
    clean(at)
    text = " ".join(m.value for m in at.markdown)
    assert "**relu**" in text and "**tanh**" in text
    assert len(charts(at)) == 3  # a boundary for each, one loss chart of both
    # The accuracies said are the scrubbed epoch's, not the final ones.
    at = open_page("app_pages/playground.py", compare="true", epochs="5", epoch="2")
    clean(at)
    relu = next(m.value for m in at.markdown if m.value.startswith("**relu**"))
    result = train(RunConfig(dataset="moons", depth=3, width=16, lr=0.05, batch_size=128,
                             epochs=5, activation="relu"))
    assert "after epoch 2" in relu
    at_2, final = result.at_epoch("val", "accuracy", 2), result.final("val", "accuracy")
    assert f"{at_2:.0%}" != f"{final:.0%}"   # so the line tells one from the other
    assert f"validation accuracy {at_2:.0%}" in relu
    assert "test accuracy" not in relu   # measured at the end only


def test_every_setting_of_a_full_link_is_taken_without_warnings():
    """A link with every field spelled out (as Lab → Compare writes it) opens cleanly: optional
    settings read as their widgets name them (max_train=all, record_every=auto, …)."""
    cfg = RunConfig(depth=2, width=16, epochs=1, max_train=None, record_every=None)
    at = open_page("app_pages/lab.py", **cfg.to_params(only_changed=False))
    clean(at)
    assert not at.warning, [w.value for w in at.warning]
    assert cached_run(cfg) is not None


def test_settings_without_effect_are_disabled_and_say_why():
    at = open_page("app_pages/lab.py", depth="2", width="16", epochs="1", momentum="0.5")
    clean(at)
    assert not at.warning, [w.value for w in at.warning]   # an inert value in a link is fine
    momentum = at.sidebar.number_input(key="momentum")
    assert momentum.disabled and momentum.value == 0.5      # kept, as the link holds it
    assert "No effect with these settings" in momentum.help and "adam" in momentum.help
    assert at.sidebar.slider(key="lr_decay").disabled        # constant schedule
    assert not at.sidebar.number_input(key="beta1").disabled  # Adam reads β₁
    at.sidebar.selectbox(key="optimizer").set_value("momentum")
    at = next(b for b in at.button if b.label == "Train").click().run()
    clean(at)
    assert not at.sidebar.number_input(key="momentum").disabled
    assert at.sidebar.number_input(key="beta1").disabled
    assert cached_run(RunConfig(depth=2, width=16, epochs=1, optimizer="momentum",
                                momentum=0.5)) is not None   # the value it kept is the one used


def test_a_stored_run_says_so_in_the_same_words_on_the_lab_and_recurrent():
    """The Time metric's line under a stored run read "from the store" on the Lab and "from the
    run store" on Recurrent; the longer one pushes the Lab's sixth number to a second row on a
    laptop (seen in Chromium), so both read "from the store"."""
    from core.recurrent.config import RecurrentConfig
    pages = {"app_pages/lab.py": RunConfig(epochs=1, width=16, max_train=200).to_params(),
             "app_pages/recurrent.py": RecurrentConfig(max_train=200, epochs=1).to_params()}
    said = {}
    for page, params in pages.items():
        open_page(page, **params)                 # trains it, or finds it stored already
        again = open_page(page, **params)
        clean(again)
        said[page] = {m.label: m.delta for m in again.metric}["Time"]
    assert set(said.values()) == {"from the store"}, said
