"""Optimizers: SGD, momentum, Nesterov, Adagrad, RMSprop, Adam and scheduled SGD race on 2-D
surfaces (core.optimizers.race runs them with torch.optim; core.optimizers.charts draws them)."""

import time

import streamlit as st

from core.optimizers import charts as optimizer_charts
from core.optimizers.race import LABELS, LR_GRID, PRESETS, RACERS, RaceConfig, \
    defaults_for, race, standings, window_range
from core.optimizers.surfaces import SURFACES
from core.settings import ConfigError, format_value
from app_pages.kit.charts import chart
from app_pages.kit.controls import Form, apply_settings, just_set, warn
from app_pages.kit.links import link_problems, link_texts, repeated_warnings, tidy_link
from app_pages.kit.lessons import lesson_box, preset_buttons


ITERATIONS = [10, 20, 50, 100, 200, 300, 500, 1000, 1500, 2000]
DECAYS = [0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999, 1.0]
CYCLES = [5, 10, 20, 50, 100, 200, 500, 1000]
START_STEP = 0.05   # the start sliders' step; a clicked cell's centre is rounded to it
CLICK_KEY = "start_click"
RACE = Form(RaceConfig)   # its widgets are drawn below: a window per surface, a row per optimizer

st.title("Optimizers")
st.write("Each optimizer starts from the same point (the black ring) and takes real `torch.optim` "
         "steps downhill on a 2-D surface; the diamonds are its minima. Watch **momentum** "
         "overshoot and swing back, **Adagrad** slow down as its accumulated squared gradients "
         "grow, **RMSprop** and **Adam** take steps of similar length whatever the slope, and "
         "plain **SGD** crawl where the surface is flat. Move the iteration slider to see where "
         "each one is after that many steps, click the surface to start somewhere else, and try "
         "the learning-rate presets: too small, about right, too large.")


# --- callbacks: they set the bound widgets, and the run after them uses the new values ----------
def _widgets_of(cfg: RaceConfig) -> dict:
    """A preset's or a surface's settings, with the iteration slider at the race's end."""
    return {**cfg.to_dict(), "iteration": cfg.iterations}


def _surface_changed() -> None:
    """A new surface brings its own window, start point and learning rates."""
    base = defaults_for(st.session_state["surface"])
    apply_settings(RACE, {name: getattr(base, name)
                          for name in ("x0", "y0", *(f"{o}_lr" for o in RACERS))})


def _pick_start() -> None:
    event = st.session_state.get(CLICK_KEY)
    picked = (event or {}).get("selection", {}).get(optimizer_charts.START_SELECTION) or []
    if picked and isinstance(picked[-1], dict):
        surface = st.session_state.get("surface", "beale")
        values = {}
        for name in ("x0", "y0"):
            value = picked[-1].get(name[0])
            if value is not None:
                grid = _start_grid(name, surface)
                values[name] = min(grid, key=lambda v: abs(v - float(value)))
        apply_settings(RACE, values)


def _start_grid(name: str, surface: str) -> list[float]:
    # A select_slider over the window, not a slider: a slider whose range changes with the
    # surface becomes a new widget, which a stale value in the link would then seed.
    lo, hi = window_range(name, surface)
    return [round(lo + i * START_STEP, 2) for i in range(round((hi - lo) / START_STEP) + 1)]


# --- controls ---------------------------------------------------------------------------------
def _help(name: str) -> str:
    return RaceConfig.fields()[name].metadata["help"]


