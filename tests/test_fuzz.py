"""Fuzzing every input surface with Hypothesis: `RunConfig` fields, every page's link
parameters and the command line.

Bad input must give one clear message and the defaults, never a traceback: a `ConfigError`
that names the setting and what it allows, a link that opens with a warning per value it could
not use, or `python -m core: error: …` on one line with exit status 2. Each property runs 500
cases, derandomized so that CI runs the same ones every time. The pages themselves are opened a
few times each in AppTest with junk in their links (at the end: AppTest takes about a second a
run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from core.attention import config as attention

from core.optimizers import race as optimizers

from core.recurrent import config as recurrent_config

from core.lab import sweep
from core.lab.config import FIELDS, ConfigError, RunConfig
from core.settings import describe, field_kind, format_value, is_optional
from core.tools import cli as cli_module
from core.tools.cli import build_parser
from app_pages.kit.controls import resolve
from tests.helpers import open_page

FUZZ = settings(max_examples=500, derandomize=True, deadline=None, database=None,
                # No "explain" phase: tracing which lines a failure ran costs seconds, and the
                # shrunk failing case says enough.
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])

# --- what a user can type ----------------------------------------------------------------------
PATHS = ["../../etc/passwd", "/etc/passwd", "/tmp/x", "..\\x", "~/.ssh/id_rsa",
         "file:///etc/passwd", "C:\\Windows\\win.ini"]
WORDS = ["", " ", "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e999", "-1e999", "1e308",
         "0", "-0", "-1", "0.0", "1.5", "3", "1e-320", "2147483648", "9" * 50, "9" * 5000,
         "1_000", "0x10", "1e3", " 8 ", "true", "false", "TRUE", "yes", "none", "off", "all",
         "auto", "None", "null", "relu", "cnn", "mnist", "moons", "sgd", "beale", "rows",
         "depth", "1,2,3", "2,,4", ",", "{}", "[]", "\x00", "%00", "\u0663", "\uff11\uff12",
         "<script>alert(1)</script>", "' OR 1=1 --", *PATHS]
junk_text = st.one_of(st.sampled_from(WORDS), st.text(max_size=16),
                      st.integers().map(str), st.floats().map(repr))
# Python values of every kind, for RunConfig(**fields) from code.
junk_objects = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.sampled_from([2**31, 2**63, 10**400, -10**400, 10**5000, -(10**5000)]),
    st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, 1e-320, -0.0, 1e308]),
    st.text(max_size=16), st.sampled_from(WORDS), st.binary(max_size=10),
    st.lists(st.integers(), max_size=3), st.tuples(st.integers()),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    # Constants where a strategy would cost more time than it finds (decimals, fractions).
    st.sampled_from([np.int64(4), np.float64(0.5), np.float32(0.5), np.bool_(True),
                     np.float64("nan"), np.array([1, 2]), np.array(["relu"]), object(), print,
                     Decimal("NaN"), Decimal("4"), Decimal("1e400"), Fraction(1, 3),
                     Fraction(4, 1), 1 + 2j, complex("nan"), b"relu", bytearray(b"4"), {"relu"},
                     frozenset(), range(3), ...]),
)


def valid_values(f: dataclasses.Field) -> st.SearchStrategy:
    """Any value the field allows."""
    m = f.metadata
    kind = field_kind(f)
    if m.get("choices"):
        s = st.sampled_from(m["choices"])
    elif kind is bool:
        s = st.booleans()
    elif kind is int:
        s = st.integers(int(m["lo"]), int(m["hi"]))
    else:
        s = st.floats(m["lo"], m["hi"], allow_nan=False)
    return s | st.none() if is_optional(f) else s


def valid_text(name: str, f: dataclasses.Field) -> st.SearchStrategy:
    """A value the field allows, as a link writes it."""
    if not is_checked(f):  # RaceConfig's start point
        return st.floats(-10, 10).map(repr)
    return valid_values(f).map(lambda v: format_value(v, f.metadata["none"]))


def link_params(fields: dict, *, prefix: str = "", extra: dict | None = None,
                max_size: int = 8) -> st.SearchStrategy:
    """A link's query parameters: known names with junk or valid text, plus names nobody knows."""
    known = {prefix + name: junk_text | valid_text(name, f) for name, f in fields.items()}
    known.update(extra or {})
    return st.builds(
        lambda chosen, unknown: {**unknown, **dict(chosen)},
        st.lists(pairs(known), max_size=max_size),
        st.dictionaries(st.text(max_size=12) | st.sampled_from(["hide", "tab", "epoch", "b_"]),
                        junk_text, max_size=2))


