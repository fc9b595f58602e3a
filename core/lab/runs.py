"""`get_run(config)`: the cached result of a Lab config, training it only when the store lacks it.

This is the one way the app, the CLI and notebooks obtain a Training Lab run:

    from core.lab.runs import get_run
    result = get_run(RunConfig(depth=10, activation="sigmoid"))   # trains once, then instant

It is `LAB_RUN`'s path through the run cache (core/cache.py), which every kind of run shares:
concurrent callers wait for the first one's training, a request over the compute budget is
refused before it trains (`run_estimate` is the Lab's cost model), recent results stay in memory.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping

from core import cache
from core.budget import (CONV_COST, LAYER_STEP_COST, REQUEST_BASE, STEP_COST, Estimate,
                         refuse, refuse_together, sci)
from core.cache import RunKind
from core.data.datasets import IMAGE_SHAPES, nominal_sizes
from core.lab.config import FIELDS, RunConfig
from core.lab.metrics import LAYER_METRICS, PROBE_EXAMPLES
from core.lab.models import network_macs, network_sizes
from core.lab.result import RunResult
from core.lab.sharpness import ITERATIONS, SHARPNESS_EXAMPLES
from core.lab.trainer import BOUNDARY_GRID, record_interval, train
from core.optimizer_choices import OPTIMIZER_SLOTS
from core.settings import ConfigError
from core.tables import STOPPED, stored_label
from core.training import EVAL_BATCH
from core.store import RunStore

_RUN_KEY = re.compile(r"[0-9a-f]{20}")   # RunConfig.key(); other entries (sweep cells) differ


def run_work(v: Mapping[str, Any]) -> float:
    """Estimated multiply-adds of training a RunConfig's settings (`v`: its fields)."""
    n_train, n_val, n_test = nominal_sizes(v["dataset"])
    n = min(v["max_train"] or n_train, n_train)
    epochs = v["epochs"]
    macs = network_macs(v["model"], v["depth"], v["width"], v["dataset"], CONV_COST)
    layers = v["depth"] + (2 if v["model"] == "cnn" else 1)
    # A 2-D toy set's decision boundary is evaluated on the grid every epoch.
    per_epoch_eval = n_val + (0 if v["dataset"] in IMAGE_SHAPES else BOUNDARY_GRID ** 2)
    steps = epochs * math.ceil(n / v["batch_size"])
    # A sharpness estimate: a backward keeping its graph, then each Hessian-vector product about
    # two passes (the default MLP measured 37 passes' time an example, against 43 here).
    estimates = math.ceil(steps / v["sharpness_every"]) if v["sharpness_every"] else 0
    sharpness = estimates * min(SHARPNESS_EXAMPLES, n) * (3 + 2 * ITERATIONS)
    return (macs * (3 * n * epochs + per_epoch_eval * (epochs + 1) + n_test + sharpness)
            + steps * (STEP_COST + LAYER_STEP_COST * layers))


# Bytes, for the memory budget, measured against VmHWM (less library pages) on a grid of runs
# (tests/test_memory.py).
FLOAT = 4
ROW_BYTES = 400             # a layer-table row: its DataFrame, then the stored record's lists
BOUNDARY_ROW_BYTES = 280    # a boundary row: DataFrame, record, JSON (measured 237 at 200 epochs)
SLOTS_PER_LAYER = 14        # the recorder's numbers per layer and step (core.lab.recorder._Layout)
SHARPNESS_KEPT = 12         # floats per unit and example a sharpness estimate holds (measured)


def _steps(v: Mapping[str, Any]) -> tuple[int, int]:
    """(training examples, steps an epoch) of a RunConfig's settings."""
    n_train = nominal_sizes(v["dataset"])[0]
    n = min(v["max_train"] or n_train, n_train)
    return n, max(1, math.ceil(n / v["batch_size"]))


def run_rows(v: Mapping[str, Any]) -> float:
    """Layer-table rows a run of these settings records (at most: every metric of every layer
    at each recorded step, each epoch's first and last step included, and the dead units)."""
    _, n_steps = _steps(v)
    layers = v["depth"] + (2 if v["model"] == "cnn" else 1)
    every = record_interval(v["record_every"], n_steps, v["epochs"], layers)
    records = math.ceil(n_steps / every) + 2
    return v["epochs"] * records * layers * len(LAYER_METRICS)


