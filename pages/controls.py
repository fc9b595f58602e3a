"""Widgets → one `RunConfig`: the only place the app turns controls into a configuration.

Each `RunConfig` field gets a widget built from the field's own metadata (label, help text,
range, choices), bound to the URL with Streamlit's `bind="query-params"` under the field's name,
so a page's settings are always in its link. Widgets sit in a form: a run starts on submit.

A link with bad values (``?depth=-3&activation=banana``) still opens: the binding drops what the
widget cannot take, and `RunConfig.url_problems` says which values were dropped and what is used instead.
A classroom link (``?hide=optimizer,lr``) hides those controls; their values still come from
the link, so a teacher can fix what students may not change.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import streamlit as st

from core.config import FIELDS, RunConfig
from core.settings import ConfigError, settings_named

GROUPS = {
    "data": "Data",
    "architecture": "Architecture",
    "initialisation": "Initialisation",
    "regularisation": "Normalisation & regularisation",
    "optimisation": "Optimisation",
    "clipping": "Gradient clipping",
    "run": "Run",
}
HIDE_KEY = "hide"

# Log-spaced grids: sliders over values that span orders of magnitude.
_LR = [1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
       1.0, 2.0, 5.0, 10.0]
_STEP_GRIDS: dict[str, list] = {
    "lr": _LR,
    "width": [2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024],
    "batch_size": [8, 16, 32, 64, 128, 256, 512, 1024, 2048],
    "max_train": [None, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 55000],
    "weight_decay": [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
    "clip_norm": [None, 0.01, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0],
    "clip_value": [None, 0.001, 0.01, 0.1, 0.5, 1.0, 5.0],
    "record_every": [None, 1, 2, 5, 10, 20, 50, 100],
    "patience": [None, 1, 2, 3, 5, 10, 20, 50],
}
_SLIDERS = {"depth": (1, 100, 1), "epochs": (1, 200, 1), "dropout": (0.0, 0.9, 0.05),
            "noise": (0.0, 1.0, 0.05), "lr_decay": (0.5, 1.0, 0.01)}
_LABELS = {"lr": "Learning rate", "max_train": "Training examples", "sigma_w2": "σ_w² (mean-field)",
           "bias_value": "Bias value / σ_b²", "beta2": "β₂ (Adam) / α (RMSprop)",
           "beta1": "β₁ (Adam)", "clip_norm": "Clip gradient norm at",
           "clip_value": "Clip gradient values at", "batch_norm": "Batch norm",
           "record_every": "Record every (steps)", "weight_decay": "L2 weight decay",
           "lr_decay": "Exponential decay per epoch", "model": "Model",
           "patience": "Early stopping patience (epochs)"}


def label(name: str) -> str:
    return _LABELS.get(name, name.replace("_", " ").capitalize())


def _widget(name: str, default: Any, options: dict[str, Iterable] | None, prefix: str = "",
            mark: str = "") -> Any:
    """One bound widget for one field; its key (and URL parameter) is prefix + the field's name."""
    f = FIELDS[name]
    m = f.metadata
    common = dict(key=prefix + name, help=m["help"], bind="query-params")
    text = label(name) + (f" {mark}" if mark else "")
    if m["choices"]:
        choices = list((options or {}).get(name, m["choices"]))
        return st.selectbox(text, choices, index=choices.index(default)
                            if default in choices else 0, **common)
    if isinstance(f.default, bool):
        return st.toggle(text, value=default, **common)
    if name in _STEP_GRIDS:
        grid = list((options or {}).get(name, _STEP_GRIDS[name]))
        value = default if default in grid else grid[0]
        return st.select_slider(text, grid, value=value, **common,
                                format_func=lambda v, n=name: RunConfig.format_setting(n, v))
    if name in _SLIDERS:
        lo, hi, step = _SLIDERS[name]
        return st.slider(text, lo, hi, default, step, **common)
    kind = type(f.default) if f.default is not None else int
    if kind is int:
        return st.number_input(text, int(m["lo"]), int(m["hi"]), int(default), 1, **common)
    return st.number_input(text, float(m["lo"]), float(m["hi"]), float(default),
                           format="%g", **common)