def pairs(strategies: dict) -> st.SearchStrategy:
    """(name, value) with the value drawn from that name's strategy (one_of, not flatmap: a
    strategy made anew for every draw would triple the time a case takes)."""
    return st.one_of(*[st.tuples(st.just(name), s) for name, s in strategies.items()])


valid_configs = st.lists(pairs({n: valid_values(f) for n, f in FIELDS.items()}), max_size=8).map(
    lambda values: RunConfig.with_fallbacks(dict(values))[0])


# --- an independent statement of what each field allows --------------------------------------
INVALID = object()


def allowed(f: dataclasses.Field, value):
    """The value RunConfig should keep for `value` (ints as float for float fields), or INVALID."""
    m, kind = f.metadata, field_kind(f)
    if value is None:
        return None if is_optional(f) else INVALID
    if kind is bool:
        return value if type(value) is bool else INVALID
    if kind is str:
        return value if isinstance(value, str) and value in m["choices"] else INVALID
    if type(value) is bool or not isinstance(value, (int, float)):
        return INVALID
    if kind is int:
        if isinstance(value, float):
            if not math.isfinite(value) or value != int(value):
                return INVALID
            value = int(value)
    else:
        try:
            value = float(value)
        except OverflowError:
            return INVALID
        if not math.isfinite(value):
            return INVALID
    return value if m["lo"] <= value <= m["hi"] else INVALID


def is_checked(f: dataclasses.Field) -> bool:
    """Whether the field's metadata holds its range (all but RaceConfig's start point)."""
    m = f.metadata
    return m["choices"] is not None or m["lo"] is not None or field_kind(f) is bool


def assert_valid(cfg, fields=FIELDS) -> None:
    """Every field of `cfg` holds an allowed value of its own type."""
    for name, f in fields.items():
        value = getattr(cfg, name)
        if not is_checked(f):
            continue  # RaceConfig's start point: its range is the surface's window
        kept = allowed(f, value)
        assert kept is not INVALID and type(kept) is type(value) and kept == value, (name, value)


def clear(message: str) -> None:
    """One line, short, no traceback."""
    assert "\n" not in message and "Traceback" not in message, message
    assert len(message) < 400, message


def named(warnings: list[str], prefix: str = "") -> set[str]:
    """The settings the warnings name: 'depth: …' or '`depth=…` …' (prefix stripped)."""
    out = set()
    for w in warnings:
        clear(w)
        m = re.match(r"`?([A-Za-z0-9_]+)[:=]", w)
        assert m, f"a warning that names no setting: {w!r}"
        out.add(m.group(1).removeprefix(prefix))
    return out


# === config fields =============================================================================
# RunConfig, and the configs of the Recurrent, Attention and Optimizers pages, which share its
# field metadata and checks.
CONFIGS = {cls.__name__: (cls, cls.fields()) for cls in [
    RunConfig, recurrent_config.RecurrentConfig, attention.AttentionConfig, optimizers.RaceConfig]}
EVERY_FIELD = [(c, n) for c, (_, fields) in CONFIGS.items() for n in fields]


@FUZZ
@given(data=st.data())
def test_any_value_of_any_field_gives_a_config_or_a_message_naming_it(data):
    config, name = data.draw(st.sampled_from(EVERY_FIELD), label="field")
    f = CONFIGS[config][1][name]
    value = data.draw(junk_objects | valid_values(f), label="value")
    check_one_field(config, name, value)


