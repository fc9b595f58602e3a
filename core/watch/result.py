"""`WatchedRun`: a watched training loop's records, in the Lab's tables, so the Lab's charts and
its doctor (`core.lab.doctor.diagnose`) read it as they read a run trained here.

    run = w.result()          # from core.watch.watch
    run.save("run.json")      # strict JSON (non-finite numbers become null)
    run = load("run.json")
    key = run.store()         # or into the run store (SATLAB_STORE, the Lab's), under a key
    run = load_stored(key)    # that opens it on the "Your model" page: /watched?run=KEY

It is a `RunResult` (not a sibling class) because everything that reads a Lab run asks the same
questions of it: `layer_metric`, `depth_ratio`, `end_flat`, `diverged`, and the doctor's checks.
What differs is its config: a watched model has no RunConfig (no depth, width, dataset), so
`WatchedConfig` holds what was observed of the user's loop, under the names the doctor reads:
  activation   the activation most (example, unit) pairs went through on the first recorded
               step, "linear" when none was seen: the doctor's activation-specific checks
               (saturated, asymptote, dead) and its words follow it
  optimizer, lr, weight_decay   the optimizer's class (lower case) and its first param group's
               values when the watch began
  momentum, nesterov   torch SGD's (the sharpness threshold depends on them, core.lab.sharpness)
  batch_norm   whether the model has a normalisation layer (BatchNorm, LayerNorm, GroupNorm, ...)
  dropout      the largest dropout probability among its nn.Dropout modules
  probe        how many examples the probe batch that measured dead units held; 0 without one
  init, clip_norm, clip_value, patience   not observable from the loop: "unknown" and None
               (the steps table's `clipped` says whether the loop clipped on recorded steps)
The doctor's fixes are Lab settings (`Fix.changes`); for a watched run they can only be read as
advice, since nothing here retrains the user's model. `replace` exists so those fixes can be
computed (the doctor offers only fixes that change the config).

Tables that do not apply are empty: `epochs` (the loop's epochs and validation are its own),
`histograms`, `boundary`, `points`. `steps.epoch` is 0 throughout.

In the run store a watched run's key is `watch-` and a hash of what it recorded (its file but for
its timing): the same records, stored twice or from a file and from the loop, are one entry, and
a saved file names the key its run is stored under. The store is the Lab's cache, bounded and
least-recently-used first out (core.store): keep the file of a run that must last.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import cache
from core.lab.result import RunResult
from core.store import RunStore
from core.tables import stored_label

KIND = "watched"   # a saved run's "kind": tells a watched run's file from a Lab run's
KEY_PREFIX = "watch-"
STORE_KEY = re.compile(KEY_PREFIX + r"[0-9a-f]{20}")


@dataclass(frozen=True)
class WatchedConfig:
    run_id: str                  # a hash of the recorded content (`identified`)
    model: str                   # the model's class name, e.g. "TransformerEncoder"
    optimizer: str               # the optimizer's class name in lower case, "" without one
    lr: float
    weight_decay: float
    every: int                   # per-layer statistics every this many steps
    activation: str              # see the module docstring
    batch_norm: bool
    dropout: float
    init: str = "unknown"
    clip_norm: float | None = None
    clip_value: float | None = None
    patience: int | None = None
    # Examples in the probe batch; 0 without one; None in a file saved before its size was
    # recorded (such files still open: nothing stored is lost).
    probe: int | None = None
    momentum: float = 0.0        # torch SGD's momentum and nesterov: the sharpness threshold's
    nesterov: bool = False

    def key(self) -> str:
        return KEY_PREFIX + self.run_id

    def replace(self, **changes: Any) -> "WatchedConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WatchedConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class WatchedRun(RunResult):
    config: WatchedConfig

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "kind": KIND}

    config_from_dict = staticmethod(WatchedConfig.from_dict)

    @property
    def probe_examples(self) -> int | None:
        return self.config.probe

    @property
    def probe_set(self) -> str:
        if self.config.probe is None:
            return "the examples of the loop's probe batch"
        return f"the {self.config.probe:,} examples of the loop's probe batch"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WatchedRun":
        if data.get("kind") != KIND:
            raise ValueError(f"kind: {data.get('kind')!r} is not a watched run ({KIND!r})")
        return super().from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    def store(self, store: RunStore | None = None) -> str:
        """Put the run into the run store (the process's default: SATLAB_STORE, else the user's
        cache folder); its key. What is stored is what `save` writes, so opening the stored run
        gives what opening the file gives. RuntimeError when the store did not keep it (too
        large for it, or its file cannot be written; the reason is logged)."""
        store = cache.default_store() if store is None else store
        if not store.put(self.key, json.loads(self.to_json()), stored_meta(self)):
            raise RuntimeError(f"the run store {store.path} did not keep run {self.key} (see "
                               f"the log); save it to a file instead")
        return self.key


def identified(run: WatchedRun) -> WatchedRun:
    """`run` with its run_id set to a hash of its records: everything its file holds but its
    timing (and the id itself), so the same records always get the same key."""
    blank = run.to_dict()
    blank.pop("timing")
    blank["config"]["run_id"] = blank["key"] = ""
    text = json.dumps(blank, sort_keys=True, allow_nan=True, separators=(",", ":"))
    run.config = run.config.replace(run_id=hashlib.sha256(text.encode()).hexdigest()[:20])
    return run


def stored_meta(run: WatchedRun) -> dict[str, Any]:
    """What lists a stored watched run without reading it (`watched_label` reads it)."""
    cfg, losses = run.config, run.steps["loss"].dropna()
    return {"kind": KIND, "model": cfg.model, "optimizer": cfg.optimizer, "lr": cfg.lr,
            "every": cfg.every, "activation": cfg.activation, "steps": len(run.steps),
            "final_loss": float(losses.iloc[-1]) if len(losses) else None,
            "status": run.status, "device": run.device}


def stored_watched(store: RunStore | None = None) -> list[dict[str, Any]]:
    """The watched runs in the store, most recently used first: [{key, meta, created}]."""
    store = cache.default_store() if store is None else store
    return [{"key": e["key"], "meta": e["meta"], "created": e["created"]}
            for e in store.entries()
            if STORE_KEY.fullmatch(e["key"]) and e["meta"].get("kind") == KIND]


def watched_label(entry: dict[str, Any]) -> str:
    """A stored watched run as a person picks it, in the shape of the Lab's `run_label`:
    "Sequential · sgd lr 0.1 · sigmoid · 20 steps, layers every 5 — final loss 2.301, stored
    2026-12-07 10:12"."""
    meta = entry.get("meta") or {}
    try:
        what = " · ".join([str(meta["model"]),
                           f"{meta['optimizer'] or 'no optimizer'} lr {meta['lr']:g}",
                           str(meta["activation"]),
                           f"{meta['steps']:,} steps, layers every {meta['every']:,}"])
    except (KeyError, TypeError, ValueError):
        return f"watched run {entry['key']}"
    loss = meta.get("final_loss")
    return stored_label(what, f"final loss {loss:.4g}" if isinstance(loss, float)
                        and math.isfinite(loss) else "", entry, "stored")


def load_stored(key: str, store: RunStore | None = None) -> WatchedRun | None:
    """The watched run stored under `key`; None when no readable one is."""
    store = cache.default_store() if store is None else store
    if not STORE_KEY.fullmatch(key or ""):
        return None
    record = store.get(key)
    try:
        run = WatchedRun.from_dict(record) if record is not None else None
    except (KeyError, TypeError, ValueError):
        return None
    return run if run is not None and run.key == key else None


def load(path: str | Path) -> WatchedRun:
    """A run saved by `WatchedRun.save`; a file that is not one raises ValueError naming why."""
    try:
        data = json.loads(Path(path).read_text())
        return WatchedRun.from_dict(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON file ({exc})") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a watched run (missing or malformed {exc})") from None

