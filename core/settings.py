"""The one settings machinery: every config class declares its fields here, and nothing else.

A config (the Lab's `RunConfig`, the recurrent, attention and optimizer lessons' configs) is a
frozen dataclass on `Settings` whose fields come from `setting(...)`: default, help, choices or
range, log scale, widget group, and the word its empty value is written as. Validation, the
flat strings of links and the CLI, the run-store key and the warnings of a bad link are written
once, here, against that table. A config adds fields and its cross-field rules (`check_rules`),
where its defaults or a range hang on another setting, two small hooks (`defaults_with`,
`span`), and which settings the others leave without effect (`inert`).

    @dataclass(frozen=True)
    class Tiny(Settings):
        SCHEMA_VERSION = 1
        depth: int = setting(4, "Hidden layers.", lo=1, hi=10)
        clip: float | None = setting(None, "Clip norm.", lo=0.1, hi=10.0)   # None reads "off"

    Tiny.from_params_lenient({"depth": "99"})   # (Tiny(), ["`depth=99`: not an integer …"])

Every warning about a value that was not used reads one way: "`name=value`: why; using X."
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from typing import Any, ClassVar, Mapping, TypeVar

S = TypeVar("S", bound="Settings")
# (lo, hi, what the range is): a range that hangs on another setting, e.g. a surface's window.
Span = tuple[float, float, str]

# An optional field's empty value may be written with any of these words (links made before a
# field had its own word still open); it is always written with the field's own `none` word.
EMPTY_WORDS = ("", "none", "off", "all", "auto")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class ConfigError(ValueError):
    """A setting is out of range; the message names the field and what is allowed."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def setting(default: Any, help: str, *, choices: tuple | None = None, lo: float | None = None,
            hi: float | None = None, log: bool = False, group: str = "",
            none: str = "off", stops: tuple | None = None) -> Any:
    """A dataclass field whose metadata drives validation, links, CLI flags and widgets.

    `none` is how an optional field's None reads in links, widgets and the CLI: "off" for a
    clip threshold, "all" for a cap on examples, "auto" for a value the run picks itself.
    `stops`: the values the app's control offers (a select slider), where it offers only some,
    for a setting the compute and memory budgets may ask to change (core.budget names one of
    them, not a value the page would not take). Core and the CLI take any value in lo…hi; the
    app's control, and so its link, these only.
    """
    meta = {"help": help, "choices": choices, "lo": lo, "hi": hi, "log": log, "group": group,
            "none": none, "stops": stops}
    return dataclasses.field(default=default, metadata=meta)


# --- one field --------------------------------------------------------------------------------
@functools.cache  # every check of every field asks: half the time of building a config
def field_kind(f: dataclasses.Field) -> type:
    """The base type of a field: bool, int, float or str (Optional stripped)."""
    ann = str(f.type)
    for kind in (bool, int, float, str):
        if ann.startswith(kind.__name__):
            return kind
    raise TypeError(f"unsupported field type {ann}")  # pragma: no cover - guards new fields


@functools.cache
def is_optional(f: dataclasses.Field) -> bool:
    return "None" in str(f.type)


def describe(f: dataclasses.Field, span: Span | None = None) -> str:
    """'an integer from 1 to 100', 'one of relu, tanh', ... for error messages and help."""
    m = f.metadata
    kind = field_kind(f)
    if m["choices"]:
        text = "one of " + ", ".join(m["choices"])
    elif kind is bool:
        text = "true or false"
    else:
        noun = "an integer" if kind is int else "a number"
        lo, hi, where = span or (m["lo"], m["hi"], "")
        if lo is None:  # a range that hangs on other settings, asked without them
            text = noun
        else:
            # An integer's bounds in full (2147483647, not 2.14748e+09), a number's short.
            lo, hi = (int(lo), int(hi)) if kind is int else (f"{lo:g}", f"{hi:g}")
            text = f"{noun}{f' in {where},' if where else ''} from {lo} to {hi}"
    return text + (f" (or empty for {m['none']})" if is_optional(f) else "")