@pytest.mark.parametrize("value", [10**5000, -(10**400), "9" * 5000, np.array([1, 2]),
                                   np.array(["relu"]), math.nan, -math.inf, "../../etc/passwd"],
                         ids=["10**5000", "-10**400", "long text", "array", "text array", "nan",
                              "-inf", "path"])
def test_the_worst_values_of_every_field(value):
    for config, name in EVERY_FIELD:
        check_one_field(config, name, value)


def check_one_field(config: str, name: str, value) -> None:
    cls, fields = CONFIGS[config]
    f = fields[name]
    checked = is_checked(f)
    expected = allowed(f, value) if checked else None
    try:
        cfg = cls(**{name: value})
    except ConfigError as err:
        clear(str(err))
        assert str(err).startswith(f"{err.field}: ")
        if expected is INVALID:
            assert err.field == name and describe(f).split(" (or empty")[0] \
                in str(err), str(err)
        elif checked:  # a rule across settings (none holds for a single change from the defaults)
            assert err.field in fields, str(err)
        else:  # RaceConfig's start point: its range is the surface's window
            assert err.field == name and "window" in str(err), str(err)
        return
    assert expected is not INVALID, f"{config}({name}={value!r}) was accepted"
    if checked:
        assert getattr(cfg, name) == expected and type(getattr(cfg, name)) is type(expected)
    assert_valid(cfg, fields)


@FUZZ
@given(values=st.lists(pairs({n: junk_objects | valid_values(f) for n, f in FIELDS.items()}),
                      max_size=12).map(dict))
def test_many_fields_at_once_give_a_valid_config_or_one_clear_message(values):
    try:
        cfg = RunConfig(**values)
    except ConfigError as err:
        clear(str(err))
        assert err.field in FIELDS and str(err).startswith(f"{err.field}: "), str(err)
        bad = {n for n, v in values.items() if allowed(FIELDS[n], v) is INVALID}
        if bad:  # fields are checked before the rules across them
            assert err.field in bad
        return
    assert_valid(cfg)
    assert all(allowed(FIELDS[n], v) == getattr(cfg, n) for n, v in values.items())


# === links: every page's query parameters ======================================================
# Each page binds its widgets to the link; a widget drops a value it cannot take, and the page
# falls back to its default and says so. What turns a link into a config is in core (and in
# app_pages/kit/controls.py, the one place widgets become a RunConfig), so it is fuzzed here without
# Streamlit; test_every_page_reads_its_link_through_a_fuzzed_function keeps this list complete.
def taken(parse, name: str, text: str, value) -> bool:
    """Whether the link's `name=text` is what the config ended up with."""
    try:
        return parse(name, text) == value
    except ConfigError:
        return False


def widget_values(params: dict, fields: dict, defaults, parse, prefix: str = "") -> dict:
    """What bound widgets hold for a link: its value where valid, else the page's default."""
    values = {}
    for name in fields:
        values[name] = getattr(defaults, name)
        if prefix + name in params:
            with contextlib.suppress(ConfigError):
                values[name] = parse(name, params[prefix + name])
    return values


def check_link(params: dict, cfg, warnings: list[str], fields: dict, parse,
               prefix: str = "") -> None:
    """A valid config, and every setting of the link it did not take named by a warning."""
    assert_valid(cfg, fields)
    said = named(warnings, prefix)
    for key, text in params.items():
        name = key.removeprefix(prefix)
        if key.startswith(prefix) and name in fields:
            assert taken(parse, name, text, getattr(cfg, name)) or name in said, \
                (key, text, getattr(cfg, name), warnings)


@FUZZ
@given(params=link_params(FIELDS, extra={"hide": st.sampled_from(["lr", "depth,lr", "x"])}),
       defaults=valid_configs)
def test_run_settings_in_a_link(params, defaults):
    """Lab, Activations, Playground, Initialization, Sweep (its base) and Compare's A: bound
    widgets, then `resolve` (app_pages/kit/controls.py: `RunConfig.with_fallbacks`, `url_problems`)."""
    values = widget_values(params, FIELDS, defaults, RunConfig.parse_setting)
    raw = {k: v for k, v in params.items() if k in FIELDS}
    cfg, warnings = resolve(values, raw, defaults)
    check_link(params, cfg, warnings, FIELDS, RunConfig.parse_setting)
    # The same link read in one go, as a sweep's link is.
    cfg, warnings = RunConfig.from_params_lenient(params, defaults=defaults)
    check_link(params, cfg, warnings, FIELDS, RunConfig.parse_setting)


