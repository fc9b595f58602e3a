"""`RunResult`: what a training run produced, as tidy tables plus the facts around them.

Tables (pandas, long format, ready for Altair):
  epochs      epoch, split (train/val/test), metric (loss/accuracy), value
              epoch 0 is the network at initialisation, before any update
  steps       step, epoch, loss, grad_norm (total, before clipping), clipped (0/1), lr
  layers      step, epoch, layer, metric, value      (see core.lab.metrics.CATALOGUE)
  histograms  epoch, layer, kind, bin, lo, hi, count  (epoch e = after e epochs; each snapshot's
              own equal bins from its smallest to its largest value)
  boundary    epoch, x, y, p: the predicted probability of class 1 on a square grid over the
              data, for 2-D datasets only (empty otherwise); epoch 0 is the initial network
  points      x, y, label, split: the 2-D data itself in raw coordinates (empty for images)
  val_trace   step, val_loss, val_accuracy: the fixed validation subset every eval_every steps
              (empty when eval_every is off); step t is the network after t updates
  unit_preacts  step, layer, unit, percentile, value: the 15th/50th/85th percentiles over the
              batch of a few fixed units' pre-activations (core.lab.unit_trace), every record
  act_percentiles  step, layer, percentile, value: the 98th percentile of each hidden layer's
              activations over the batch and its units, every record
  sharpness   step, sharpness: the top Hessian eigenvalue of the loss (core.lab.sharpness), for
              runs that asked for it (empty otherwise, and in runs stored before it existed)

`to_dict()`/`from_dict()` give a JSON-able form (the run store's and the CLI's); non-finite
floats survive as NaN/Infinity in the store and become null in strict JSON (`to_json()`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from core.activations import flat_region
from core.lab.config import LOSS_NAMES, RunConfig
from core.lab.metrics import PROBE_EXAMPLES
from core.tables import TrainedRun, table_from_dict, table_to_dict

# Tables a run of another kind (core.watch's) or an older file may lack: empty by default.
TRACE_COLUMNS = {
    "val_trace": ["step", "val_loss", "val_accuracy"],
    "unit_preacts": ["step", "layer", "unit", "percentile", "value"],
    "act_percentiles": ["step", "layer", "percentile", "value"],
    "sharpness": ["step", "sharpness"],
}
TABLES = ("epochs", "steps", "layers", "histograms", "boundary", "points", *TRACE_COLUMNS)


def _empty(name: str):
    return field(default_factory=lambda: pd.DataFrame(columns=TRACE_COLUMNS[name]))


@dataclass
class RunResult(TrainedRun):
    config: RunConfig
    status: str                      # "completed" | "diverged" | "stopped" (core.tables)
    device: str
    dataset: dict[str, Any]          # DatasetInfo as a dict: source, notice, sizes, ...
    layer_names: list[str]
    n_params: int
    timing: dict[str, float]         # seconds (whole run), train_seconds, samples_per_sec
    divergence: dict[str, Any] | None
    epochs: pd.DataFrame
    steps: pd.DataFrame
    layers: pd.DataFrame
    histograms: pd.DataFrame
    boundary: pd.DataFrame
    points: pd.DataFrame
    # With patience set and the validation loss stalled: {epoch (stopped after), best_epoch,
    # best_val_loss, patience}; None when the run used every epoch (or diverged).
    early_stop: dict[str, Any] | None = None
    # With target_loss set: the first step whose training loss, averaged over the last
    # CRITERION_WINDOW steps, is at or below it (core.lab.criterion); None when never reached.
    steps_to_target: int | None = None
    val_trace: pd.DataFrame = _empty("val_trace")
    unit_preacts: pd.DataFrame = _empty("unit_preacts")
    act_percentiles: pd.DataFrame = _empty("act_percentiles")
    sharpness: pd.DataFrame = _empty("sharpness")
    from_store: bool = field(default=False, compare=False)
    # What pure functions derived from this run (layer_metric's pivots, the doctor's findings),
    # made once per run object: every session served this object from memory, on every rerun,
    # asks the same (a pivot of the long table is ~10 ms, the doctor ~50 ms).
    _derived: dict[Any, Any] = field(default_factory=dict, init=False, repr=False,
                                     compare=False)

    # --- common questions (key, diverged, final: core.tables.TrainedRun) ---------------------
    def derived(self, name: Any, compute: Callable[["RunResult"], Any]) -> Any:
        """compute(self), made once per run object and kept under `name`; compute must be a
        pure function of the run, and callers must not change what it returns."""
        if name not in self._derived:
            self._derived[name] = compute(self)
        return self._derived[name]

    def layer_metric(self, metric: str) -> pd.DataFrame:
        """Wide table of one per-layer metric: index step, one column per layer (in order)."""
        def pivot(run: RunResult) -> pd.DataFrame:
            rows = run.layers[run.layers.metric == metric]
            wide = rows.pivot_table(index="step", columns="layer", values="value", dropna=False)
            return wide.reindex(columns=[n for n in run.layer_names if n in wide.columns])
        return self.derived(("wide", metric), pivot).copy()   # a copy: callers may change theirs

    def at_step(self, metric: str, step: int = 0) -> pd.Series:
        """One per-layer metric at one recorded step, indexed by layer in network order."""
        return self.layer_metric(metric).loc[step]

    def depth_ratio(self, step: int = 0) -> float:
        """The depth ratio (core.lab.metrics.DEPTH_RATIO) at a step (0 = at init): the first
        layer's back-propagated gradient ‖∂L/∂z‖ over the output layer's. Far below 1: the
        gradient vanished on its way to the input; far above 1: it exploded. NaN for a network
        of one layer."""
        g = self.at_step("out_grad_norm", step)
        if len(g) < 2:
            return math.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.float64(g.iloc[0]) / np.float64(g.iloc[-1]))

    @property
    def loss_title(self) -> str:
        """The loss chart's title, naming the run's loss (a watched loop's is its own)."""
        name = LOSS_NAMES.get(getattr(self.config, "loss", None))
        return f"Loss ({name})" if name else "Loss"

    @property
    def flat_metric(self) -> str | None:
        """"saturation" or "inactive": what its hidden layers' flat region is called (None for a
        linear network), see core.activations.flat_region."""
        return flat_region(self.config.activation)

    def end_flat(self) -> list[float]:
        """Each hidden layer's saturated or inactive share (`flat_metric`) at the last recorded
        step, NaN for every layer of a diverged run (its last record is the blow-up);
        `core.lab.metrics.most_flat` of these is the headline number the Lab, Compare and the
        Sweep show."""
        if self.flat_metric is None:
            return []
        share = self.layer_metric(self.flat_metric)
        if self.diverged or share.empty:
            return [math.nan] * len(share.columns)
        return share.iloc[-1].astype(float).tolist()

    @property
    def probe_examples(self) -> int:
        """How many examples `dead` was measured on: the trainer's fixed probe set, the first
        PROBE_EXAMPLES training examples, or all of them when fewer."""
        return min(PROBE_EXAMPLES, int(self.dataset.get("n_train", PROBE_EXAMPLES)))

    @property
    def probe_set(self) -> str:
        """The probe set in words, as the doctor's evidence names it."""
        return f"the first {self.probe_examples:,} training examples"

    # --- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "key": self.key,
            "status": self.status,
            "device": self.device,
            "dataset": self.dataset,
            "layer_names": self.layer_names,
            "n_params": self.n_params,
            "timing": self.timing,
            "divergence": self.divergence,
            "early_stop": self.early_stop,
            "steps_to_target": self.steps_to_target,
            **{name: table_to_dict(getattr(self, name)) for name in TABLES},
        }

    @staticmethod
    def config_from_dict(data: dict[str, Any]) -> Any:
        """The run's settings from their dict: a RunConfig here; a run of another kind in these
        tables (core.watch's WatchedRun) reads its own."""
        return RunConfig.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunResult":
        return cls(
            config=cls.config_from_dict(data["config"]),
            status=data["status"],
            device=data["device"],
            dataset=data["dataset"],
            layer_names=list(data["layer_names"]),
            n_params=int(data["n_params"]),
            timing=dict(data["timing"]),
            divergence=data["divergence"],
            early_stop=data.get("early_stop"),
            steps_to_target=data.get("steps_to_target"),
            **{name: table_from_dict(data[name]) for name in TABLES if name in data},
        )

    def to_json(self, **kwargs: Any) -> str:
        """Strict JSON (non-finite numbers become null), e.g. for `python -m core train --json`."""
        return json.dumps(_strict(self.to_dict()), allow_nan=False, **kwargs)


def _strict(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (np.floating,)):
        return _strict(float(value))
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value
