"""The Optimizers page: surfaces, the torch.optim race, presets, config, charts and the page.

Trajectories are checked against an independent answer: each update rule written out in numpy
from the surface's hand-derived gradient, and the learning-rate schedules from their closed forms.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from core.lab.config import ConfigError
from core.lessons import matching
from core.optimizers import charts as oc
from core.optimizers.race import BOX, LABELS, LR_GRID, PRESETS, RACERS, RaceConfig, \
    defaults_for, race, standings
from core.optimizers.surfaces import LEVELS_PER_DECADE, QUAD_Y, SURFACES, grid
from tests.helpers import charts, clean, open_page
from tests.helpers import assert_clean, encodings, rows, texts, walk


# --- closed-form gradients, derived by hand -------------------------------------------------------
def _beale_grad(x, y):
    a1, a2, a3 = 1.5 - x + x * y, 2.25 - x + x * y ** 2, 2.625 - x + x * y ** 3
    return np.array([2 * a1 * (y - 1) + 2 * a2 * (y ** 2 - 1) + 2 * a3 * (y ** 3 - 1),
                     2 * a1 * x + 4 * a2 * x * y + 6 * a3 * x * y ** 2])


GRADS = {
    "beale": _beale_grad,
    "rosenbrock": lambda x, y: np.array([-2 * (1 - x) - 400 * x * (y - x ** 2),
                                         200 * (y - x ** 2)]),
    "himmelblau": lambda x, y: np.array([4 * x * (x ** 2 + y - 11) + 2 * (x + y ** 2 - 7),
                                         2 * (x ** 2 + y - 11) + 4 * y * (x + y ** 2 - 7)]),
    "saddle": lambda x, y: np.array([2 * x, y * (y ** 2 - 2)]),
    "quadratic": lambda x, y: np.array([x, QUAD_Y * y]),
}


def _autograd(surface, x, y):
    p = torch.tensor([x, y], dtype=torch.float64, requires_grad=True)
    surface.f(p[0], p[1]).backward()
    return p.grad.numpy()


@pytest.mark.parametrize("name", list(SURFACES))
def test_gradients_match_the_closed_forms(name):
    s = SURFACES[name]
    x_lo, x_hi, y_lo, y_hi = s.window
    rng = np.random.default_rng(0)
    for x, y in zip(rng.uniform(x_lo, x_hi, 20), rng.uniform(y_lo, y_hi, 20)):
        np.testing.assert_allclose(_autograd(s, x, y), GRADS[name](x, y), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("name", list(SURFACES))
def test_minima_are_zero_with_zero_gradient_and_inside_the_window(name):
    s = SURFACES[name]
    for x, y in s.minima:
        assert s.contains(x, y)
        assert abs(float(s.f(torch.tensor(x, dtype=torch.float64),
                             torch.tensor(y, dtype=torch.float64)))) < 1e-20
        assert np.abs(GRADS[name](x, y)).max() < 1e-9
    assert s.contains(*s.start) and set(s.lrs) == set(RACERS)
    assert all(lr in LR_GRID for lr in s.lrs.values())  # the sliders can show every default


def test_the_saddle_is_a_saddle():
    # At the origin: stationary, f = 1, Hessian diag(2, −2) (from f = x² + (y² − 2)²/4).
    s = SURFACES["saddle"]
    h = torch.autograd.functional.hessian(lambda p: s.f(p[0], p[1]),
                                          torch.zeros(2, dtype=torch.float64))
    np.testing.assert_allclose(h.numpy(), [[2, 0], [0, -2]])
    assert float(s.f(torch.tensor(0.0), torch.tensor(0.0))) == 1.0


def test_grid_covers_the_window_in_log_spaced_bands():
    s = SURFACES["rosenbrock"]
    g = grid(s, cells=10)
    assert len(g) == 100
    assert g["x0"].min() == s.window[0] and g["x1"].max() == s.window[1]
    assert g["y0"].min() == s.window[2] and g["y1"].max() == s.window[3]
    f = (1 - g["x"]) ** 2 + 100 * (g["y"] - g["x"] ** 2) ** 2
    np.testing.assert_allclose(g["f"], f, rtol=1e-12)
    above = f >= s.floor  # each level is the band's lower edge, 10^(k/3) ≤ f < 10^((k+1)/3)
    assert (g["level"][above] <= f[above] * (1 + 1e-12)).all()
    assert (g["level"][above] > f[above] / 10 ** (1 / LEVELS_PER_DECADE)).all()
    k = np.log10(g["level"]) * LEVELS_PER_DECADE
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)


# --- the race against independent replays ---------------------------------------------------------
def _replay(rule, grad, start, lrs, steps):
    """Positions after 0 … steps updates of `rule` in numpy; lrs[k] is step k's learning rate."""
    p, state, out = np.array(start, dtype=float), {}, []
    for k in range(steps + 1):
        out.append(p.copy())
        if k < steps:
            p = rule(p, grad(*p), lrs[k], state, k + 1)
    return np.array(out)