@FUZZ
@given(params=link_params(FIELDS, prefix="b_") | link_params(FIELDS, prefix="b_", max_size=30),
       a=valid_configs)
def test_compare_b_settings_in_a_link(params, a):
    """Compare's B: its own `b_…` parameters, starting from A with batch norm toggled."""
    defaults = a.replace(batch_norm=not a.batch_norm) if a.batch_size > 1 else a
    values = widget_values(params, FIELDS, defaults, RunConfig.parse_setting, prefix="b_")
    raw = {k[2:]: v for k, v in params.items() if k.startswith("b_") and k[2:] in FIELDS}
    cfg, warnings = resolve(values, raw, defaults, prefix="b_")
    check_link(params, cfg, warnings, FIELDS, RunConfig.parse_setting, prefix="b_")


def axis_values(fields=FIELDS) -> st.SearchStrategy:
    """'2,4,8'-like text: a few valid or junk values of some setting, comma-separated."""
    one = st.sampled_from(list(fields)).flatmap(lambda n: junk_text | valid_text(n, fields[n]))
    return st.lists(one, max_size=5).map(",".join) | junk_text


SWEEP_DEFAULTS = [sweep.SweepSpec(),
                  sweep.SweepSpec(RunConfig(epochs=5, optimizer="sgd", lr=0.05,
                                            init="xavier_normal"), "depth", (2, 4, 8, 16),
                                  "activation", ("relu", "tanh", "sigmoid")),
                  sweep.SweepSpec(RunConfig(model="cnn", depth=2, batch_norm=True), "lr",
                                  (0.01, 0.1), "batch_size", (2, 64))]


@FUZZ
@given(params=link_params(FIELDS, extra={
           "x": st.sampled_from(sweep.AXES) | junk_text, "y": st.sampled_from(sweep.AXES)
           | junk_text, "xv": axis_values(), "yv": axis_values()}),
       defaults=st.sampled_from(SWEEP_DEFAULTS))
def test_sweep_link(params, defaults):
    spec, warnings = sweep.SweepSpec.from_params_lenient(params, defaults=defaults)
    cells = spec.cells()  # each a RunConfig, so each checked
    assert isinstance(spec, sweep.SweepSpec) and 1 <= len(cells) <= sweep.MAX_CELLS
    assert_valid(cells[0])
    assert_valid(cells[-1])
    said = named(warnings)
    for axis in ("x", "y"):
        if axis in params:
            assert getattr(spec, axis) == params[axis] or axis in said, (axis, warnings)
    check_link(params, spec.base, [w for w in warnings if not w.startswith(("x:", "y:"))],
               FIELDS, RunConfig.parse_setting)
    # The page's axis selectboxes offer AXES alone: any other name is reported.
    used = {axis: params[axis] if params.get(axis) in sweep.AXES else getattr(defaults, axis)
            for axis in ("x", "y")}
    problems = sweep.axis_problems({a: params.get(a) for a in ("x", "y")}, used)
    assert named(problems) == {a for a in ("x", "y") if a in params and params[a] != used[a]}


@FUZZ
@given(params=link_params(optimizers.RaceConfig.fields()))
def test_optimizers_link(params):
    race, fields = optimizers.RaceConfig, optimizers.RaceConfig.fields()
    cfg, warnings = race.from_params_lenient(params)
    for name in optimizers.WINDOW:
        lo, hi = optimizers.window_range(name, cfg.surface)
        assert lo <= getattr(cfg, name) <= hi
    parse = lambda name, text: race.parse_setting(name, text, vars(cfg))  # noqa: E731
    check_link(params, cfg, warnings, fields, parse)
    raw = {k: v for k, v in params.items() if k in fields}
    check_link(params, cfg, race.url_problems(raw, cfg), fields, parse)


