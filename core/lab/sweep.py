"""Sweeps: train a grid of configurations over two settings and tabulate what each cell ended with.

    spec = SweepSpec(RunConfig(epochs=5), x="depth", x_values=(2, 4, 8),
                     y="activation", y_values=("relu", "tanh"))
    result = run_sweep(spec, on_progress=lambda done, total, msg: print(done, total, msg))
    result.table            # one row per cell: val_accuracy, depth_ratio, flat_max, ...
    result.grid("val_accuracy")   # rows = y values, columns = x values, in the spec's order

    python -m core sweep --x depth=2,4,8 --y activation=relu,tanh --epochs 5

Cells of one network shape train together as one stacked model (core/lab/stacked.py): a 16-cell
lr × init digits sweep runs about 5–6× faster than its cells one after another with train(),
on one CPU thread (benchmarks/sweep_speed.py). A CNN, or a cell alone in its shape, trains with
the full trainer instead (`get_run`), which also makes it a Training Lab run.

Groups train in this process one after another, or in parallel: in local worker processes
(`--jobs N`) or as tasks on a Ray cluster (`--engine ray`); see core/lab/sweep_engines.py. This
process stays the run store's one writer.

Caching, per cell. A stacked cell is not a full recorded run, so it is stored as a small
summary (`CellSummary`) under "sweep-" + its config key; a full run stored under the config key
itself (trained in the Lab, or by a sweep) supplies the same summary and takes precedence.
Opening a cell in the Lab therefore opens its RunConfig there, where it is trained in full if it
has not been yet; the Lab's numbers can differ from the sweep's stacked ones in the last digits
(floating-point summation order), never in kind.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from core import cache
from core.budget import refuse_sweep
from core.cache import RunKind
from core.lab.config import FIELDS, RunConfig
from core.lab.metrics import most_flat
from core.lab.result import RunResult
from core.lab.runs import LAB_RUN, cached_run, run_estimate
from core.lab.stacked import CellSummary, batch_groups
from core.lab.sweep_engines import Engine, InProcess, UnitFailed, split_for_workers
from core.settings import ConfigError, describe, field_kind, inline, quote
from core.store import RunStore

# An 8 × 8 heatmap is still readable, and 64 default digits runs take about a minute even one
# after another (0.9 s each on one core).
MAX_CELLS = 64
KEY_PREFIX = "sweep-"
AXIS_PARAMS = ("x", "xv", "y", "yv")
# A cell's summary in the run cache. Cells train together in stacks (run_sweep), so the kind
# has no train of its own: the sweep takes the cache's locks, lookup and store writes.
SWEEP_CELL = RunKind("sweep cell", KEY_PREFIX, CellSummary.from_dict, run_estimate,
                     lambda summary: {"sweep_cell": True, "status": summary.status})

# Settings worth putting on an axis: not the run's plumbing (device, record_every), nor the toy
# sets' noise (sweeps run on images).
AXES = tuple(name for name in FIELDS if name not in ("noise", "device", "record_every",
                                                         "sharpness_every"))

# Values to offer when an axis is chosen (and to fall back on for a bad URL). Settings with
# choices offer all of them; booleans both; others their default alone unless listed here.
SUGGESTED = {
    "depth": (2, 4, 8, 16), "width": (16, 32, 64, 128), "lr": (1e-4, 1e-3, 1e-2, 1e-1),
    "batch_size": (16, 64, 256), "epochs": (5, 10, 20), "seed": (0, 1, 2, 3),
    "dropout": (0.0, 0.2, 0.5), "weight_decay": (0.0, 1e-4, 1e-3, 1e-2),
    "momentum": (0.0, 0.5, 0.9, 0.99), "sigma_w2": (0.5, 1.0, 2.0, 4.0),
    "clip_norm": (None, 0.1, 1.0, 10.0), "clip_value": (None, 0.01, 0.1, 1.0),
    "max_train": (100, 300, 1000, None),
}


def suggested_values(name: str) -> tuple:
    """Values worth sweeping for a setting (e.g. all activations, or 2, 4, 8, 16 for depth)."""
    if name not in FIELDS:
        raise ConfigError("x", f"unknown setting {name!r}; known: {', '.join(FIELDS)}")
    f = FIELDS[name]
    if f.metadata["choices"]:
        return tuple(f.metadata["choices"])
    if field_kind(f) is bool:
        return (False, True)
    return SUGGESTED.get(name, (f.default,))


@dataclass(frozen=True)
class SweepSpec:
    """Two settings of `base` and their values; cells in row-major order (y outer, x inner)."""

    base: RunConfig = RunConfig()
    x: str = "depth"
    x_values: tuple = (2, 4, 8)
    y: str = "activation"
    y_values: tuple = ("relu", "tanh")

    def __post_init__(self) -> None:
        if not isinstance(self.base, RunConfig):
            raise ConfigError("base", f"must be a RunConfig, got {type(self.base).__name__}")
        for axis, name in (("x", self.x), ("y", self.y)):
            if name not in FIELDS:
                raise ConfigError(axis, f"unknown setting {name!r}; known: {', '.join(FIELDS)}")
        if self.x == self.y:
            raise ConfigError("y", f"the two axes must be different settings; both are {self.x}")
        for axis, name in (("x", self.x), ("y", self.y)):
            object.__setattr__(self, f"{axis}_values",
                               normalise_values(name, getattr(self, f"{axis}_values")))
        n = len(self.x_values) * len(self.y_values)
        if n > MAX_CELLS:
            raise ConfigError("cells", f"{len(self.x_values)} {self.x} values × "
                              f"{len(self.y_values)} {self.y} values = {n} cells; a sweep has "
                              f"at most {MAX_CELLS}")
        self.cells()  # cross-setting rules, e.g. a cnn deeper than 6: ConfigError naming one

    def cells(self) -> list[RunConfig]:
        return [self.base.replace(**{self.x: xv, self.y: yv})
                for yv in self.y_values for xv in self.x_values]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) = (number of y values, number of x values)."""
        return len(self.y_values), len(self.x_values)

    def labels(self, axis: str) -> list[str]:
        """The axis's values as the grid, its links and its cells write them ("x" or "y")."""
        name, values = (self.x, self.x_values) if axis == "x" else (self.y, self.y_values)
        return [RunConfig.format_setting(name, v) for v in values]

    # --- flat strings (URL query parameters) ------------------------------------------------
    def to_params(self) -> dict[str, str]:
        """x, xv, y, yv (values comma-separated) plus the base config's own parameters."""
        return {"x": self.x, "xv": values_text(self.x, self.x_values, ","),
                "y": self.y, "yv": values_text(self.y, self.y_values, ","),
                **self.base.to_params()}

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> "SweepSpec":
        """Strict parse: the first bad parameter raises ConfigError naming it."""
        unknown = set(params) - set(FIELDS) - set(AXIS_PARAMS)
        if unknown:
            name = sorted(unknown)[0]
            raise ConfigError(name, "unknown parameter; a sweep takes x, xv, y, yv and the "
                              "run settings")
        for name in AXIS_PARAMS:
            if name not in params:
                raise ConfigError(name, "missing")
        base = RunConfig.from_params({k: v for k, v in params.items() if k in FIELDS})
        return cls(base, params["x"], parse_values(params["x"], params["xv"]),
                   params["y"], parse_values(params["y"], params["yv"]))

    @classmethod
    def from_params_lenient(cls, params: Mapping[str, str], *,
                            defaults: "SweepSpec | None" = None) -> tuple["SweepSpec", list[str]]:
        """Parse what is valid, fall back for the rest, and say what was dropped.

        For URLs: a shared link with a bad value must still open, with a warning. A bad axis
        falls back to the default's; a bad value is dropped; an axis left without values gets
        `suggested_values`; too many cells are cut to MAX_CELLS.
        """
        defaults = defaults or cls()
        base, warnings = RunConfig.from_params_lenient(params, defaults=defaults.base)
        x = _lenient_axis(params, "x", defaults.x, None, warnings)
        y = _lenient_axis(params, "y", defaults.y, x, warnings)
        xs = _lenient_values(params, "x", x, defaults, base, warnings)
        ys = _lenient_values(params, "y", y, defaults, base, warnings)
        rows = max(1, MAX_CELLS // len(xs))  # each row checked is len(xs) cells: stop when full
        kept: list = []
        cut = False
        for v in ys:
            if len(kept) == rows:
                cut = True
                break
            if _valid_cells(base, x, xs, y, v, warnings):
                kept.append(v)
        ys = kept or [getattr(base, y)]
        cut = cut or len(xs) * len(ys) > MAX_CELLS
        xs = xs[:MAX_CELLS // len(ys)]
        if cut:
            warnings.append(f"cells: a sweep has at most {MAX_CELLS} cells; kept "
                            f"{len(xs)} {x} values × {len(ys)} {y} values.")
        return cls(base, x, tuple(xs), y, tuple(ys)), warnings


def axis_problems(asked: Mapping[str, str | None], used: Mapping[str, str]) -> list[str]:
    """The axes a link asked for (`x`, `y`: None if absent) that a page with `used` axes could
    not take, as warnings: a selectbox over AXES drops any other name."""
    # A setting's name is at most 17 characters: 20 quote any of them whole, and keep the
    # message, which lists every axis, short (a 40-character one made it 402 characters).
    return [f"`{axis}={inline(str(asked[axis]), 20)}` is not a setting one can sweep "
            f"({', '.join(AXES)}); using {used[axis]}."
            for axis in ("x", "y") if asked.get(axis) is not None and asked[axis] != used[axis]]


def _lenient_axis(params: Mapping[str, str], axis: str, default: str, taken: str | None,
                  warnings: list[str]) -> str:
    name = params.get(axis, default)
    if name in FIELDS and name != taken:
        return name
    fallback = next(n for n in (default, "depth", "activation") if n != taken)
    why = "not a setting" if name not in FIELDS else "the same setting as x"
    warnings.append(f"{axis}: {quote(str(name))} is {why}; using {fallback}.")
    return fallback


def _lenient_values(params: Mapping[str, str], axis: str, name: str, defaults: SweepSpec,
                    base: RunConfig, warnings: list[str]) -> list:
    values: list = []
    if f"{axis}v" in params and params.get(axis) == name:  # values of a fallen-back axis: no
        texts = _split(params[f"{axis}v"])
        if len(texts) > MAX_CELLS:  # more cannot fit: cut before any value is checked
            warnings.append(f"{axis}v: a sweep has at most {MAX_CELLS} cells; kept the first "
                            f"{MAX_CELLS} of {len(texts):,} {name} values.")
            texts = texts[:MAX_CELLS]
        for text in texts:
            try:
                values.append(RunConfig.parse_setting(name, text))
            except ConfigError as err:
                warnings.append(f"{err}; dropped.")
    elif name == getattr(defaults, axis):
        values = list(getattr(defaults, f"{axis}_values"))
    else:
        values = list(suggested_values(name))
    kept: list = []
    for v in values:
        try:
            v = getattr(base.replace(**{name: v}), name)
        except ConfigError as err:
            warnings.append(f"{err}; dropped.")
            continue
        if v not in kept:
            kept.append(v)
    return kept or [getattr(base, name)]


def parse_values(name: str, text: str) -> tuple:
    """'2,4,8' → (2, 4, 8) for a setting; ConfigError naming the setting for a bad value."""
    if name not in FIELDS:
        raise ConfigError(name, f"unknown setting; known: {', '.join(FIELDS)}")
    items = _split(text)
    if not items:
        raise ConfigError(name, f"give at least one value, comma-separated ({describe(FIELDS[name])})")
    return tuple(RunConfig.parse_setting(name, t) for t in items)


def _split(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def normalise_values(name: str, values: Any) -> tuple:
    """Each value checked (and int→float normalised) by RunConfig itself; no repeats."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ConfigError(name, f"the values must be a list, got {values!r}")
    out: list = []
    for v in values:
        # Checked alone here (the defaults are the permissive setting for every rule); the
        # cells, with the other axis and the base, are checked by cells().
        v = getattr(RunConfig().replace(**{name: v}), name)
        if v in out:
            raise ConfigError(name, f"{RunConfig.format_setting(name, v)} is listed twice")
        out.append(v)
    if not out:
        raise ConfigError(name, f"give at least one value ({describe(FIELDS[name])})")
    return tuple(out)


def values_text(name: str, values, sep: str = ", ") -> str:
    """A list of one setting's values as a link or the page's value box writes it."""
    return sep.join(RunConfig.format_setting(name, v) for v in values)


def _valid_cells(base, x, xs, y, yv, warnings) -> bool:
    try:
        for xv in xs:
            base.replace(**{x: xv, y: yv})
        return True
    except ConfigError as err:
        warnings.append(f"{err}; dropped {y}={RunConfig.format_setting(y, yv)}.")
        return False


# --- running -----------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """What a sweep produced.

    table   one row per cell, row-major: x, y (display strings), x_value, y_value (raw),
            row, col (positions in the grid), key (RunConfig.key(), for the Lab), val_accuracy,
            train_loss, depth_ratio (core.lab.metrics.DEPTH_RATIO), flat_metric ("saturation",
            "inactive" or None: what flat_mean and flat_max measure), flat_mean, flat_max (the
            hidden layers' mean and largest share at the end), diverged, diverged_step,
            batched (trained in a stacked group), group_size, seconds, from_store
    epochs  key, epoch, split (val/train), metric (loss/accuracy), value
    timing  seconds (this call), cells, cells_trained, cells_from_store, cells_batched,
            groups (sizes of the stacked groups trained)
    """

    spec: SweepSpec
    table: pd.DataFrame
    epochs: pd.DataFrame
    timing: dict[str, Any]
    configs: dict[str, RunConfig]

    def grid(self, column: str) -> pd.DataFrame:
        """One column of the table as a grid: index = y values, columns = x values."""
        wide = self.table.pivot(index="y", columns="x", values=column)
        return wide.reindex(index=self.spec.labels("y"), columns=self.spec.labels("x"))

    def config(self, key: str) -> RunConfig:
        """The RunConfig of a cell (by the table's key): what the Lab should open."""
        return self.configs[key]


ProgressFn = Callable[[float, int, str], None]


def run_sweep(spec: SweepSpec, *, store: RunStore | None = None,
              on_progress: ProgressFn | None = None, batched: bool = True,
              use_store: bool = True, engine: Engine | None = None) -> SweepResult:
    """Every cell's result: from the store when there, else trained (stacked where possible).

    `on_progress(done_cells, total_cells, message)`: done_cells is a float, fractional while a
    group trains. `batched=False` trains each cell alone with the full trainer (a Lab run each).
    `use_store=False` neither reads nor writes the store. `engine` (core.lab.sweep_engines)
    trains the units: in this process (the default), in local worker processes or on Ray. Cells
    whose unit failed raise SweepFailed naming them, after the others are stored.
    """
    t0 = time.perf_counter()
    engine = InProcess() if engine is None else engine
    store = (cache.default_store() if store is None else store) if use_store else None
    cells = spec.cells()
    total = len(cells)
    found: dict[int, CellSummary] = {}
    _look_up(cells, range(total), store, found)
    done = float(len(found))

    def progress(message: str, extra: float = 0.0) -> None:
        if on_progress:
            on_progress(min(done + extra, total), total, message)
    progress(f"{len(found)} of {total} cells from the run store")
    todo = [i for i in range(total) if i not in found]
    # ConfigError if what is left to train is over the compute budget: before anything trains.
    refuse_sweep([SWEEP_CELL.estimate(cells[i]) for i in todo])
    sizes = []
    with contextlib.ExitStack() as held:
        if store is not None and todo:
            # One session trains a cell; another asking for it (the same shared link, or an
            # overlapping grid) waits, then reads it from the store. Sorted: no deadlock.
            for key in sorted({SWEEP_CELL.store_key(cells[i]) for i in todo}):
                held.enter_context(cache.training_lock(key, progress))
            _look_up(cells, todo, store, found)
            todo = [i for i in todo if i not in found]
            done = float(len(found))
        groups = ([[todo[j] for j in g] for g in batch_groups([cells[i] for i in todo])]
                  if batched else [[i] for i in todo])
        groups = split_for_workers(groups, engine.workers)
        units = [tuple(cells[i] for i in group) for group in groups]
        fractions: dict[int, float] = {}
        failed: dict[int, str] = {}

        def on_fraction(u: int, fraction: float) -> None:
            fractions[u] = fraction
            running = sum(len(units[v]) * f for v, f in fractions.items())
            progress(f"training {_what(spec, units, fractions, engine)}", running)
        progress(f"training {len(todo)} cells in {len(units)} group(s)"
                 + (f" on {engine.workers} {engine.name} workers" if engine.workers > 1 else ""))
        for u, outcome in engine.run(units, on_fraction, progress):
            fractions.pop(u, None)
            if isinstance(outcome, UnitFailed):
                failed[u] = outcome.error
                continue
            if isinstance(outcome, RunResult):  # a cell alone: a full Lab run
                if store is not None:
                    cache.put(LAB_RUN, outcome, store)
                outcome = [CellSummary.from_run(outcome)]
            elif len(units[u]) > 1:
                sizes.append(len(units[u]))
            for i, summary in zip(groups[u], outcome):
                found[i] = summary
                if store is not None:
                    cache.put(SWEEP_CELL, summary, store)
            done += len(units[u])
            progress(f"{int(done)} of {total} cells done")
    if failed:
        raise SweepFailed(spec, {u: (units[u], error) for u, error in failed.items()},
                          len(found))
    return _result(spec, cells, found, time.perf_counter() - t0, sizes)


def _look_up(cells: list[RunConfig], which, store: RunStore | None,
             found: dict[int, CellSummary]) -> None:
    if store is not None:
        for i in which:
            summary = _lookup(cells[i], store)
            if summary is not None:
                found[i] = summary


def _label(spec: SweepSpec, cfg: RunConfig) -> str:
    return (f"{spec.x}={RunConfig.format_setting(spec.x, getattr(cfg, spec.x))}, "
            f"{spec.y}={RunConfig.format_setting(spec.y, getattr(cfg, spec.y))}")


def _what(spec: SweepSpec, units: list[tuple[RunConfig, ...]], running: dict[int, float],
          engine: Engine) -> str:
    """What is training now, for the progress line."""
    if len(running) > 1:
        return f"{len(running)} groups at once on {engine.workers} {engine.name} workers"
    u, fraction = next(iter(running.items()))
    return (f"{len(units[u])} cells together" if len(units[u]) > 1
            else _label(spec, units[u][0])) + f" ({fraction:.0%})"


class SweepFailed(RuntimeError):
    """Some cells' units raised or lost their worker; the cells that trained are stored."""

    def __init__(self, spec: SweepSpec, failed: dict[int, tuple[tuple[RunConfig, ...], str]],
                 n_found: int):
        self.cells = [_label(spec, cfg) for unit, _ in failed.values() for cfg in unit]
        errors = sorted({error for _, error in failed.values()})
        super().__init__(f"{len(self.cells)} cell(s) did not train ({'; '.join(self.cells)}): "
                         f"{' | '.join(errors)}. The other {n_found} cells are done and stored; "
                         f"run the sweep again to retry these.")


def _lookup(cfg: RunConfig, store: RunStore) -> CellSummary | None:
    """The stored summary of a cell; a full run of the config (e.g. from the Lab) wins."""
    summary = cache.load(SWEEP_CELL, cfg, store)
    if (summary is None or summary.source != "run") and cfg.key() in store:
        result = cached_run(cfg, store)
        if result is not None:
            summary = CellSummary.from_run(result)
            cache.put(SWEEP_CELL, summary, store)
    if summary is not None:
        summary.from_store = True
    return summary


def _result(spec: SweepSpec, cells: list[RunConfig], found: dict[int, CellSummary],
            seconds: float, sizes: list[int]) -> SweepResult:
    rows, epochs = [], []
    n_x = len(spec.x_values)
    for i, cfg in enumerate(cells):
        s = found[i]
        xv, yv = getattr(cfg, spec.x), getattr(cfg, spec.y)
        shares = np.asarray(s.flat, dtype=float)
        finite = shares[np.isfinite(shares)]
        rows.append({
            "x": RunConfig.format_setting(spec.x, xv), "y": RunConfig.format_setting(spec.y, yv), "x_value": xv, "y_value": yv,
            "row": i // n_x, "col": i % n_x, "key": cfg.key(),
            "val_accuracy": s.final("val", "accuracy"), "train_loss": s.final("train", "loss"),
            "depth_ratio": s.depth_ratio, "flat_metric": s.flat_metric,
            "flat_mean": float(finite.mean()) if finite.size else math.nan,
            "flat_max": most_flat(s.flat),
            "diverged": s.status == "diverged", "diverged_step": s.diverged_step,
            "batched": s.source == "stacked" and s.group_size > 1, "group_size": s.group_size,
            "seconds": s.seconds, "from_store": s.from_store,
        })
        epochs.append(s.epochs.assign(key=cfg.key()))
    table = pd.DataFrame(rows)
    table["diverged_step"] = table["diverged_step"].astype("Int64")
    epoch_table = (pd.concat(epochs, ignore_index=True)[["key", "epoch", "split", "metric",
                                                          "value"]])
    from_store = int(table.from_store.sum())
    timing = {"seconds": seconds, "cells": len(cells), "cells_trained": len(cells) - from_store,
              "cells_from_store": from_store,
              "cells_batched": int((table.batched & ~table.from_store).sum()),
              "groups": sizes}
    return SweepResult(spec, table, epoch_table, timing, {cfg.key(): cfg for cfg in cells})
