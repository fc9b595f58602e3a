"""Widgets → one settings object: the only place the app turns controls into a configuration.

Every settings class (the Lab's `RunConfig`, `RecurrentConfig`, `AttentionConfig`, the race's
`RaceConfig`) gets its controls here. A `Form` says what the field metadata does not (yet): the
labels, the group titles, the select sliders' grids. Each field then gets a widget built from
its metadata (`Form.spec`: choices → selectbox, bool → toggle, grid → select slider, slider
range → slider, lo/hi → number box), bound to the URL with Streamlit's `bind="query-params"`
under the field's name (plus a `prefix` for a second set, Compare's `b_…`), so a page's settings
are always in its link.

A link is read by the settings' own checks before any widget sees it (app_pages.kit.links).
A classroom link (``?hide=optimizer,lr``) hides those controls; their values still come from
the link, so a teacher can fix what students may not change.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import streamlit as st

from core.attention.config import SCALE_GRID, AttentionConfig
from core.lab.config import RunConfig
from core.recurrent.config import RecurrentConfig, chunk_sizes
from core.settings import ConfigError, fallback_warning, inline, settings_named
from app_pages.kit.links import link_problems, link_texts, repeated_warnings, tidy_link

HIDE_KEY = "hide"
JUST_SET_KEY = "_kit_just_set"   # keys a callback has just set: the link still holds old values
EPOCH_KEY = "epoch"
EPOCH_RUN_KEY = "_kit_epoch_run"   # the run (or runs) the epoch scrubber last showed


# --- a form: how one settings class shows as widgets ---------------------------------------------
@dataclass(frozen=True)
class WidgetSpec:
    """Which widget a field gets, and what it offers (a pure value, tested without Streamlit)."""
    kind: str                    # "selectbox", "toggle", "select_slider", "slider" or "number"
    label: str
    value: Any                   # the widget's initial value, one it offers
    options: tuple = ()          # selectbox and select slider
    lo: float | None = None      # slider and number box
    hi: float | None = None
    step: float | None = None


@dataclass(frozen=True)
class Form:
    """How one settings class shows as widgets: what its field metadata does not say.

    A field's own `stops` (core.settings.setting: the budgets' knobs, whose refusals name a
    value to change to) are its select slider's values; `grids` gives the other sliders'."""
    settings: type                                   # RunConfig, RecurrentConfig, …
    groups: Mapping[str, str] = field(default_factory=dict)   # metadata group → expander title
    expanded: tuple[str, ...] = ()                   # groups open from the start
    labels: Mapping[str, str] = field(default_factory=dict)   # else the name, capitalised
    grids: Mapping[str, Sequence] = field(default_factory=dict)   # select sliders' values
    # name → (lo, hi, step), hi None: the field's own upper bound
    sliders: Mapping[str, tuple] = field(default_factory=dict)

    def __post_init__(self):
        stops = {name: list(f.metadata["stops"]) for name, f in self.fields.items()
                 if f.metadata.get("stops")}
        object.__setattr__(self, "grids", {**stops, **self.grids})

    @property
    def fields(self) -> dict[str, dataclasses.Field]:
        return self.settings.fields()

    def label(self, name: str) -> str:
        return self.labels.get(name, name.replace("_", " ").capitalize())

    def spec(self, name: str, default: Any, choices: Iterable | None = None) -> WidgetSpec:
        """The widget for field `name` starting at `default`; `choices` narrows a selectbox."""
        f = self.fields[name]
        m = f.metadata
        text = self.label(name)
        if m["choices"]:
            options = tuple(choices if choices is not None else m["choices"])
            return WidgetSpec("selectbox", text, default if default in options else options[0],
                              options)
        if isinstance(f.default, bool):
            return WidgetSpec("toggle", text, default)
        if name in self.grids:
            grid = tuple(choices if choices is not None else self.grids[name])
            return WidgetSpec("select_slider", text, default if default in grid else grid[0],
                              grid)
        if name in self.sliders:
            lo, hi, step = self.sliders[name]
            hi = type(lo)(m["hi"]) if hi is None else hi
            return WidgetSpec("slider", text, default, lo=lo, hi=hi, step=step)
        if (type(f.default) if f.default is not None else int) is int:
            return WidgetSpec("number", text, int(default), lo=int(m["lo"]), hi=int(m["hi"]),
                              step=1)
        return WidgetSpec("number", text, float(default), lo=float(m["lo"]), hi=float(m["hi"]))

    def snap(self, name: str, value: Any) -> Any:
        """The widget value closest to `value` (callbacks set widgets through session state,
        which only takes values the widget offers)."""
        grid = self.grids.get(name)
        if grid is None or value in grid:
            return value
        numbers = [v for v in grid if v is not None]
        if value is None:
            return None if None in grid else numbers[0]
        if value > 0 and all(v > 0 for v in numbers):
            return min(numbers, key=lambda v: abs(math.log(v) - math.log(value)))
        return min(numbers, key=lambda v: abs(v - value))

    def widget_values(self, values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        """Session-state entries that set the widgets of `values` (settings of this form)."""
        return {prefix + name: self.snap(name, value) for name, value in values.items()}


# Log-spaced grids: sliders over values that span orders of magnitude (the learning rate's stops
# are RunConfig.lr's own: the doctor's fixes pick from them too).
LAB = Form(
    RunConfig,
    groups={"data": "Data", "architecture": "Architecture", "initialisation": "Initialisation",
            "regularisation": "Normalisation & regularisation", "optimisation": "Optimisation",
            "clipping": "Gradient clipping", "run": "Run"},
    expanded=("data", "architecture", "optimisation"),
    labels={"lr": "Learning rate", "max_train": "Training examples",
            "sigma_w2": "σ_w² (mean-field)", "bias_value": "Bias value / σ_b²",
            "beta2": "β₂ (Adam) / α (RMSprop)", "beta1": "β₁ (Adam)",
            "eps": "ε (Adam, RMSprop)",
            "clip_norm": "Clip gradient norm at", "clip_value": "Clip gradient values at",
            "batch_norm": "Batch norm", "record_every": "Record every (steps)",
            "weight_decay": "L2 weight decay", "lr_decay": "Exponential decay per epoch",
            "model": "Model", "patience": "Early stopping patience (epochs)",
            "bias": "Biases", "loss": "Loss", "eval_every": "Validate every (steps)",
            "target_loss": "Target loss (steps to reach it)",
            "sharpness_every": "Sharpness every (steps)",
            "percentile_traces": "Percentile traces"},
    grids={
        "weight_decay": [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0],
        "clip_norm": [None, 0.01, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0],
        "clip_value": [None, 0.001, 0.01, 0.1, 0.5, 1.0, 5.0],
        "sharpness_every": [None, 1, 2, 5, 10, 20, 50, 100],
        "patience": [None, 1, 2, 3, 5, 10, 20, 50],
        "eps": [1e-12, 1e-11, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0],
        "eval_every": [None, 1, 2, 5, 10, 20, 50, 100, 200, 500],
        "target_loss": [None, 1e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0],
    },
    sliders={"depth": (1, 100, 1), "epochs": (1, 200, 1), "dropout": (0.0, 0.9, 0.05),
             "noise": (0.0, 1.0, 0.05), "lr_decay": (0.5, 1.0, 0.01)},
)

RECURRENT = Form(
    RecurrentConfig,
    groups={"data": "Data", "architecture": "Architecture", "initialisation": "Initialisation",
            "optimisation": "Optimisation", "clipping": "Gradient clipping", "run": "Run"},
    expanded=("data", "architecture", "initialisation", "optimisation"),
    labels={"dataset": "Dataset", "sequence": "Read the image by",
            "chunk": "Pixels per step (chunks)", "max_train": "Training images", "cell": "Cell",
            "hidden": "Hidden units", "layers": "Layers", "recurrent_init": "Recurrent weights",
            "forget_bias": "Forget/update-gate bias", "optimizer": "Optimizer",
            "lr": "Learning rate", "batch_size": "Batch size", "epochs": "Epochs",
            "clip_norm": "Clip gradient norm at", "seed": "Seed", "device": "Device",
            "record_every": "Measure ‖∂L/∂h_t‖ every (steps)"},
    # Select sliders over these values; a link holds the value as the slider shows it.
    grids={
        "chunk": sorted(set(chunk_sizes("digits")) | set(chunk_sizes("mnist"))),
        "forget_bias": [None, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 5.0],
        "lr": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0],
        "clip_norm": [None, 0.01, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0],
        "record_every": [None, 1, 2, 5, 10, 20, 50, 100],
    },
    sliders={"epochs": (1, None, 1)},
)
ATTENTION = Form(
    AttentionConfig,
    groups={"attention": "Attention", "classifier": "Classifier"},
    expanded=("attention", "classifier"),
    labels={"tokens": "Tokens", "d": "Query/key width d", "scaled": "Scale logits by 1/√d",
            "logit_scale": "Logit scale", "seed": "Seed", "epochs": "Epochs",
            "lr": "Learning rate", "optimizer": "Optimizer", "batch_size": "Batch size",
            "max_train": "Training digits"},
    grids={"logit_scale": SCALE_GRID,
           "lr": (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)},
    sliders={"epochs": (1, None, 1)},
)


def widget(form: Form, name: str, default: Any, choices: Iterable | None = None,
           prefix: str = "", mark: str = "", unused: str = "") -> Any:
    """One bound widget for one field; its key (and URL parameter) is prefix + the field's name.
    `unused`: why the setting has no effect with the others (`Settings.inert`): the widget is
    disabled and its help says why; it keeps its value (and the link's)."""
    spec = form.spec(name, default, choices)
    help_text = form.fields[name].metadata["help"]
    if unused:
        help_text = f"**No effect with these settings:** {unused}.\n\n{help_text}"
    common = dict(key=prefix + name, help=help_text, bind="query-params",
                  disabled=bool(unused))
    text = spec.label + (f" {mark}" if mark else "")
    if spec.kind == "selectbox":  # raw values, no format_func: a link holds the option as shown
        return st.selectbox(text, spec.options, index=spec.options.index(spec.value), **common)
    if spec.kind == "toggle":
        return st.toggle(text, value=spec.value, **common)
    if spec.kind == "select_slider":
        return st.select_slider(text, spec.options, value=spec.value, **common,
                                format_func=lambda v: form.settings.format_setting(name, v))
    if spec.kind == "slider":
        return st.slider(text, spec.lo, spec.hi, spec.value, spec.step, **common)
    if spec.step == 1:  # a float box of whole numbers: Streamlit's integer box raises
        # OverflowError on `inf` from a link, and browser Back reseeds a bound widget from an
        # entry `tidy_link` cannot rewrite (a float box falls back to its default instead).
        # "%.0f", not "%d": Streamlit logs a warning with a stack for "%d" on a float, every run.
        return int(st.number_input(text, float(spec.lo), float(spec.hi), float(spec.value),
                                   1.0, format="%.0f", **common))
    return st.number_input(text, spec.lo, spec.hi, spec.value, format="%g", **common)


def config_form(form: Form, fields: list[str] | None = None, *, defaults: Any = None,
                options: dict[str, Iterable] | None = None, form_key: str = "settings",
                submit_label: str = "Train") -> tuple[Any, list[str]]:
    """Render the controls for `fields` in a sidebar form; return (settings, warnings).

    Fields not shown take the page's `defaults`. Called once per page run, before any chart.
    """
    with st.sidebar.form(form_key, border=False):
        st.form_submit_button(submit_label, type="primary", width="stretch",
                              help="Train this configuration (instant if it ran before).")
        return config_controls(form, fields, defaults=defaults, options=options)


def config_controls(form: Form, fields: list[str] | None = None, *, defaults: Any = None,
                    options: dict[str, Iterable] | None = None, prefix: str = "",
                    compare_to: Any = None) -> tuple[Any, list[str]]:
    """The grouped controls alone (inside a form or sidebar the caller opens); return
    (settings, warnings). `fields`: the form's settings shown (default: all of them).

    `prefix` keeps a second set of controls apart (keys and URL parameters `b_lr`, …);
    with `compare_to`, controls whose value differs from those settings are marked.
    """
    fields = list(form.fields) if fields is None else fields
    defaults = form.settings() if defaults is None else defaults
    hidden = hidden_settings(form) & set(fields)
    tidy_link(form, [n for n in fields if n not in hidden], defaults, options, prefix)
    texts = link_texts(prefix + k for k in fields)
    raw_url = {k: texts[prefix + k][-1] for k in fields if prefix + k in texts}
    values: dict[str, Any] = {}
    by_group: dict[str, list[str]] = {}
    for name in fields:
        by_group.setdefault(form.fields[name].metadata["group"], []).append(name)
    current = {n: _current(form, prefix, n, getattr(defaults, n)) for n in fields}
    # Widgets in a form change together on submit: what is inert follows the settings trained.
    unused = form.settings.with_fallbacks(current, defaults=defaults)[0].inert()
    for group, names in by_group.items():
        shown = [n for n in names if n not in hidden]
        if not shown:
            continue
        changed = {n for n in shown if compare_to is not None and n not in unused
                   and current[n] != getattr(compare_to, n)}
        with st.expander(form.groups[group] + (" ●" if changed else ""),
                         expanded=bool(changed) or group in form.expanded):
            for name in shown:
                values[name] = widget(form, name, getattr(defaults, name),
                                      (options or {}).get(name), prefix,
                                      "● changed" if name in changed else "",
                                      unused.get(name, ""))
    for name in hidden:  # classroom: fixed by the link, not shown
        try:
            values[name] = form.settings.parse_setting(name, raw_url[name]) if name in raw_url \
                else getattr(defaults, name)
        except ConfigError:
            values[name] = getattr(defaults, name)
    cfg, warnings = resolve(values, raw_url, defaults, prefix, form, skip=just_set())
    warnings = repeated_warnings(texts) + warnings
    if hidden:  # read-only, as the classroom editor promises
        st.caption("Set by your teacher: " + ", ".join(
            f"{form.label(name)} **{form.settings.format_setting(name, getattr(cfg, name))}**"
            for name in fields if name in hidden))
    return cfg, warnings


def resolve(values: dict[str, Any], raw: dict[str, str], defaults: Any, prefix: str = "",
            form: Form = LAB, skip: Iterable[str] = ()) -> tuple[Any, list[str]]:
    """The settings of the controls' `values`, and a warning for each value not used.

    Combinations the widgets allow but the settings class forbids fall back to the page's
    defaults (one warning each); so does what the link (`raw`) asked for that no widget took.
    """
    cfg, problems = form.settings.with_fallbacks(values, defaults=defaults)
    replaced = settings_named(problems)  # said once, not twice
    raw = {name: text for name, text in raw.items() if name not in replaced}
    return cfg, link_problems(form.settings, raw, cfg, prefix=prefix, offered=form.grids,
                              skip=skip) + problems


def _current(form: Form, prefix: str, name: str, default: Any) -> Any:
    """A widget's value before it is drawn this run (session state, else the link, else default)."""
    key = prefix + name
    if key in st.session_state:
        return st.session_state[key]
    if key in st.query_params:
        try:
            return form.settings.parse_setting(name, st.query_params[key])
        except ConfigError:
            return default
    return default


def hidden_settings(form: Form) -> set[str]:
    """The settings a classroom link hides: the editor's choice once it is drawn, else the link's
    `hide`, by name and comma-separated as the README writes it (`hide=optimizer,lr`) or by
    label and repeated (`hide=Optimizer&hide=Learning+rate`, as links written while the editor
    was bound to the link have it: Streamlit writes a bound multiselect's options as shown)."""
    if HIDE_KEY in st.session_state:
        return set(st.session_state[HIDE_KEY])
    asked = {part.strip() for item in st.query_params.get_all(HIDE_KEY) for part in item.split(",")}
    return {name for name in form.fields if name in asked or form.label(name) in asked}


def classroom_editor(form: Form, fields: list[str]) -> None:
    """Lets a teacher pick controls to hide; the choice lives in the link (?hide=…).

    The editor starts from the link's `hide` and writes its choice back as the README writes
    it (names, comma-separated). It is not bound to the link: a bound multiselect drops from
    the link, on opening, a value it cannot read as its options (a name where it shows
    labels), and the link a student copies would no longer hide anything."""
    if HIDE_KEY not in st.session_state:
        st.session_state[HIDE_KEY] = [name for name in fields if name in hidden_settings(form)]
    with st.sidebar.expander("Classroom link"):
        st.multiselect("Hide these controls", fields, format_func=form.label, key=HIDE_KEY,
                       on_change=_write_hide,
                       help="Copy the page's link after choosing: students who open it see "
                            "the current values of these settings but cannot change them.")


def _write_hide() -> None:
    if st.session_state[HIDE_KEY]:
        st.query_params[HIDE_KEY] = ",".join(st.session_state[HIDE_KEY])
    else:
        del st.query_params[HIDE_KEY]


def apply_settings(form: Form, values: Mapping[str, Any], prefix: str = "") -> None:
    """The one callback that sets widgets (a preset, a fix, a clicked chart, "Copy A into B"):
    the bound widgets and so the link take `values`; the rerun that follows uses them.

    A setting a classroom link hides has no widget: its value is written into the link
    itself, and a change to it is announced (the teacher had fixed it)."""
    hiding = hidden_settings(form)
    hidden = [name for name in form.fields if name in values and name in hiding]
    changed = []
    for name in hidden:
        text = form.settings.format_setting(name, values[name])
        if values[name] != _current(form, prefix, name, getattr(form.settings(), name)):
            changed.append(f"{form.label(name)} → {text}")
            st.query_params[prefix + name] = text
    if changed:
        st.toast("Changed settings your teacher's link had fixed: " + ", ".join(changed) + ".",
                 icon=":material/school:", duration="long")
    entries = form.widget_values({k: v for k, v in values.items() if k not in hidden}, prefix)
    st.session_state.update(entries)
    st.session_state[JUST_SET_KEY] = st.session_state.get(JUST_SET_KEY, set()) | set(entries)


def just_set() -> set[str]:
    """The widget keys a callback set before this run (read once: the next run's link is
    current again)."""
    return st.session_state.pop(JUST_SET_KEY, set())


def labelled_choice(label: str, options: Sequence[str], labels: Mapping[str, str], *, key: str,
                    default: str, help: str, why_not: str) -> tuple[str, list[str]]:
    """A selectbox that shows each option's label (a stored run's description) while the link
    holds the option itself (`key=<run key>`); returns (the option, warnings).

    Not Streamlit's `bind`: it writes a selectbox's shown label into the link, a long text
    that stops opening once the label changes. A link value not among the options falls back
    to `default`, with a warning saying `why_not`."""
    warnings = []
    if key not in st.session_state:
        asked = st.query_params.get(key)
        if asked is not None and asked not in labels:
            warnings.append(fallback_warning(key, inline(asked), why_not, labels[default]))
        st.session_state[key] = asked if asked in labels else default
    picked = st.selectbox(label, options, format_func=labels.get, key=key, help=help)
    st.query_params[key] = picked
    return picked, warnings


def warn(messages: Iterable[str], who: str = "") -> None:
    """The link's and the settings' problems, one warning each (`who`: "A", "B" on Compare)."""
    for message in messages:
        st.warning(f"{who}: {message}" if who else message, icon=":material/warning:")


def epoch_slider(run: Any, last: int, *, default: int | None = None, help: str,
                 container=st, label: str = "Epoch") -> int:
    """The one epoch scrubber of a page (bound to the link as `epoch`), for the run `run`
    (any hashable identity: a key, a pair of keys) whose last epoch is `last`; returns the
    epoch, 0 being the network at initialisation.

    Its value follows the run shown: another run starts at `default` (its last epoch unless
    given) rather than at the previous run's epoch, which may not exist in this one (a slider
    value beyond its maximum raises). A link's epoch holds on the session's first run."""
    default = last if default is None else default
    shown = st.session_state.get(EPOCH_RUN_KEY)
    if shown is not None and shown != run:
        st.session_state[EPOCH_KEY] = default
    elif st.session_state.get(EPOCH_KEY, 0) > max(last, 1):
        st.session_state[EPOCH_KEY] = last
    st.session_state[EPOCH_RUN_KEY] = run
    epoch = container.slider(label, 0, max(last, 1), default, key=EPOCH_KEY,
                             bind="query-params", help=help, disabled=last == 0)
    return min(epoch, last)