@FUZZ
@given(params=link_params(recurrent_config.RecurrentConfig.fields()))
def test_recurrent_link(params):
    rnn = recurrent_config.RecurrentConfig
    fields, parse = rnn.fields(), rnn.parse_setting
    cfg, warnings = recurrent_config.RecurrentConfig.from_params_lenient(params)
    check_link(params, cfg, warnings, fields, parse)
    # The page: bound widgets, then with_fallbacks and url_problems.
    values = widget_values(params, fields, recurrent_config.DEFAULTS, parse)
    cfg, problems = recurrent_config.RecurrentConfig.with_fallbacks(values)
    raw = {k: v for k, v in params.items() if k in fields}
    check_link(params, cfg, problems + rnn.url_problems(raw, cfg), fields, parse)


@FUZZ
@given(params=link_params(attention.AttentionConfig.fields()))
def test_attention_link(params):
    fields, parse = attention.AttentionConfig.fields(), attention.AttentionConfig.parse_setting
    cfg, warnings = attention.AttentionConfig.from_params_lenient(params)
    check_link(params, cfg, warnings, fields, parse)
    values = widget_values(params, fields, attention.AttentionConfig(), parse)
    cfg = attention.AttentionConfig(**values)
    raw = {k: v for k, v in params.items() if k in fields}
    offered = {"d": attention.D_GRID, "logit_scale": attention.SCALE_GRID}
    check_link(params, cfg, attention.AttentionConfig.url_problems(raw, cfg, offered), fields,
               parse)


# === the command line ==========================================================================
class Reached(BaseException):
    """The work a command would do, reached with what it was given (instead of doing it).
    A BaseException, so that no `except Exception` on the way turns it into a message."""


SUBCOMMANDS = build_parser()._subparsers._group_actions[0].choices  # name -> its parser


def flags(command: str) -> dict[str, st.SearchStrategy]:
    """Every flag of a subcommand, each with the values it may be given (valid and junk)."""
    out = {}
    for action in SUBCOMMANDS[command]._actions:
        for flag in action.option_strings:
            name = flag.removeprefix("--").replace("-", "_")
            if name in FIELDS and not flag.startswith("--no-"):
                value = junk_text | valid_text(name, FIELDS[name])
            elif flag in ("--x", "--y"):
                value = st.builds(lambda n, v: f"{n}={v}", st.sampled_from(sweep.AXES)
                                  | junk_text, axis_values()) | junk_text
            elif action.choices:
                value = st.sampled_from(list(action.choices)) | junk_text
            else:
                value = st.integers(-3, 300).map(str) | junk_text
            out[flag] = value
    return out


def argv_for(command: str) -> st.SearchStrategy:
    options = flags(command)
    with_value = pairs(options).map(list)
    alone = st.sampled_from(sorted(options)).map(lambda f: [f])  # a flag without its value
    stray = junk_text.map(lambda t: [t])
    tokens = st.lists(with_value | with_value | alone | stray, max_size=8)
    required = (pairs({"--x": options["--x"]}).map(list) if "--x" in options else st.just([]))
    return st.builds(lambda req, more, y: [command, *req, *sum(more, []), *y], required, tokens,
                     pairs({"--y": options["--y"]}).map(list) if "--y" in options
                     else st.just([]))


