"""`WatchedRun`: a watched training loop's records, in the Lab's tables, so the Lab's charts and
its doctor (`core.lab.doctor.diagnose`) read it as they read a run trained here.

    run = w.result()          # from core.watch.watch
    run.save("run.json")      # strict JSON (non-finite numbers become null)
    run = load("run.json")

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
  init, clip_norm, clip_value, patience   not observable from the loop: "unknown" and None
               (the steps table's `clipped` says whether the loop clipped on recorded steps)
The doctor's fixes are Lab settings (`Fix.changes`); for a watched run they can only be read as
advice, since nothing here retrains the user's model. `replace` exists so those fixes can be
computed (the doctor offers only fixes that change the config).

Tables that do not apply are empty: `epochs` (the loop's epochs and validation are its own),
`histograms`, `boundary`, `points`. `steps.epoch` is 0 throughout.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.lab.result import RunResult

KIND = "watched"   # a saved run's "kind": tells a watched run's file from a Lab run's


@dataclass(frozen=True)
class WatchedConfig:
    run_id: str                  # unique per watch: the run store's key
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
    momentum: float = 0.0        # torch SGD's momentum and nesterov: the sharpness threshold's
    nesterov: bool = False

    def key(self) -> str:
        return f"watch-{self.run_id}"

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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WatchedRun":
        if data.get("kind") != KIND:
            raise ValueError(f"kind: {data.get('kind')!r} is not a watched run ({KIND!r})")
        return super().from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())


def load(path: str | Path) -> WatchedRun:
    """A run saved by `WatchedRun.save`; a file that is not one raises ValueError naming why."""
    try:
        data = json.loads(Path(path).read_text())
        return WatchedRun.from_dict(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON file ({exc})") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a watched run (missing or malformed {exc})") from None