def _sgd(p, g, lr, state, t):
    return p - lr * g


def _heavy_ball(nesterov):
    def rule(p, g, lr, state, t):  # PyTorch's form: the buffer starts as the first gradient
        state["b"] = g if t == 1 else 0.9 * state["b"] + g
        return p - lr * (g + 0.9 * state["b"] if nesterov else state["b"])
    return rule


def _adagrad(p, g, lr, state, t):
    state["s"] = state.get("s", 0.0) + g ** 2
    return p - lr * g / (np.sqrt(state["s"]) + 1e-10)


def _rmsprop(p, g, lr, state, t):
    state["v"] = 0.99 * state.get("v", 0.0) + 0.01 * g ** 2
    return p - lr * g / (np.sqrt(state["v"]) + 1e-8)


def _adam(p, g, lr, state, t):
    state["m"] = 0.9 * state.get("m", 0.0) + 0.1 * g
    state["v"] = 0.999 * state.get("v", 0.0) + 0.001 * g ** 2
    m_hat, v_hat = state["m"] / (1 - 0.9 ** t), state["v"] / (1 - 0.999 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + 1e-8)


def _triangular(k, base, top, half):
    """CyclicLR's triangular policy in closed form (Smith 2017, eq. 1)."""
    cycle = math.floor(1 + k / (2 * half))
    return base + (top - base) * max(0.0, 1 - abs(k / half - 2 * cycle + 1))


STEPS = 300
RULES = {"sgd": _sgd, "momentum": _heavy_ball(False), "nesterov": _heavy_ball(True),
         "adagrad": _adagrad, "rmsprop": _rmsprop, "adam": _adam, "sgd_exp": _sgd,
         "sgd_cyclic": _sgd}


@pytest.fixture(scope="module")
def beale_race():
    cfg = defaults_for("beale").replace(iterations=STEPS)
    return cfg, race(cfg)