@pytest.fixture
def cli(monkeypatch):
    """`core.tools.cli.main` with the work of every command replaced by `Reached`, so that 500
    command lines take seconds; returns a function running one: (outcome, stderr)."""
    import core.data.datasets
    import core.init.probe
    import core.lab.runs
    import core.lab.trainer

    parser = build_parser()
    monkeypatch.setattr(cli_module, "build_parser", lambda: parser)  # built once, not 500 times

    def reach(command):
        def work(*args, **kwargs):
            raise Reached(command, args, kwargs)
        return work
    monkeypatch.setattr(core.lab.runs, "get_run", reach("train"))
    monkeypatch.setattr(core.lab.trainer, "train", reach("train"))
    monkeypatch.setattr(sweep, "run_sweep", reach("sweep"))
    monkeypatch.setattr(core.init.probe, "probe", reach("probe"))
    monkeypatch.setattr(cli_module, "train_classics", reach("classics"))
    monkeypatch.setattr(core.data.datasets, "describe_datasets", lambda: [])
    if "bench" in SUBCOMMANDS:
        import torch

        import core.tools.bench
        monkeypatch.setattr(core.tools.bench, "run_benchmark", reach("bench"))
        monkeypatch.setattr(core.tools.bench, "machine", lambda: "a test machine")

        def set_num_threads(n):  # torch's own rule, without changing this process's threads
            if not isinstance(n, int) or n < 1:
                raise RuntimeError("set_num_threads expects a positive integer")
        monkeypatch.setattr(torch, "set_num_threads", set_num_threads)

    def run(argv):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                outcome = cli_module.main(argv)
            except SystemExit as exit_:
                outcome = exit_.code
            except Reached as reached:
                outcome = reached
        return outcome, err.getvalue()
    return run


def test_the_cli_stand_in_keeps_torchs_rule():
    import torch
    with pytest.raises(RuntimeError):
        torch.set_num_threads(0)


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_any_command_line(cli, command):
    @FUZZ
    @given(argv=argv_for(command) | st.lists(junk_text, max_size=3))
    def check(argv):
        outcome, err = cli(argv)
        if isinstance(outcome, Reached):  # parsed: the work gets valid settings
            work, args, kwargs = outcome.args
            assert work == argv[0]
            if work in ("train", "probe"):
                assert_valid(args[0])
            if work == "probe":
                assert kwargs["n_inputs"] >= 2 and (kwargs["n_jacobian"] or 0) >= 0
            if work == "sweep":
                assert 1 <= len(args[0].cells()) <= sweep.MAX_CELLS
                for cell in args[0].cells():
                    assert_valid(cell)
        elif outcome == 0:  # --help, or a listing: `datasets`, `watched`
            assert "-h" in argv or "--help" in argv or argv[:1] in (["datasets"], ["watched"]), \
                argv
        else:
            assert outcome == 2, (argv, outcome, err)
            line = err.strip()
            assert line.startswith("python -m core") and ": error: " in line, err
            assert "\n" not in line and "Traceback" not in line, err
    check()


# === the pages themselves ======================================================================
ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
# What turns each page's link into settings: fuzzed above, without Streamlit.
PAGE_PARSERS = {
    "home": [],  # no settings
    "lab": ["config_form"], "activations": ["config_form"], "playground": ["config_form"],
    "initialization": ["config_controls"], "compare": ["config_controls"],
    "sweep": ["config_controls", "SweepSpec.from_params_lenient", "axis_problems"],
    "optimizers": ["link_problems", "RaceConfig.with_fallbacks"],
    "recurrent": ["config_form"], "attention": ["config_controls"],
    # No settings: the run comes from an uploaded file, checked by its reader, or from the run
    # store by the link's key, which is only ever compared with the stored keys.
    "watched": [],
    "classics": ["labelled_choice"],
}
RAW_READ = re.compile(r"\{\w+: st\.query_params\.get\(\w+\) for \w+ in [^}]*\}")


def test_every_page_reads_its_link_through_a_fuzzed_function():
    pages = set(re.findall(r'st\.Page\("app_pages/(\w+)\.py"', Path(APP).read_text()))
    assert pages == set(PAGE_PARSERS)
    for page, parsers in PAGE_PARSERS.items():
        src = (ROOT / "app_pages" / f"{page}.py").read_text()
        for name in parsers:
            assert name in src, (page, name)
        # The link is read only to collect raw text for those functions' warnings.
        reads = RAW_READ.findall(src)
        assert src.count("st.query_params") == sum(r.count("st.query_params") for r in reads), page


