"""`RecurrentConfig`: the frozen, validated description of one recurrent-network run.

Images are read as sequences: row by row (8 steps of 8 pixels for digits, 28 steps of 28 for
MNIST and Fashion-MNIST) or in chunks of `chunk` pixels in reading order (MNIST in chunks of 16:
49 steps). As with `core.config.RunConfig`, the field metadata drives validation, the URL
parameters and the page's widgets, with the same helpers and error messages:

    cfg = RecurrentConfig(cell="lstm", hidden=128)
    cfg.key()                                        # the run store's key (after "rnn-")
    RecurrentConfig.from_params(cfg.to_params())     # round-trips through a flat dict of strings
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from core.config import OPTIMIZERS, ConfigError, _check, _f, format_value, inline, parse_value
from core.datasets import IMAGE_SHAPES

# Bump when the meaning of a field or the content of a result changes.
SCHEMA_VERSION = 1

SIDES = {name: shape[-1] for name, shape in IMAGE_SHAPES.items()}  # side × side images
DATASETS = tuple(SIDES)
SEQUENCES = ("rows", "chunks")
CELLS = ("rnn", "lstm", "gru")
RECURRENT_INITS = (
    "default",        # PyTorch's own: U(-1/√hidden, 1/√hidden), spectral radius ≈ 0.58
    "orthogonal",     # each gate's hidden-to-hidden block orthogonal: every singular value 1
    "xavier_normal",  # each block N(0, 1/hidden): spectral radius ≈ 1, the edge of chaos
    "normal_small",   # N(0, 0.01²), as in the Training Lab: memory fades within a step or two
    "normal_large",   # N(0, 1), as in the Training Lab: chaotic, gradients explode through time
)
DEVICES = ("auto", "cpu", "cuda", "mps")
MAX_SEQ_LEN = 196   # MNIST in chunks of 4 pixels; longer sequences take too long to train here
MAX_HIDDEN = 512
MAX_EPOCHS = 50
# How an empty optional setting is written in a link (and shown on its widget); each parses back.
NONE_WORDS = {"max_train": "all", "forget_bias": "none", "clip_norm": "off",
              "record_every": "auto"}


@dataclass(frozen=True)
class RecurrentConfig:
    # data
    dataset: str = _f("fashion-mnist", "Real images read as sequences: digits 8×8, MNIST or "
                      "Fashion-MNIST 28×28.", choices=DATASETS, group="data")
    sequence: str = _f("rows", "rows: one image row per time step (8 steps for digits, 28 for "
                       "MNIST); chunks: `chunk` pixels per step in reading order (longer "
                       "sequences).", choices=SEQUENCES, group="data")
    chunk: int = _f(16, "Pixels per time step when reading in chunks; must divide the image's "
                    f"pixels into at most {MAX_SEQ_LEN} steps (MNIST: 16 → 49 steps; "
                    "digits: 4 → 16 steps).", lo=1, hi=784, group="data")
    max_train: int | None = _f(1000, "Cap on training images (empty = the whole training "
                               "split, slow). Smaller is faster.", lo=1, hi=60_000, group="data")
    # architecture
    cell: str = _f("rnn", "rnn: the vanilla tanh RNN (nn.RNN); lstm: nn.LSTM with its additive "
                   "cell state; gru: nn.GRU with its update gate.", choices=CELLS,
                   group="architecture")
    hidden: int = _f(64, "Hidden units per layer.", lo=1, hi=MAX_HIDDEN, group="architecture")
    layers: int = _f(1, "Stacked recurrent layers; the classifier reads the top layer's last "
                     "hidden state.", lo=1, hi=2, group="architecture")
    # initialisation
    recurrent_init: str = _f(
        "default", "How the hidden-to-hidden weights start (the input weights keep PyTorch's "
        "default). default: U(±1/√hidden); orthogonal: every singular value 1; xavier_normal: "
        "N(0, 1/hidden); normal_small: N(0, 0.01²) forgets at once; normal_large: N(0, 1) "
        "explodes.", choices=RECURRENT_INITS, group="initialisation")
    forget_bias: float | None = _f(
        1.0, "Initial bias of the gate that keeps the old state: the LSTM's forget gate, the "
        "GRU's update gate (empty = PyTorch's default, about 0). 1 is the usual choice "
        "(Jozefowicz et al., 2015); ignored by the vanilla RNN.", lo=-5.0, hi=5.0,
        group="initialisation")
    # optimisation
    optimizer: str = _f("adam", "Update rule (torch.optim); momentum/nesterov are SGD with "
                        "momentum 0.9.", choices=OPTIMIZERS, group="optimisation")
    lr: float = _f(1e-3, "Learning rate.", lo=1e-5, hi=10.0, log=True, group="optimisation")
    batch_size: int = _f(64, "Sequences per step.", lo=1, hi=1024, group="optimisation")
    epochs: int = _f(3, "Passes over the training images.", lo=1, hi=MAX_EPOCHS,
                     group="optimisation")
    # clipping
    clip_norm: float | None = _f(None, "Clip the total gradient norm to this with "
                                 "clip_grad_norm_ (empty = off).", lo=1e-4, hi=1e4, log=True,
                                 group="clipping")
    # run
    seed: int = _f(0, "Random seed: same seed, same run.", lo=0, hi=2**31 - 1, group="run")
    device: str = _f("auto", "auto picks CUDA or MPS when present, else the CPU.",
                     choices=DEVICES, group="run")
    record_every: int | None = _f(None, "Measure ‖∂L/∂h_t‖ every this many steps (and at "
                                  "each epoch's first step; empty = about 20 times an epoch).",
                                  lo=1, hi=10_000, group="run")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _check(f, getattr(self, f.name)))
        if self.sequence == "chunks":
            pixels = SIDES[self.dataset] ** 2
            ok = chunk_sizes(self.dataset)
            if self.chunk not in ok:
                raise ConfigError("chunk", f"{self.chunk} pixels per step must divide the "
                                  f"{pixels} pixels of a {self.dataset} image into at most "
                                  f"{MAX_SEQ_LEN} steps: one of {', '.join(map(str, ok))}")

    # --- shape of the sequences -------------------------------------------------------------
    @property
    def step_size(self) -> int:
        """Inputs per time step (pixels)."""
        return SIDES[self.dataset] if self.sequence == "rows" else self.chunk

    @property
    def seq_len(self) -> int:
        """Time steps T per image."""
        return SIDES[self.dataset] ** 2 // self.step_size

    # --- identity -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """Stable hash of every field plus the schema version."""
        blob = json.dumps({"schema": SCHEMA_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def store_key(self) -> str:
        return "rnn-" + self.key()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RecurrentConfig":
        unknown = set(data) - set(FIELDS)
        if unknown:
            raise ConfigError(sorted(unknown)[0], f"unknown setting; known: {', '.join(FIELDS)}")
        return cls(**data)

    def replace(self, **changes: Any) -> "RecurrentConfig":
        return dataclasses.replace(self, **changes)

    def changed(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n, f in FIELDS.items() if getattr(self, n) != f.default}

    # --- flat strings (URL query parameters) ----------------------------------------------
    def to_params(self, *, only_changed: bool = True) -> dict[str, str]:
        """Flat dict of strings; by default only the fields that differ from the defaults."""
        return {name: format_setting(name, getattr(self, name)) for name, f in FIELDS.items()
                if not (only_changed and getattr(self, name) == f.default)}

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> "RecurrentConfig":
        """Strict parse: the first bad parameter raises ConfigError naming it."""
        return cls(**{name: parse_setting(name, text) for name, text in params.items()})

    @classmethod
    def from_params_lenient(cls, params: Mapping[str, str]) -> tuple["RecurrentConfig",
                                                                     list[str]]:
        """What is valid, defaults for the rest, one warning per dropped value (for links).

        Parameters that are not settings are ignored: other widgets share the URL.
        """
        values, warnings = {}, []
        for name, text in params.items():
            if name in FIELDS:
                try:
                    values[name] = parse_value(FIELDS[name], text)
                except ConfigError as err:
                    warnings.append(_fallback_warning(err))
        cfg, more = cls.with_fallbacks(values)
        return cfg, warnings + more

    @classmethod
    def with_fallbacks(cls, values: Mapping[str, Any]) -> tuple["RecurrentConfig", list[str]]:
        """The config of `values` with each invalid value replaced by its default, field by
        field and then for cross-field rules (chunk vs dataset); one warning per replacement."""
        merged, warnings = DEFAULTS.to_dict(), []
        for name, value in values.items():
            try:
                merged[name] = _check(FIELDS[name], value)
            except ConfigError as err:
                warnings.append(_fallback_warning(err))
        try:
            return cls(**merged), warnings
        except ConfigError as err:  # only `chunk` has a cross-field rule; its default fits all
            warnings.append(_fallback_warning(err))
            merged[err.field] = getattr(DEFAULTS, err.field)
            return cls(**merged), warnings


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(RecurrentConfig)}
DEFAULTS = RecurrentConfig()


def chunk_sizes(dataset: str) -> list[int]:
    """The chunk sizes (pixels per step) that fit an image of `dataset`."""
    pixels = SIDES[dataset] ** 2
    return [k for k in range(1, pixels + 1) if pixels % k == 0 and pixels // k <= MAX_SEQ_LEN]


def format_setting(name: str, value: Any) -> str:
    """The text of a value in a link and on its widget."""
    return NONE_WORDS.get(name, "off") if value is None else format_value(value)


def parse_setting(name: str, text: str) -> Any:
    """One setting from text, range-checked; ConfigError naming it if invalid."""
    if name not in FIELDS:
        raise ConfigError(name, f"unknown setting; known: {', '.join(FIELDS)}")
    return _check(FIELDS[name], parse_value(FIELDS[name], text))


def url_problems(raw: Mapping[str, str], used: RecurrentConfig) -> list[str]:
    """What a link asked for that the page could not use, and what it used instead."""
    out = []
    for name, text in raw.items():
        if name not in FIELDS:
            continue
        try:
            problem = (None if parse_setting(name, text) == getattr(used, name)
                       else "is not one of this control's values")
        except ConfigError as err:
            problem = str(err).split(": ", 1)[1]
        if problem:
            out.append(f"`{name}={inline(text)}` {problem}; using "
                       f"{format_setting(name, getattr(used, name))}.")
    return out


def _fallback_warning(err: ConfigError) -> str:
    return f"{err}; using {format_setting(err.field, getattr(DEFAULTS, err.field))}."