def config_form(fields: list[str], *, defaults: RunConfig = RunConfig(),
                options: dict[str, Iterable] | None = None, form_key: str = "settings",
                submit_label: str = "Train") -> tuple[RunConfig, list[str]]:
    """Render the controls for `fields` in a sidebar form; return (config, warnings).

    Fields not shown take the page's `defaults`. Called once per page run, before any chart.
    """
    with st.sidebar.form(form_key, border=False):
        st.form_submit_button(submit_label, type="primary", width="stretch",
                              help="Train this configuration (instant if it ran before).")
        return config_controls(fields, defaults=defaults, options=options)


def config_controls(fields: list[str], *, defaults: RunConfig = RunConfig(),
                    options: dict[str, Iterable] | None = None, prefix: str = "",
                    compare_to: RunConfig | None = None) -> tuple[RunConfig, list[str]]:
    """The grouped controls alone (inside a form the caller opens); return (config, warnings).

    `prefix` keeps a second set of controls apart (keys and URL parameters `b_lr`, …);
    with `compare_to`, controls whose value differs from that config are marked.
    """
    raw_url = {k: st.query_params.get(prefix + k) for k in fields if prefix + k in st.query_params}
    hidden = {name for item in st.query_params.get_all(HIDE_KEY) for name in item.split(",")}
    hidden &= set(fields)
    values: dict[str, Any] = {}
    by_group: dict[str, list[str]] = {}
    for name in fields:
        by_group.setdefault(FIELDS[name].metadata["group"], []).append(name)
    for group, names in by_group.items():
        shown = [n for n in names if n not in hidden]
        if not shown:
            continue
        changed = {n for n in shown if compare_to is not None
                   and _current(prefix, n, getattr(defaults, n)) != getattr(compare_to, n)}
        with st.expander(GROUPS[group] + (" ●" if changed else ""),
                         expanded=bool(changed) or group in ("architecture", "optimisation",
                                                             "data")):
            for name in shown:
                values[name] = _widget(name, getattr(defaults, name), options, prefix,
                                       "● changed" if name in changed else "")
    for name in hidden:  # classroom: fixed by the link, not shown
        try:
            values[name] = RunConfig.parse_setting(name, raw_url[name]) if name in raw_url \
                else getattr(defaults, name)
        except ConfigError:
            values[name] = getattr(defaults, name)
    return resolve(values, raw_url, defaults, prefix)


def resolve(values: dict[str, Any], raw: dict[str, str], defaults: RunConfig,
            prefix: str = "") -> tuple[RunConfig, list[str]]:
    """The config of the controls' `values`, and a warning for each value not used.

    Combinations the widgets allow but the config forbids fall back to the page's defaults
    (one warning each); so does what the link (`raw`) asked for that no widget took.
    """
    cfg, problems = RunConfig.with_fallbacks(values, defaults=defaults)
    replaced = settings_named(problems)  # said once, not twice
    raw = {name: text for name, text in raw.items() if name not in replaced}
    return cfg, RunConfig.url_problems(raw, cfg, prefix=prefix) + problems


def _current(prefix: str, name: str, default: Any) -> Any:
    """A widget's value before it is drawn this run (session state, else the link, else default)."""
    key = prefix + name
    if key in st.session_state:
        return st.session_state[key]
    if key in st.query_params:
        try:
            return RunConfig.parse_setting(name, st.query_params[key])
        except ConfigError:
            return default
    return default


def classroom_editor(fields: list[str]) -> None:
    """Lets a teacher pick controls to hide; the choice lives in the link (?hide=…)."""
    with st.sidebar.expander("Classroom link"):
        st.multiselect("Hide these controls", fields, format_func=label, key=HIDE_KEY,
                       bind="query-params",
                       help="Copy the page's link after choosing: students who open it see "
                            "the current values of these settings but cannot change them.")


def snap_to_widget(name: str, value: Any) -> Any:
    """The widget value closest to `value` (fixes and presets set widgets through session state,
    which only takes values the widget offers)."""
    grid = _STEP_GRIDS.get(name)
    if grid is None or value in grid:
        return value
    numbers = [v for v in grid if v is not None]
    if value is None:
        return None if None in grid else numbers[0]
    positive = value > 0 and all(v > 0 for v in numbers)
    if positive:
        return min(numbers, key=lambda v: abs(math.log(v) - math.log(value)))
    return min(numbers, key=lambda v: abs(v - value))