@pytest.mark.parametrize("name", RACERS)
def test_each_trajectory_is_the_update_rule_replayed_in_numpy(beale_race, name):
    cfg, table = beale_race
    lr = cfg.lr(name)
    lrs = {"sgd_exp": [lr * cfg.decay ** k for k in range(STEPS + 1)],
           "sgd_cyclic": [_triangular(k, lr / 10, lr, cfg.cycle) for k in range(STEPS + 1)]
           }.get(name, [lr] * (STEPS + 1))
    mine = table[table["optimizer"] == name]
    assert list(mine["iteration"]) == list(range(STEPS + 1)) and not mine["diverged"].any()
    np.testing.assert_allclose(mine["lr"], lrs, rtol=1e-12)
    expected = _replay(RULES[name], GRADS["beale"], (cfg.x0, cfg.y0), lrs, STEPS)
    # Adaptive rules divide by √v + ε in a different order than torch: rounding, not method.
    np.testing.assert_allclose(mine[["x", "y"]].to_numpy(), expected, rtol=1e-9, atol=1e-11)
    x, y = expected[:, 0], expected[:, 1]
    beale = ((1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2
             + (2.625 - x + x * y ** 3) ** 2)
    np.testing.assert_allclose(mine["loss"], beale, rtol=1e-8, atol=1e-14)


def test_racing_together_matches_racing_alone(beale_race):
    # One backward pass serves every racer: each one's path must be what it is on its own.
    cfg, table = beale_race
    alone = race(cfg.replace(**{o: o == "adam" for o in RACERS}))
    together = table[table["optimizer"] == "adam"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, together)


def test_divergence_stops_one_racer_and_the_others_go_on():
    # SGD with lr 0.1 on (x² + 25y²)/2 multiplies y by 1 − 2.5 = −1.5 a step: |y| passes the
    # box (1000 × the window's half-width 3) at the first k with 1.5 · 1.5^k > 3000.
    cfg = PRESETS["lr_large"].config.replace(adam=True)
    table = race(cfg)
    sgd = table[table["optimizer"] == "sgd"]
    k = next(k for k in range(100) if 1.5 * 1.5 ** k > BOX * 3)
    assert sgd["iteration"].max() == k and list(sgd["diverged"]) == [False] * k + [True]
    np.testing.assert_allclose(sgd["y"], 1.5 * (-1.5) ** np.arange(k + 1), rtol=1e-12)
    adam = table[table["optimizer"] == "adam"]
    assert len(adam) == cfg.iterations + 1 and not adam["diverged"].any()
    facts = standings(table, cfg).set_index("optimizer")
    assert facts.loc["sgd", "diverged_at"] == k and not facts.loc["adam", "diverged"]


def test_overflow_to_inf_is_a_result_not_an_error():
    cfg = defaults_for("beale").replace(x0=4.5, y0=3.5, iterations=50, sgd_lr=10.0,
                                        **{o: o in ("sgd", "adam") for o in RACERS})
    table = race(cfg)
    sgd = table[table["optimizer"] == "sgd"]
    assert sgd["diverged"].iloc[-1] and len(sgd) < 51
    last = sgd.iloc[-1]
    assert not np.isfinite(last["loss"]) or max(abs(last["x"]), abs(last["y"])) > BOX * 4.5
    assert_clean(oc.contour(SURFACES["beale"], table, 50).to_dict())
    assert_clean(oc.loss_curves(table, 50).to_dict())


def test_no_optimizer_is_an_empty_table():
    table = race(RaceConfig(**{o: False for o in RACERS}))
    assert table.empty and list(table.columns) == ["optimizer", "iteration", "x", "y", "loss",
                                                   "lr", "diverged"]
    assert "no optimizer selected" in texts(oc.loss_curves(table).to_dict())
    assert_clean(oc.contour(SURFACES["beale"], table).to_dict())


# --- presets: the three regimes, against the closed form of SGD on the quadratic ---------------
@pytest.mark.parametrize("preset", PRESETS.values(), ids=list(PRESETS))
def test_each_preset_matches_its_own_config(preset):
    """(Their claims: tests/test_lessons.py.)"""
    assert matching(PRESETS.values(), preset.config) is preset


def test_presets_say_what_the_closed_form_says():
    # SGD on (x² + 25 y²)/2 multiplies x by (1 − lr) and y by (1 − 25 lr) every step.
    def path(lr, n):
        k = np.arange(n + 1)
        return -2.5 * (1 - lr) ** k, 1.5 * (1 - QUAD_Y * lr) ** k

    small = race(PRESETS["lr_small"].config)
    x, y = path(0.002, 300)
    np.testing.assert_allclose(small["x"], x, rtol=1e-10)
    assert math.hypot(x[-1], y[-1]) > 1.0 and (np.diff(small["loss"]) < 0).all()

    right = race(PRESETS["lr_right"].config)
    x, y = path(0.07, 300)
    first = int(np.flatnonzero(np.hypot(x, y) < 1e-3)[0])
    assert f"after {first} steps" in PRESETS["lr_right"].claims[0].text(right)
    assert (np.sign(y[1:6]) == [-1, 1, -1, 1, -1]).all()  # the zig-zag of the text

    large = race(PRESETS["lr_large"].config)
    assert large["diverged"].iloc[-1] and large["loss"].iloc[1] > large["loss"].iloc[0]


def test_a_claim_that_fails_says_so():
    # The "about right" claims checked against the too-small run: they must not hold.
    table = race(PRESETS["lr_small"].config)
    reach = PRESETS["lr_right"].claims[0]
    assert not reach.holds(table) and "does not get within" in reach.text(table)


# --- config ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad,field,words", [
    (dict(x0=9.0), "x0", "from -1.5 to 4.5"),
    (dict(surface="rosenbrock", y0=3.5), "y0", "in the Rosenbrock window, from -1 to 3"),
    (dict(iterations=0), "iterations", "integer from 1 to 2000"),
    (dict(adam_lr=100.0), "adam_lr", "from 1e-05 to 10"),
    (dict(surface="banana"), "surface", "one of beale, rosenbrock"),
    (dict(sgd="yes"), "sgd", "true or false"),
    (dict(decay=1.5), "decay", "from 0.9 to 1"),
])
def test_bad_settings_name_the_setting_and_its_range(bad, field, words):
    with pytest.raises(ConfigError) as err:
        RaceConfig(**bad)
    assert err.value.field == field and words in str(err.value) and str(err.value).startswith(field)


