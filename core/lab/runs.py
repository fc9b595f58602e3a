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
from core.budget import CONV_COST, LAYER_STEP_COST, STEP_COST, Estimate, sci
from core.cache import RunKind
from core.data.datasets import IMAGE_SHAPES, nominal_sizes
from core.lab.config import FIELDS, RunConfig
from core.lab.models import network_macs
from core.lab.result import RunResult
from core.lab.trainer import BOUNDARY_GRID, train
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
    return (macs * (3 * n * epochs + per_epoch_eval * (epochs + 1) + n_test)
            + steps * (STEP_COST + LAYER_STEP_COST * layers))


def run_estimate(cfg: RunConfig) -> Estimate:
    """What training cfg costs, for the compute budget (core.budget)."""
    n_train = nominal_sizes(cfg.dataset)[0]
    n = min(cfg.max_train or n_train, n_train)
    return Estimate(
        f"this run ({n:,} examples × {cfg.epochs} epochs through a network of "
        f"{sci(network_macs(cfg.model, cfg.depth, cfg.width, cfg.dataset))} multiply-adds "
        "per example, plus evaluation and per-step costs)",
        {**cfg.to_dict(), "max_train": n}, run_work,
        (("epochs", "lower"), ("max_train", "lower"), ("batch_size", "raise"),
         ("width", "lower"), ("depth", "lower")), FIELDS)


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
            on_wait: Callable[[str], None] | None = None) -> RunResult:
    """The result for `cfg`: from the store if present, else trained now and stored.

    A run over the compute budget (core.budget) is refused with a ConfigError before it trains;
    `on_wait(message)` hears its place while it queues for a training slot (core.cache).
    """
    return cache.obtain(LAB_RUN, cfg, store, on_epoch, on_wait)


def cached_run(cfg: RunConfig, store: RunStore | None = None) -> RunResult | None:
    """The stored result for this config, or None. An unreadable entry counts as missing."""
    return cache.cached(LAB_RUN, cfg, store)


def stored_runs(store: RunStore | None = None) -> list[dict]:
    """The full runs in the store, most recently used first: [{key, meta}] (meta as `run_meta`)."""
    store = cache.default_store() if store is None else store
    return [{"key": e["key"], "meta": e["meta"]} for e in store.entries()
            if _RUN_KEY.fullmatch(e["key"])]


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