# A link per page: settings that keep its run small, and junk for settings it has controls for.
CHEAP = {
    "home": {}, "lab": {"epochs": "1", "max_train": "100"},
    "compare": {"epochs": "1", "max_train": "100", "b_epochs": "1", "b_max_train": "100"},
    "sweep": {"epochs": "1", "max_train": "100", "xv": "2,3", "yv": "relu"},
    "initialization": {"depth": "3", "width": "16"},
    "activations": {"epochs": "1", "depth": "2"}, "playground": {"epochs": "2"},
    "optimizers": {"iterations": "10"},
    "recurrent": {"dataset": "digits", "max_train": "100", "epochs": "1", "hidden": "8"},
    "attention": {"epochs": "1", "max_train": "100"},
    "watched": {},   # nothing trains: the page waits for a file
    "classics": {},  # the first classic: Glorot & Bengio's one small run
}
JUNK_KEYS = {
    "home": [], "lab": ["depth", "activation", "lr", "optimizer", "batch_norm", "clip_norm"],
    "compare": ["depth", "activation", "b_depth", "b_lr", "b_activation", "b_batch_norm"],
    "sweep": ["depth", "lr", "x", "y", "optimizer"],
    "initialization": ["activation", "init", "sigma_w2", "bias_init", "seed"],
    "activations": ["width", "activation", "lr", "init", "optimizer"],
    "playground": ["depth", "width", "noise", "dataset", "lr"],
    "optimizers": ["surface", "x0", "adam_lr", "sgd", "decay"],
    "recurrent": ["cell", "lr", "chunk", "sequence", "layers"],
    "attention": ["d", "tokens", "logit_scale", "scaled", "lr"],
    "watched": ["run"],
    "classics": ["classic"],
}
# Invalid for every setting of every page (checked below); two try to put a link or an image
# into the warning that quotes them.
JUNK = ["banana", "nan", "1e999", "../../etc/passwd", "-1e999", "[click](https://evil.example)",
        "![x](https://evil.example/p.png)", "\u0663x", "<script>alert(1)</script>", "9" * 300,
        "1,2;3", "a\nb"]


def test_the_junk_is_invalid_everywhere():
    for cls, _ in CONFIGS.values():
        for name in cls.fields():
            for text in JUNK:
                with pytest.raises(ConfigError):
                    cls.parse_setting(name, text)
    assert not set(JUNK) & set(sweep.AXES)


def junk_link(page: str, run: int) -> dict[str, str]:
    """The link of a page's `run`-th try: junk for a few settings, a setting nobody knows."""
    keys, start = JUNK_KEYS[page], 9 * sorted(JUNK_KEYS).index(page) + 3 * run
    picked = sorted({keys[(run + i) % len(keys)] for i in range(3)}) if keys else []
    link = {key: JUNK[(start + i) % len(JUNK)] for i, key in enumerate(picked)}
    return {**CHEAP[page], **link, f"nobody_{run}": JUNK[(start + 5) % len(JUNK)]}


@pytest.mark.parametrize("page", sorted(PAGE_PARSERS))
def test_a_page_opened_with_junk_in_its_link_warns_and_draws(page):
    for run in range(3):
        link = junk_link(page, run)
        at = open_page(f"app_pages/{page}.py", **link)
        assert not at.exception, [e.value for e in at.exception]
        assert not [e.value for e in at.error if "could not" in e.value], link
        warnings = [w.value for w in at.warning]
        for key in link.keys() - CHEAP[page].keys() - {f"nobody_{run}"}:
            assert any(w.startswith((f"`{key}=", f"{key}:", f"A: `{key}=", f"B: `{key}="))
                       for w in warnings), (key, link[key], warnings)
        for w in warnings:
            # Text from the link stays inside code spans: no link, no image, one line.
            outside = re.sub(r"`[^`\n]*`", "", w)
            assert "](" not in outside and "<script" not in outside, w
            assert "\n" not in w, w


def test_a_setting_that_clashes_with_the_pages_own_defaults_warns_once():
    # Compare's A is 10 layers deep and a cnn has at most 6: this link used to raise.
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in {**CHEAP["compare"], "model": "cnn"}.items():
        at.query_params[key] = value
    at.switch_page("app_pages/compare.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    said = [w.value for w in at.warning if "model" in w.value]
    assert said == ["A: `model=cnn`: does not go with depth (a cnn has at most 6 conv layers, "
                    "got 10); using mlp."], said