def run_memory(v: Mapping[str, Any]) -> float:
    """Peak bytes training a RunConfig's settings adds to the process (`v`: its fields).

    parameters × (weights, gradients, the optimizer's slots, the recorder's two copies, one
               temporary)
    + the larger of a training step's activations (forward, kept for backward, and the
      recorder's stacked statistics at a recorded step) and an evaluation chunk's (EVAL_BATCH
      examples, or the probe set, in inference mode)
    + the recorder's epoch buffers (on the device, then as float64 on the host)
    + the recorded rows (a 2-D toy set's decision boundary too), the data split's copies, and
      REQUEST_BASE.
    """
    n, n_steps = _steps(v)
    _, n_val, n_test = nominal_sizes(v["dataset"])
    n_in, outputs, params, unfolded = network_sizes(v["model"], v["depth"], v["width"],
                                                    v["dataset"], v["batch_norm"])
    layers = len(outputs)
    state = params * FLOAT * (5 + OPTIMIZER_SLOTS[v["optimizer"]])
    # Per example in a training step: z and a kept for backward (+ batch norm's and dropout's),
    # their gradients, and the recorder's stack of z and a with its centred copy.
    kept = 4 + 2 * v["batch_norm"] + (v["dropout"] > 0)
    per_example = FLOAT * (sum(outputs) * (kept + 4) + 2 * max(outputs) + 2 * n_in + unfolded)
    training = min(v["batch_size"], n) * per_example
    # A sharpness estimate (core.lab.sharpness) on its fixed batch: the forward kept for a
    # backward that keeps its own graph, and the Hessian-vector products' temporaries; and the
    # gradient with its graph, the eigenvector and a product, the size of the parameters.
    sharp = (min(SHARPNESS_EXAMPLES, n) * FLOAT * sum(outputs) * (SHARPNESS_KEPT + kept - 4)
             + params * FLOAT * 3) if v["sharpness_every"] else 0
    chunk = max(min(EVAL_BATCH, max(n_val, n_test)), min(PROBE_EXAMPLES, n))
    evaluation = chunk * FLOAT * (3 * max(outputs) + 2 * n_in + unfolded)
    recorder = n_steps * (SLOTS_PER_LAYER * layers + 5) * (FLOAT + 16)
    data = (n + n_val + n_test) * n_in * FLOAT
    boundary = 0 if v["dataset"] in IMAGE_SHAPES else (v["epochs"] + 1) * BOUNDARY_GRID ** 2
    return (REQUEST_BASE + state + max(training, evaluation, sharp) + recorder + run_rows(v) * ROW_BYTES
            + boundary * BOUNDARY_ROW_BYTES + data)


def run_estimate(cfg: RunConfig) -> Estimate:
    """What training cfg costs, for the compute and memory budgets (core.budget)."""
    n_train = nominal_sizes(cfg.dataset)[0]
    n = min(cfg.max_train or n_train, n_train)
    return Estimate(
        f"this run ({n:,} examples × {cfg.epochs} epochs through a network of "
        f"{sci(network_macs(cfg.model, cfg.depth, cfg.width, cfg.dataset))} multiply-adds "
        "per example, plus evaluation and per-step costs)",
        {**cfg.to_dict(), "max_train": n}, run_work,
        (("epochs", "lower"), ("max_train", "lower"), ("batch_size", "raise"),
         ("width", "lower"), ("depth", "lower")), FIELDS,
        memory=run_memory,
        memory_knobs=(("batch_size", "lower"), ("width", "lower"), ("depth", "lower"),
                      ("record_every", "raise"), ("max_train", "lower")),
        rows=run_rows, rows_knobs=(("record_every", "raise"), ("epochs", "lower")))


def run_meta(result: RunResult) -> dict:
    """Small, listable facts about a run (kept beside the payload in the store)."""
    return {
        "changed": {k: v for k, v in result.config.changed().items()},
        "status": result.status,
        "val_accuracy": result.final("val", "accuracy"),
        "seconds": round(result.timing["seconds"], 3),
        "device": result.device,
    }


LAB_RUN = RunKind("run", "", RunResult.from_dict, run_estimate, run_meta, train)