def check(f: dataclasses.Field, value: Any, span: Span | None = None) -> Any:
    """Validate (and normalise int→float) one field value; `span` overrides the field's range."""
    m = f.metadata
    kind = field_kind(f)
    if value is None:
        if is_optional(f):
            return None
        raise ConfigError(f.name, f"must be {describe(f, span)}")
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f.name, f"must be true or false, got {quote(value)}")
        return value
    if kind is str:
        # isinstance first: `in` would compare a numpy array elementwise, and raise.
        if not isinstance(value, str) or value not in m["choices"]:
            raise ConfigError(f.name, f"{quote(value)} is not {describe(f)}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f.name, f"must be {describe(f, span)}, got {quote(value)}")
    if kind is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f.name, f"must be {describe(f, span)}, got {quote(value)}")
            value = int(value)
    else:
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f.name, f"must be {describe(f, span)}, got {quote(value)}")
        value = number + 0.0  # -0.0 → 0.0: configs that are equal have one key
    lo, hi, _ = span or (m["lo"], m["hi"], "")
    if not (lo <= value <= hi):
        raise ConfigError(f.name, f"{quote(value)} is out of range: must be {describe(f, span)}")
    return value


def parse_value(f: dataclasses.Field, text: str) -> Any:
    """Parse one string into the field's type (not yet range-checked); ConfigError otherwise."""
    if not isinstance(text, str):
        raise ConfigError(f.name, f"expected text, got {type(text).__name__}")
    text = text.strip()
    kind = field_kind(f)
    if text.lower() in EMPTY_WORDS and is_optional(f):
        return None
    try:
        if kind is bool:
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise ConfigError(f.name, f"{quote(text)} is not {describe(f)}") from None
    return text


def format_value(value: Any, none: str = "off") -> str:
    """The one string form of a value: links, CLI defaults and widget options agree.

    Streamlit links a select-slider by its option's label, so a field's None must read the same
    here as on its widget: pass the field's own word (`Settings.format_setting` does)."""
    if value is None:
        return none
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def inline(text: str, limit: int = 40) -> str:
    """Text a user typed, as a message quotes it inside a code span (`…`): cut short, on one
    line, without backticks.

    Messages are shown as Markdown, and anyone can put any text in a link: inside a code span
    it cannot become a clickable link or an image, and a backtick would end the span."""
    short = text[:limit] + ("…" if len(text) > limit else "")
    return "".join(c if c.isprintable() and c != "`" else "?" for c in short)


def quote(value: Any) -> str:
    """A value as a message quotes it: text in a code span, anything else as its repr, cut
    short (a pasted 5,000-digit number makes no clearer a message; its repr even raises)."""
    if isinstance(value, str):
        return f"`{inline(value)}`"
    try:
        text = repr(value)
    except Exception:  # an int past sys.get_int_max_str_digits(), a broken __repr__
        text = (f"an integer of {int(value.bit_length() * math.log10(2)) + 1} digits"
                if isinstance(value, int) else f"a {type(value).__name__}")
    return inline(text)


# --- warnings: one form for every config and page ---------------------------------------------
def fallback_warning(param: str, asked: str, why: str, used: str) -> str:
    """"`lr=banana`: not a number from 1e-06 to 100; using 0.001." — the setting as the link
    names it, what it asked for, why that could not be used, and what is used instead."""
    return f"`{param}={asked}`: {why}; using {used}."


def settings_named(warnings: list[str]) -> set[str]:
    """The settings these warnings name (so that a page says each one once)."""
    return {w[1:].split("=", 1)[0] for w in warnings if w.startswith("`")}


class _Unreadable:
    """Stands for link text that reads as no value of its field: `check` rejects it."""


def _asked(f: dataclasses.Field, value: Any) -> str:
    """A value as a warning shows what was asked for: as a link would write it."""
    if value is None or isinstance(value, bool):
        return format_value(value, f.metadata["none"])
    return inline(value) if isinstance(value, str) else quote(value)


@functools.cache
def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


@functools.cache
def _class_defaults(cls: type) -> Any:
    return cls()