CONFIGS = [RaceConfig(), defaults_for("himmelblau").replace(x0=1.25, adam=False, decay=0.95),
           *(p.config for p in PRESETS.values()),
           defaults_for("saddle").replace(iterations=2000, sgd_cyclic_lr=0.003, cycle=20)]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_url_round_trip(cfg):
    params = cfg.to_params()
    assert all(isinstance(v, str) for v in params.values())
    assert RaceConfig.from_params(params) == cfg
    assert RaceConfig.from_params_lenient(params) == (cfg, [])
    assert RaceConfig.from_params(cfg.to_params(only_changed=False)) == cfg
    assert cfg.key() == RaceConfig.from_params(params).key()


def test_links_leave_out_the_surface_defaults():
    assert RaceConfig().to_params() == {}
    assert defaults_for("rosenbrock").to_params() == {"surface": "rosenbrock"}
    assert RaceConfig() == defaults_for("beale")  # the class defaults are Beale's
    assert RaceConfig().key() != defaults_for("rosenbrock").key()
    with pytest.raises(ConfigError, match="unknown setting"):
        RaceConfig.from_params({"depth": "3"})
    with pytest.raises(ConfigError, match="x0"):
        RaceConfig.from_params({"surface": "quadratic", "x0": "4"})


def test_lenient_parsing_keeps_what_is_good_and_says_what_it_dropped():
    cfg, warnings = RaceConfig.from_params_lenient(
        {"surface": "rosenbrock", "x0": "4", "y0": "nan", "adam_lr": "banana",
         "iterations": "-3", "sgd": "maybe", "nesterov": "off", "depth": "10"})
    assert cfg == defaults_for("rosenbrock").replace(nesterov=False)
    text = " ".join(warnings)
    assert len(warnings) == 5 and "depth" not in text  # other pages' settings are not ours
    assert "`x0=4`" in text and "from -2 to 2; using -1.5" in text
    assert "`adam_lr=banana`" in text and "using 0.1" in text
    assert "`iterations=-3`" in text and "from 1 to 2000; using 500" in text
    cfg, warnings = RaceConfig.from_params_lenient({"surface": "banana", "x0": "4"})
    assert cfg == RaceConfig(x0=4.0) and "using beale" in warnings[0]


# --- charts ---------------------------------------------------------------------------------------
def _no_null_scales(spec: dict) -> None:
    # Streamlit's browser theming crashes on a colour channel with "scale": null.
    for node in walk(spec):
        if isinstance(node, dict) and "scale" in node:
            assert node["scale"] is not None, node


def test_contour_draws_surface_paths_minima_start_and_the_scrubbed_point():
    cfg = defaults_for("himmelblau").replace(iterations=800)
    table = race(cfg)
    spec = oc.contour(SURFACES["himmelblau"], table, 100).to_dict()  # validates the schema
    assert_clean(spec)
    _no_null_scales(spec)
    params = [n for n in walk(spec) if isinstance(n, dict) and n.get("name") == "start"]
    assert params and params[0]["select"]["fields"] == ["x", "y"]
    paths = rows_where(spec, "label", "iteration", "lr")
    counts = pd.Series([r["label"] for r in paths]).value_counts()
    assert len(counts) == 8 and counts.max() <= oc.MAX_STEPS  # 801 iterations thinned
    marks = [r for r in rows(spec) if "iteration" in r and "lr" not in r]
    assert {r["iteration"] for r in marks} == {100} and len(marks) == 8
    minima = [r for r in rows(spec) if r.get("label") == "minimum (f = 0)"]
    assert len(minima) == 4  # Himmelblau's four
    colours = [e for e in encodings(spec, "color") if e.get("field") == "label"]
    assert all(e["scale"]["domain"] == [LABELS[o] for o in RACERS] for e in colours)
    surface = [e for e in encodings(spec, "color") if e.get("field") == "level"][0]
    assert surface["scale"]["type"] == "log"