def get_run(cfg: RunConfig, *, store: RunStore | None = None,
            on_epoch: Callable[[RunResult], None] | None = None,
            on_wait: Callable[[str], None] | None = None, stopped: bool = False) -> RunResult:
    """The result for `cfg`: from the store if present, else trained now and stored.

    A run over the compute budget (core.budget) is refused with a ConfigError before it trains;
    `on_wait(message)` hears its place while it queues for a training slot (core.cache). A run
    its user stopped (`on_epoch` raised core.training.StopTraining) is served only with
    `stopped=True`; otherwise it trains in full and replaces the stopped one.
    """
    return cache.obtain(LAB_RUN, cfg, store, on_epoch, on_wait, stopped=stopped)


def refuse_runs(cfgs: list[RunConfig], store: RunStore | None = None) -> None:
    """ConfigError, before any trains, if the runs one request trains (Compare's A and B, the
    Playground's ReLU and tanh) are over a budget, alone or together; stored runs cost nothing."""
    todo = [cfg for cfg in dict.fromkeys(cfgs) if cached_run(cfg, store) is None]
    estimates = [run_estimate(cfg) for cfg in todo]
    for estimate in estimates:
        refuse(estimate)
    refuse_together(estimates, f"the {len(todo)} runs to train", "runs",
                    "lower {} in one of them")


def cached_run(cfg: RunConfig, store: RunStore | None = None, *,
               stopped: bool = False) -> RunResult | None:
    """The stored result for this config, or None. An unreadable entry counts as missing, and
    so does a run its user stopped unless `stopped`."""
    return cache.cached(LAB_RUN, cfg, store, stopped=stopped)


def stored_runs(store: RunStore | None = None) -> list[dict]:
    """The full runs in the store, most recently used first: [{key, meta, created}] (meta as
    `run_meta`, created a Unix time). Runs their users stopped are left out: what is compared
    has trained every epoch."""
    store = cache.default_store() if store is None else store
    return [{"key": e["key"], "meta": e["meta"], "created": e["created"]}
            for e in store.entries()
            if _RUN_KEY.fullmatch(e["key"]) and (e["meta"] or {}).get("status") != STOPPED]


OPTIMIZER_NAMES = {"sgd": "SGD", "momentum": "SGD+momentum", "nesterov": "Nesterov",
                   "adagrad": "Adagrad", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW"}
MODEL_NAMES = {"mlp": "MLP", "residual_mlp": "residual MLP", "cnn": "CNN"}
# What `run_label` writes in its fixed parts; any other setting that differs from the defaults
# (and has an effect) follows as name=value.
_LABELLED = {"dataset", "model", "depth", "width", "activation", "optimizer", "lr", "epochs",
             "seed"}


def run_label(entry: Mapping[str, Any]) -> str:
    """A stored run (`stored_runs` entry) as a person picks it: "digits · MLP 5×64 sigmoid ·
    SGD lr 0.1 · 10 epochs · seed 0 · init=xavier_normal — 93.1% val, trained 2026-12-07
    10:12"; a run the current settings cannot read (an older schema) by its key."""
    meta = entry.get("meta") or {}
    try:
        cfg = RunConfig().replace(**(meta.get("changed") or {}))
    except (ConfigError, TypeError):
        return f"run {entry['key']} (settings of an older version)"
    others = [f"{cfg.max_train:,} training examples" if name == "max_train" else
              f"{name}={RunConfig.format_setting(name, getattr(cfg, name))}"
              for name in cfg.changed() if name not in _LABELLED and name not in cfg.inert()]
    what = " · ".join([
        cfg.dataset,
        f"{MODEL_NAMES[cfg.model]} {cfg.depth}×{cfg.width} {cfg.activation}",
        f"{OPTIMIZER_NAMES[cfg.optimizer]} lr {cfg.lr:g}",
        f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)}",
        f"seed {cfg.seed}",
        *others])
    accuracy = meta.get("val_accuracy")
    return stored_label(what, f"{accuracy:.1%} val" if isinstance(accuracy, float)
                        and math.isfinite(accuracy) else "", entry, "trained")


def load_run(key: str, store: RunStore | None = None) -> RunResult | None:
    """A stored run by its key (a config hash); None if absent, unreadable or not a run."""
    store = cache.default_store() if store is None else store
    if not _RUN_KEY.fullmatch(key or ""):
        return None
    record = store.get(key)
    if record is None:
        return None
    try:
        cfg = RunConfig.from_dict(record["config"])
    except (KeyError, TypeError, ValueError):
        return None
    return cached_run(cfg, store) if cfg.key() == key else None