# --- the base of every config -----------------------------------------------------------------
class Settings:
    """Base of a frozen dataclass of `setting(...)` fields: checks, identity and flat strings.

    Subclasses set SCHEMA_VERSION (bump it when a field's meaning or a result's content changes,
    so that the run store never serves a result of the old meaning) and may override
    `check_rules` (rules across fields), `defaults_with`, `span` and `inert`.
    """

    SCHEMA_VERSION: ClassVar[int]

    def __post_init__(self) -> None:
        for name, f in self.fields().items():  # in order: a span sees the settings before it
            object.__setattr__(self, name, check(f, getattr(self, name),
                                                 self.span(name, vars(self))))
        self.check_rules()

    # --- hooks ----------------------------------------------------------------------------
    def check_rules(self) -> None:
        """Rules across fields, run after every field passed its own check: raise ConfigError
        naming the field to blame."""

    def inert(self) -> dict[str, str]:
        """The settings that have no effect given the others (momentum under Adam): name → why,
        as a sentence a control's help and a comparison show. Their values are still kept
        (links and keys hold them); a page disables their controls and Compare leaves them out."""
        return {}

    @classmethod
    def defaults_with(cls: type[S], values: Mapping[str, Any]) -> S:
        """The defaults that go with `values` (settings that may not be checked yet): the
        class's own, unless a setting picks the others' defaults (the race's surface)."""
        return _class_defaults(cls)

    @classmethod
    def span(cls, name: str, values: Mapping[str, Any]) -> Span | None:
        """The range of `name` where it hangs on other (checked) settings `values`; None: the
        field's own lo and hi."""
        return None

    # --- the table --------------------------------------------------------------------------
    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        """Name → dataclasses.Field, in declaration order (computed once per class)."""
        return _fields(cls)

    @classmethod
    def _field(cls, name: str) -> dataclasses.Field:
        try:
            return cls.fields()[name]
        except KeyError:
            raise ConfigError(name, f"unknown setting; known: {', '.join(cls.fields())}") \
                from None

    @classmethod
    def parse_setting(cls, name: str, text: str, values: Mapping[str, Any] | None = None) -> Any:
        """One setting from text (a link, the CLI), range-checked; ConfigError naming it if
        invalid. `values`: the other settings, where its range hangs on them."""
        f = cls._field(name)
        context = vars(cls.defaults_with({})) if values is None else values
        return check(f, parse_value(f, text), cls.span(name, context))

    @classmethod
    def format_setting(cls, name: str, value: Any) -> str:
        """The text of a value in a link, on its widget and in the CLI."""
        return format_value(value, cls._field(name).metadata["none"])

    # --- identity ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """Stable hash of every field plus the schema version (the run store's key)."""
        blob = json.dumps({"schema": self.SCHEMA_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls: type[S], text: str) -> S:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ConfigError("config", "expected a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, Any]) -> S:
        for name in sorted(data):
            cls._field(name)
        return cls(**data)

    def replace(self: S, **changes: Any) -> S:
        return dataclasses.replace(self, **changes)

    def changed(self) -> dict[str, Any]:
        """Fields that differ from the defaults (for titles and summaries)."""
        return {n: getattr(self, n) for n, f in self.fields().items()
                if getattr(self, n) != f.default}

    # --- flat strings (links, CLI) ----------------------------------------------------------
    def to_params(self, *, only_changed: bool = True) -> dict[str, str]:
        """Flat dict of strings; by default only what differs from the defaults that go with
        what is written before it (so a link holds a new surface, not its start point)."""
        out: dict[str, str] = {}
        written: dict[str, Any] = {}
        base = self.defaults_with(written)
        for name in self.fields():
            value = getattr(self, name)
            if only_changed and value == getattr(base, name):
                continue
            out[name] = self.format_setting(name, value)
            written[name] = value
            base = self.defaults_with(written)
        return out

    @classmethod
    def from_params(cls: type[S], params: Mapping[str, str]) -> S:
        """Strict parse: the first unknown or bad parameter raises ConfigError naming it."""
        values = {name: parse_value(cls._field(name), text) for name, text in params.items()}
        return cls.defaults_with(values).replace(**values)

    @classmethod
    def from_params_lenient(cls: type[S], params: Mapping[str, str], *,
                            defaults: S | None = None) -> tuple[S, list[str]]:
        """Parse what is valid, use the defaults for the rest, and say what was dropped, in
        the link's order (then what clashes across settings).

        For links: a shared link with a bad value must still open, with a warning. Parameters
        that are no setting are ignored (other widgets share the URL).
        """
        fields = cls.fields()
        values: dict[str, Any] = {}
        for name, text in params.items():
            if name in fields:
                try:
                    values[name] = parse_value(fields[name], text)
                except ConfigError:  # kept in its place: the warnings follow the link's order
                    values[name] = _Unreadable()
        texts = {name: inline(str(text)) for name, text in params.items() if name in fields}
        return cls._settle(values, defaults, texts)

    @classmethod
    def with_fallbacks(cls: type[S], values: Mapping[str, Any], *,
                       defaults: S | None = None) -> tuple[S, list[str]]:
        """The config of `values`, with each invalid value replaced by its default.

        Field by field first, then cross-field rules (e.g. a cnn on 2-D data) one offending
        field at a time. Returns the config and one warning per replaced value.
        """
        return cls._settle(values, defaults, {})

    @classmethod
    def _settle(cls: type[S], values: Mapping[str, Any], defaults: S | None,
                texts: Mapping[str, str]) -> tuple[S, list[str]]:
        """`with_fallbacks`, its warnings quoting a value as `texts` gives it (a link's own
        text), else as a link would write it."""
        for name in values:
            cls._field(name)  # an unknown name is a caller's mistake, not a link's
        defaults = defaults or cls.defaults_with(values)

        def fallback(name: str, why: str) -> str:
            asked = texts[name] if name in texts else _asked(cls.fields()[name], values[name])
            return fallback_warning(name, asked, why,
                                    cls.format_setting(name, getattr(defaults, name)))

        merged = defaults.to_dict()
        why: dict[str, str] = {}
        for name, f in cls.fields().items():  # in order: a span sees the settings before it
            if name in values:
                span = cls.span(name, merged)
                try:
                    merged[name] = check(f, values[name], span)
                except ConfigError:
                    why[name] = f"not {describe(f, span)}"
        warnings = [fallback(name, why[name]) for name in values if name in why]
        reset: set[str] = set()
        while True:  # each round resets one more setting; the defaults themselves are valid
            try:
                return cls(**merged), warnings
            except ConfigError as err:
                name, reason = err.field, str(err).split(": ", 1)[-1]
                if name in merged and name not in reset and merged[name] != getattr(defaults, name):
                    why_not = reason
                else:  # its default clashes too (a cnn asked of 10-layer defaults): the other side
                    name = cls._clashing(merged, defaults, err, reset)
                    why_not = f"does not go with {err.field} ({reason})"
                warnings.append(fallback(name, why_not))
                reset.add(name)
                merged[name] = getattr(defaults, name)

    @classmethod
    def _clashing(cls, merged: dict, defaults: Settings, err: ConfigError, reset: set) -> str:
        """The setting, of those that differ from the defaults, whose default removes `err`
        (else the first of them: resetting one at a time ends at the defaults, which are
        valid)."""
        names = [n for n in cls.fields() if n not in reset and merged[n] != getattr(defaults, n)]
        for name in names:
            try:
                cls(**{**merged, name: getattr(defaults, name)})
                return name
            except ConfigError as other:
                if str(other) != str(err):
                    return name
        return names[0]

    @classmethod
    def url_problems(cls, raw: Mapping[str, str], used: Settings,
                     offered: Mapping[str, tuple] | None = None, *, prefix: str = "") -> list[str]:
        """What a link (`raw`: setting → its text) asked for that the page could not use, and
        what it used instead.

        `offered`: the values a control offers, where it offers only some (a select slider).
        `prefix`: how the link names the settings (Compare's run B: `b_lr`).
        """
        fields, context = cls.fields(), vars(used)
        out = []
        for name, text in raw.items():
            if name not in fields:
                continue
            try:
                if cls.parse_setting(name, text, context) == getattr(used, name):
                    continue
                listed = ", ".join(cls.format_setting(name, v)
                                   for v in (offered or {}).get(name, ()))
                why = "not one of this control's values" + (f" ({listed})" if listed else "")
            except ConfigError:
                why = f"not {describe(fields[name], cls.span(name, context))}"
            out.append(fallback_warning(prefix + name, inline(str(text)), why,
                                        cls.format_setting(name, getattr(used, name))))
        return out