def rows_where(spec: dict, *keys: str) -> list[dict]:
    return [r for r in rows(spec) if all(k in r for k in keys)]


def test_loss_curves_log_axis_rule_and_divergence_mark():
    cfg = PRESETS["lr_large"].config.replace(adam=True)
    spec = oc.loss_curves(race(cfg), 10).to_dict()
    assert_clean(spec)
    _no_null_scales(spec)
    assert {e["scale"]["type"] for e in encodings(spec, "y")
            if e.get("field") == "shown" and "scale" in e} == {"log"}
    assert any(r.get("label") == "iteration 10" for r in rows(spec))
    assert any("diverged at iteration 19" in str(r.get("note")) for r in rows(spec))
    colours = [e for e in encodings(spec, "color") if e.get("field") == "label"]
    assert colours[0]["scale"]["domain"] == ["SGD", "Adam"]
    assert colours[0]["scale"]["range"] == [oc.COLOURS["sgd"], oc.COLOURS["adam"]]


# --- the page -------------------------------------------------------------------------------------
PAGE = "app_pages/optimizers.py"


def _text(at) -> str:
    return " ".join(m.value for m in at.markdown)


def test_page_renders_and_a_preset_button_sets_the_widgets():
    at = open_page(PAGE)
    clean(at)
    assert len(charts(at)) == 2 and not at.warning
    assert at.select_slider(key="x0").value == 1.0 and at.selectbox(key="surface").value == "beale"
    at = at.button(key="preset_lr_small").click().run()
    clean(at)
    assert at.selectbox(key="surface").value == "quadratic"
    assert at.select_slider(key="sgd_lr").value == 0.002 and not at.toggle(key="adam").value
    text = _text(at)
    assert "Learning rate too small" in text
    assert ":material/check_circle:" in text and ":material/cancel:" not in text
    assert dict(at.query_params) == PRESETS["lr_small"].config.to_params()
    assert not at.warning  # the link's old values were replaced, not "dropped"


def test_a_link_reproduces_its_race_and_changing_surface_resets_its_defaults():
    cfg = defaults_for("himmelblau").replace(x0=1.25, y0=-2.0, adam_lr=0.02, rmsprop=False,
                                             iterations=200)
    at = open_page(PAGE, **cfg.to_params(), iteration="50")
    clean(at)
    assert not at.warning
    assert (at.select_slider(key="x0").value, at.select_slider(key="y0").value) == (1.25, -2.0)
    assert at.select_slider(key="adam_lr").value == 0.02 and not at.toggle(key="rmsprop").value
    assert at.select_slider(key="iteration").value == 50
    assert "7 optimizers × 200 steps" in " ".join(c.value for c in at.caption)
    at.selectbox(key="surface").set_value("rosenbrock")
    at = at.run()
    clean(at)
    base = defaults_for("rosenbrock")
    assert at.select_slider(key="x0").value == base.x0
    assert at.select_slider(key="adam_lr").value == base.adam_lr


def test_bad_link_warns_and_uses_defaults():
    at = open_page(PAGE, surface="rosenbrock", x0="4", adam_lr="banana", sgd_lr="0.04",
                   iterations="-3")
    clean(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "`x0=4`" in warnings and "from -2 to 2" in warnings and "using -1.5" in warnings
    assert "`adam_lr=banana`" in warnings and "using 0.1" in warnings
    assert "`sgd_lr=0.04`: not one of this control's values" in warnings
    assert "`iterations=-3`" in warnings
    assert at.select_slider(key="x0").value == -1.5 and len(charts(at)) == 2
