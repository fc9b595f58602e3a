"""`RunConfig`: the one frozen, validated, hashable description of a training run.

Everything that can vary about a run is a field here, with its allowed values in the field's
metadata. The CLI flags (`python -m core train --help`), the URL query parameters and the app's
widgets are all derived from these fields, so a new setting is added in exactly one place.

    cfg = RunConfig(depth=10, activation="sigmoid")
    cfg.key()                               # stable hash: run store, URL and CLI agree on it
    RunConfig.from_params(cfg.to_params())  # round-trips through a flat dict of strings
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from core.activations import ACTIVATIONS
from core.datasets import DATASETS, IMAGE_DATASETS

# Bump when the meaning of a field or the content of a result changes, so cached results of the
# old meaning are never served for the new one.
SCHEMA_VERSION = 4  # 3: grad/update ratios are norm ratios (RMS); 4: early stopping

MODELS = ("mlp", "residual_mlp", "cnn")
INITS = (
    "zeros",
    "normal_small",   # N(0, 0.01²): the classic "too small" init
    "normal_large",   # N(0, 1): the classic "too large" init
    "xavier_normal",
    "xavier_uniform",
    "he_normal",
    "he_uniform",
    "orthogonal",
    "mean_field",     # N(0, σ_w²/fan_in): the mean-field parameterisation
)
BIAS_INITS = ("zeros", "constant", "normal")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "exponential", "cosine", "cyclic")
DEVICES = ("auto", "cpu", "cuda", "mps")

# Caps keep one request from stalling a shared server; they are generous for teaching.
MAX_DEPTH = 100
MAX_WIDTH = 1024
MAX_EPOCHS = 200
MAX_TRAIN = 60_000
MAX_CNN_DEPTH = 6


class ConfigError(ValueError):
    """A setting is out of range; the message names the field and what is allowed."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def _f(default: Any, help: str, *, choices: tuple | None = None, lo: float | None = None,
       hi: float | None = None, log: bool = False, group: str = "", none: str = "off") -> Any:
    """A dataclass field whose metadata drives validation, CLI flags and widgets.

    `none` is how an optional field's None reads (in links, widgets and the CLI): "off" for a
    clip threshold, "all" for a cap on examples.
    """
    meta = {"help": help, "choices": choices, "lo": lo, "hi": hi, "log": log, "group": group,
            "none": none}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunConfig:
    # data
    dataset: str = _f("digits", "Training data: real images (digits 8×8, MNIST and Fashion-MNIST "
                      "28×28) or a 2-D toy set.", choices=DATASETS, group="data")
    max_train: int | None = _f(None, "Cap on training examples (empty = the whole training split). "
                               "Smaller is faster.", lo=1, hi=MAX_TRAIN, group="data",
                               none="all")
    noise: float = _f(0.1, "Noise of the 2-D toy sets (ignored for images).", lo=0.0, hi=1.0,
                      group="data")
    # architecture
    model: str = _f("mlp", "mlp: plain stack of dense layers; residual_mlp: x + f(x) blocks; "
                    "cnn: conv–pool layers then a dense layer.", choices=MODELS, group="architecture")
    depth: int = _f(4, "Hidden layers (conv layers for the CNN). Deep sigmoid nets vanish.",
                    lo=1, hi=MAX_DEPTH, group="architecture")
    width: int = _f(64, "Units per hidden layer (channels per conv layer for the CNN).",
                    lo=1, hi=MAX_WIDTH, group="architecture")
    activation: str = _f("relu", "Nonlinearity of every hidden layer.", choices=ACTIVATIONS,
                         group="architecture")
    # initialisation
    init: str = _f("he_normal", "How weights start. He suits ReLU, Xavier suits tanh; "
                   "normal_large explodes, normal_small vanishes.", choices=INITS,
                   group="initialisation")
    sigma_w2: float = _f(2.0, "Weight variance σ_w² for init=mean_field: W ~ N(0, σ_w²/fan_in).",
                         lo=1e-4, hi=100.0, log=True, group="initialisation")
    bias_init: str = _f("zeros", "How biases start: zeros, a constant (bias_value), or "
                        "N(0, bias_value) with bias_value as the variance σ_b².",
                        choices=BIAS_INITS, group="initialisation")
    bias_value: float = _f(0.0, "The constant for bias_init=constant, or σ_b² for "
                           "bias_init=normal.", lo=-10.0, hi=10.0, group="initialisation")
    # normalisation & regularisation
    batch_norm: bool = _f(False, "Batch normalisation before each hidden activation: keeps "
                          "pre-activations near zero mean, unit variance.", group="regularisation")
    dropout: float = _f(0.0, "Probability of zeroing a hidden unit during training.",
                        lo=0.0, hi=0.9, group="regularisation")
    weight_decay: float = _f(0.0, "L2 weight decay (decoupled for adamw).", lo=0.0, hi=1.0,
                             group="regularisation")
    patience: int | None = _f(None, "Early stopping: stop once the validation loss has not "
                              "improved for this many epochs (empty = off).", lo=1,
                              hi=MAX_EPOCHS, group="regularisation")
    # optimisation
    optimizer: str = _f("adam", "Update rule (torch.optim). momentum/nesterov are SGD with "
                        "momentum.", choices=OPTIMIZERS, group="optimisation")
    lr: float = _f(1e-3, "Learning rate. Too high diverges, too low crawls.", lo=1e-6, hi=100.0,
                   log=True, group="optimisation")
    momentum: float = _f(0.9, "Momentum for momentum/nesterov.", lo=0.0, hi=0.999,
                         group="optimisation")
    beta1: float = _f(0.9, "Adam/AdamW first-moment decay.", lo=0.0, hi=0.999,
                      group="optimisation")
    beta2: float = _f(0.999, "Adam/AdamW second-moment decay; also RMSprop's smoothing α.",
                      lo=0.0, hi=0.9999, group="optimisation")
    schedule: str = _f("constant", "Learning-rate schedule: exponential decay per epoch, "
                       "cosine to zero, or cyclic (triangular between lr/10 and lr).",
                       choices=SCHEDULES, group="optimisation")
    lr_decay: float = _f(0.9, "Per-epoch factor of the exponential schedule.", lo=0.01, hi=1.0,
                         group="optimisation")
    batch_size: int = _f(64, "Examples per step.", lo=1, hi=4096, group="optimisation")
    epochs: int = _f(10, "Passes over the training set.", lo=1, hi=MAX_EPOCHS,
                     group="optimisation")
    # clipping
    clip_norm: float | None = _f(None, "Clip the total gradient norm to this (empty = off).",
                                 lo=1e-4, hi=1e4, log=True, group="clipping")
    clip_value: float | None = _f(None, "Clip each gradient element to ±this (empty = off).",
                                  lo=1e-4, hi=1e4, log=True, group="clipping")
    # run
    seed: int = _f(0, "Random seed: same seed, same run.", lo=0, hi=2**31 - 1, group="run")
    device: str = _f("auto", "auto picks CUDA or MPS when present, else the CPU.",
                     choices=DEVICES, group="run")
    record_every: int | None = _f(None, "Record per-layer statistics every this many steps "
                                  "(empty = about 50 records per epoch).", lo=1, hi=10_000,
                                  group="run", none="auto")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _check(f, getattr(self, f.name)))
        if self.clip_norm is not None and self.clip_value is not None:
            raise ConfigError("clip_value", "set clip_norm or clip_value, not both")
        if self.batch_norm and self.batch_size < 2:
            raise ConfigError("batch_size", "batch norm needs at least 2 examples per batch")
        if self.model == "cnn":
            if self.dataset not in IMAGE_DATASETS:
                raise ConfigError("model", f"cnn needs an image dataset "
                                  f"({', '.join(sorted(IMAGE_DATASETS))}), not {self.dataset!r}")
            if self.depth > MAX_CNN_DEPTH:
                raise ConfigError("depth", f"a cnn has at most {MAX_CNN_DEPTH} conv layers, "
                                  f"got {self.depth}")

    # --- identity -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """Stable hash of every field plus the schema version (the run store's key)."""
        blob = json.dumps({"schema": SCHEMA_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ConfigError("config", "expected a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        unknown = set(data) - set(FIELDS)
        if unknown:
            raise ConfigError(sorted(unknown)[0], f"unknown setting; known: {', '.join(FIELDS)}")
        return cls(**data)

    # --- flat strings (URL query parameters, CLI) ------------------------------------------
    def to_params(self, *, only_changed: bool = True) -> dict[str, str]:
        """Flat dict of strings; by default only fields that differ from the defaults."""
        out = {}
        for name, f in FIELDS.items():
            value = getattr(self, name)
            if only_changed and value == f.default:
                continue
            out[name] = format_value(value, name)
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> "RunConfig":
        """Strict parse: the first bad parameter raises ConfigError."""
        values = {}
        for name, text in params.items():
            if name not in FIELDS:
                raise ConfigError(name, f"unknown setting; known: {', '.join(FIELDS)}")
            values[name] = parse_value(FIELDS[name], text)
        return cls(**values)

    @classmethod
    def from_params_lenient(cls, params: Mapping[str, str], *,
                            defaults: "RunConfig | None" = None) -> tuple["RunConfig", list[str]]:
        """Parse what is valid, use the default for the rest, and say what was dropped.

        For URLs: a shared link with a bad value must still open, with a warning.
        """
        defaults = defaults or cls()
        warnings: list[str] = []
        values: dict[str, Any] = {}
        for name, text in params.items():
            if name not in FIELDS:
                continue  # other pages' parameters share the URL
            try:
                values[name] = parse_value(FIELDS[name], text)
            except ConfigError as err:
                warnings.append(_fallback_warning(err, defaults))
        cfg, more = cls.with_fallbacks(values, defaults=defaults)
        return cfg, warnings + more

    @classmethod
    def with_fallbacks(cls, values: Mapping[str, Any], *,
                       defaults: "RunConfig | None" = None) -> tuple["RunConfig", list[str]]:
        """The config of `values`, with each invalid value replaced by its default.

        Field by field first, then cross-field rules (e.g. a cnn on 2-D data) one offending
        field at a time. Returns the config and one warning per replaced value.
        """
        defaults = defaults or cls()
        warnings: list[str] = []
        merged = defaults.to_dict()
        for name, value in values.items():
            try:
                merged[name] = _check(FIELDS[name], value)
            except ConfigError as err:
                warnings.append(_fallback_warning(err, defaults))
        reset: set[str] = set()
        while True:  # each round resets one more setting; the defaults themselves are valid
            try:
                return cls(**merged), warnings
            except ConfigError as err:
                name = err.field
                if name in FIELDS and name not in reset and merged[name] != getattr(defaults, name):
                    warnings.append(_fallback_warning(err, defaults))
                else:  # its default clashes too (a cnn asked of 10-layer defaults): the other side
                    name = _clashing(cls, merged, defaults, err, reset)
                    reason = str(err).split(": ", 1)[-1]
                    warnings.append(f"{name}: {format_value(merged[name], name)} does not go with "
                                    f"{err.field} ({reason}); using "
                                    f"{format_value(getattr(defaults, name), name)}.")
                reset.add(name)
                merged[name] = getattr(defaults, name)

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def changed(self) -> dict[str, Any]:
        """Fields that differ from the defaults (for titles and summaries)."""
        return {n: getattr(self, n) for n, f in FIELDS.items() if getattr(self, n) != f.default}


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(RunConfig)}


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


def format_value(value: Any, name: str | None = None) -> str:
    """The one string form of a value: URL parameters, CLI defaults and widget options agree.

    Streamlit links a select-slider by its option's label, so a field's None must read the same
    here as on its widget (`name` gives the field's own word: "all", "auto", "off")."""
    if value is None:
        return FIELDS[name].metadata["none"] if name in FIELDS else "off"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_value(f: dataclasses.Field, text: str) -> Any:
    """Parse one string into the field's type; ConfigError naming the field otherwise."""
    if not isinstance(text, str):
        raise ConfigError(f.name, f"expected text, got {type(text).__name__}")
    text = text.strip()
    kind = field_kind(f)
    if text.lower() in ("", "none", "off", "all", "auto") and is_optional(f):
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


def _clashing(cls: type, merged: dict, defaults: Any, err: ConfigError, reset: set) -> str:
    """The setting, of those that differ from the defaults, whose default removes `err` (else
    the first of them: resetting one at a time ends at the defaults, which are valid)."""
    names = [n for n in FIELDS if n not in reset and merged[n] != getattr(defaults, n)]
    for name in names:
        try:
            cls(**{**merged, name: getattr(defaults, name)})
            return name
        except ConfigError as other:
            if str(other) != str(err):
                return name
    return names[0]


def _fallback_warning(err: ConfigError, defaults: RunConfig) -> str:
    return f"{err}; using {format_value(getattr(defaults, err.field))}."


def parse_field(name: str, text: str) -> Any:
    """Parse and range-check one setting given as text (URL or CLI); ConfigError if invalid."""
    if name not in FIELDS:
        raise ConfigError(name, f"unknown setting; known: {', '.join(FIELDS)}")
    return _check(FIELDS[name], parse_value(FIELDS[name], text))


def describe(f: dataclasses.Field) -> str:
    """'an integer from 1 to 100', 'one of relu, tanh', ... for error messages and help."""
    m = f.metadata
    kind = field_kind(f)
    if m["choices"]:
        text = "one of " + ", ".join(m["choices"])
    elif kind is bool:
        text = "true or false"
    else:
        noun = "an integer" if kind is int else "a number"
        text = f"{noun} from {m['lo']:g} to {m['hi']:g}"
    return text + (" (or empty for off)" if is_optional(f) else "")


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


def _check(f: dataclasses.Field, value: Any) -> Any:
    """Validate (and normalise int→float) one field value."""
    m = f.metadata
    kind = field_kind(f)
    if value is None:
        if is_optional(f):
            return None
        raise ConfigError(f.name, f"must be {describe(f)}")
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
        raise ConfigError(f.name, f"must be {describe(f)}, got {quote(value)}")
    if kind is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f.name, f"must be {describe(f)}, got {quote(value)}")
            value = int(value)
    else:
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f.name, f"must be {describe(f)}, got {quote(value)}")
        value = number + 0.0  # -0.0 → 0.0: configs that are equal have one key
    if not (m["lo"] <= value <= m["hi"]):
        raise ConfigError(f.name, f"{quote(value)} is out of range: must be {describe(f)}")
    return value