def controls() -> tuple[RaceConfig, list[str]]:
    """The sidebar's widgets, bound to the URL, as one RaceConfig (and the link's problems)."""
    # The start point's window hangs on the surface: its select sliders read the link alone.
    tidy_link(RACE, [n for n in RaceConfig.fields() if n not in ("surface", "x0", "y0")],
              RaceConfig())
    texts = link_texts(RaceConfig.fields())
    raw = {k: v[-1] for k, v in texts.items()}
    with st.sidebar:
        # Raw names, no format_func: Streamlit puts a selectbox's displayed label in the link.
        surface = st.selectbox(
            "Surface", list(SURFACES), key="surface", bind="query-params",
            on_change=_surface_changed, help=_help("surface") + " " + " · ".join(
                f"{s.name}: {s.title}" for s in SURFACES.values()))
        base = defaults_for(surface)
        s = SURFACES[surface]
        st.caption(f"f(x, y) = {s.formula}. {s.note}")
        values = {"surface": surface}
        for name in ("x0", "y0"):
            values[name] = st.select_slider(
                f"Start {name[0]}", _start_grid(name, surface), getattr(base, name), key=name,
                bind="query-params", format_func=format_value,
                help=f"{_help(name)} Or click the surface.")
        values["iterations"] = st.select_slider(
            "Iterations", ITERATIONS, base.iterations, key="iterations", bind="query-params",
            help=_help("iterations"))
        with st.expander("Optimizers and learning rates", expanded=True,
                         icon=":material/route:"):
            for name in RACERS:
                values[name] = st.toggle(LABELS[name], getattr(base, name), key=name,
                                         bind="query-params", help=_help(name))
                values[f"{name}_lr"] = st.select_slider(
                    f"{LABELS[name]} learning rate", LR_GRID, base.lr(name), key=f"{name}_lr",
                    bind="query-params", format_func=format_value, disabled=not values[name],
                    label_visibility="collapsed", help=_help(f"{name}_lr"))
        with st.expander("Schedules", icon=":material/schedule:"):
            values["decay"] = st.select_slider("Exponential decay γ per step", DECAYS,
                                               base.decay, key="decay", bind="query-params",
                                               help=_help("decay"))
            values["cycle"] = st.select_slider("Cyclic: steps from low to high lr", CYCLES,
                                               base.cycle, key="cycle", bind="query-params",
                                               help=_help("cycle"))
        st.button("Reset to this surface's defaults", on_click=apply_settings,
                  args=(RACE, _widgets_of(base)),
                  icon=":material/restart_alt:", width="stretch")
    try:
        cfg = RaceConfig(**values)
    except ConfigError:  # e.g. a start point left outside a new window: fall back, say so
        cfg, problems = RaceConfig.with_fallbacks(values)
        return cfg, repeated_warnings(texts) + link_problems(RaceConfig, raw, cfg,
                                                             skip=just_set()) + problems
    return cfg, repeated_warnings(texts) + link_problems(RaceConfig, raw, cfg, skip=just_set())


cfg, warnings = controls()
warn(warnings)

preset_buttons(PRESETS, RACE, title="Learning-rate presets", widgets=_widgets_of,
               caption="SGD alone on the ill-conditioned quadratic, at three learning rates.")


@st.cache_data(max_entries=64, show_spinner=False)
def _race(cfg: RaceConfig):
    start = time.perf_counter()
    table = race(cfg)
    return table, time.perf_counter() - start


try:
    with st.spinner("Racing…"):  # shown only past half a second: 2,000 steps take a few
        table, seconds = _race(cfg)
except ConfigError as err:   # over a budget the server sets (SATLAB_MAX_COMPUTE)
    st.error(f"This race could not start: {err}", icon=":material/error:")
    st.stop()
lesson_box(PRESETS.values(), cfg, table)
if table.empty:
    st.info("Switch on at least one optimizer in the sidebar.", icon=":material/info:")
facts = standings(table, cfg) if len(table) else None
if facts is not None:
    blown = facts[facts["diverged"]]
    if len(blown):
        st.error("Diverged — the point became infinite or left the surface far behind, so the "
                 "path stops there: " + "; ".join(
                     f"**{r.label}** (lr {r.lr:g}) at iteration {int(r.diverged_at)}"
                     for r in blown.itertuples()) + ".", icon=":material/error:")

# A select_slider keeps its identity when the number of iterations changes (a slider's range
# is part of its identity); a value beyond the new end goes back to the end.
iteration = st.select_slider("Iteration", range(cfg.iterations + 1), cfg.iterations,
                             key="iteration", bind="query-params",
                             help="Marks where every optimizer is after this many steps.")
left, right = st.columns([1.3, 1])
with left:
    spec = optimizer_charts.contour(SURFACES[cfg.surface], table, iteration)
    # width="content": stretched to the column, the square surface would be squeezed.
    st.vega_lite_chart(spec.to_dict(validate=False), key=CLICK_KEY, on_select=_pick_start,
                       selection_mode=optimizer_charts.START_SELECTION, width="content")
    st.caption("Click a cell of the surface to start there; click the legend to pick "
               "optimizers (shift-click for several).")
with right:
    chart(optimizer_charts.loss_curves(table, iteration))

if facts is not None:
    st.dataframe(
        facts[["label", "lr", "loss", "x", "y", "minimum", "distance", "diverged_at"]],
        hide_index=True, width="stretch", column_config={
            "label": "Optimizer", "lr": st.column_config.NumberColumn("Learning rate",
                                                                      format="%g"),
            "loss": st.column_config.NumberColumn("Final loss", format="%.3e"),
            "x": st.column_config.NumberColumn("x", format="%.4f"),
            "y": st.column_config.NumberColumn("y", format="%.4f"),
            "minimum": "Nearest minimum",
            "distance": st.column_config.NumberColumn("Distance to it", format="%.2e"),
            "diverged_at": st.column_config.NumberColumn("Diverged at", format="%d")})
st.caption(f"{len(cfg.enabled())} optimizers × {cfg.iterations} steps with torch.optim on "
           f"2-element float64 tensors in {seconds:.2f} s. Momentum and Nesterov use momentum "
           "0.9; Adagrad, RMSprop and Adam torch's defaults otherwise.")
