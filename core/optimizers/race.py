"""Optimizer race: torch.optim's update rules on a 2-D surface, step by step, in one table.

    cfg = RaceConfig(surface="rosenbrock", adam_lr=0.02)
    table = race(cfg)            # optimizer, iteration, x, y, loss, lr, diverged
    standings(table, cfg)        # per optimizer: where it ended, how far from a minimum
    PRESETS["lr_large"]          # a learning-rate lesson: config, text, claims on its run

Each optimizer moves its own 2-element parameter tensor with `torch.optim` (and
`torch.optim.lr_scheduler` for the two scheduled SGD variants); the loss is the surface's value,
whose minimum is 0. An optimizer whose point becomes NaN/inf or leaves a box far outside the
window has diverged: its table stops there, with the last row marked, and the others go on.

`RaceConfig` is a config of `core.settings` like every other: frozen, validated with messages
that name the setting and its range, and round-tripped through flat strings for the URL. Its
defaults hang on the surface (its start point and learning rates), so links stay short, and the
range of the start point is the surface's window.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from core.budget import REQUEST_BASE, STEP_COST, Estimate, refuse
from core.lessons import Claim, Preset
from core.optimizers.surfaces import SURFACES
from core.settings import Settings, Span, setting

if TYPE_CHECKING:
    import torch

LABELS = {"sgd": "SGD", "momentum": "Momentum", "nesterov": "Nesterov", "adagrad": "Adagrad",
          "rmsprop": "RMSprop", "adam": "Adam", "sgd_exp": "SGD + exp. decay",
          "sgd_cyclic": "SGD + cyclic lr"}
RACERS = tuple(LABELS)
MOMENTUM = 0.9           # for momentum and nesterov: the usual value
MAX_ITERATIONS = 2000
BOX = 1000.0             # diverged once |x| or |y| exceeds BOX × the window's larger half-width
LR_LO, LR_HI = 1e-5, 10.0
# The page's learning-rate sliders: six steps a decade (1, 1.5, 2, 3, 5, 7), 1e-5 to 10.
LR_GRID = tuple(sorted({float(f"{m * 10.0 ** e:.6g}") for e in range(-5, 1)
                        for m in (1, 1.5, 2, 3, 5, 7)} | {10.0}))
_BEALE = SURFACES["beale"]


def _on(name: str) -> Any:
    return setting(True, f"Run {LABELS[name]}.", group="optimizers")


def _lr(name: str) -> Any:
    return setting(_BEALE.lrs[name], f"Learning rate of {LABELS[name]}.", lo=LR_LO, hi=LR_HI,
                   log=True, group="optimizers")


@dataclass(frozen=True)
class RaceConfig(Settings):
    SCHEMA_VERSION = 1  # bump when the meaning of a field or the content of a result changes

    surface: str = setting("beale", "The function every optimizer minimises.",
                           choices=tuple(SURFACES), group="surface")
    # The range of x0 and y0 is the surface's window (`span`).
    x0: float = setting(_BEALE.start[0], "Start point, x.", group="surface")
    y0: float = setting(_BEALE.start[1], "Start point, y.", group="surface")
    iterations: int = setting(500, "Optimizer steps.", lo=1, hi=MAX_ITERATIONS, group="surface")
    decay: float = setting(0.99, "γ of SGD + exp. decay: the learning rate is multiplied by γ "
                           "after every step (ExponentialLR).", lo=0.9, hi=1.0,
                           group="schedules")
    cycle: int = setting(50, "Steps from the low to the high learning rate of SGD + cyclic lr "
                         "(CyclicLR, triangular between lr/10 and lr).", lo=2, hi=1000,
                         group="schedules")
    sgd: bool = _on("sgd")
    sgd_lr: float = _lr("sgd")
    momentum: bool = _on("momentum")
    momentum_lr: float = _lr("momentum")
    nesterov: bool = _on("nesterov")
    nesterov_lr: float = _lr("nesterov")
    adagrad: bool = _on("adagrad")
    adagrad_lr: float = _lr("adagrad")
    rmsprop: bool = _on("rmsprop")
    rmsprop_lr: float = _lr("rmsprop")
    adam: bool = _on("adam")
    adam_lr: float = _lr("adam")
    sgd_exp: bool = _on("sgd_exp")
    sgd_exp_lr: float = _lr("sgd_exp")
    sgd_cyclic: bool = _on("sgd_cyclic")
    sgd_cyclic_lr: float = _lr("sgd_cyclic")

    @classmethod
    def defaults_with(cls, values: Mapping[str, Any]) -> RaceConfig:
        """The surface's own start point and learning rates (Beale's for a surface that is
        none)."""
        surface = values.get("surface")
        return defaults_for(surface if isinstance(surface, str) and surface in SURFACES
                            else "beale")

    @classmethod
    def span(cls, name: str, values: Mapping[str, Any]) -> Span | None:
        if name not in WINDOW:
            return None
        lo, hi = window_range(name, values["surface"])
        return lo, hi, f"the {SURFACES[values['surface']].title} window"

    # --- the optimizers -------------------------------------------------------------------
    def enabled(self) -> list[str]:
        return [name for name in RACERS if getattr(self, name)]

    def lr(self, name: str) -> float:
        return getattr(self, f"{name}_lr")


@functools.cache  # one per surface: every link and check of the race asks
def defaults_for(surface: str) -> RaceConfig:
    """The surface's own start point and learning rates, everything else at the defaults."""
    s = SURFACES[surface]
    return RaceConfig(surface=surface, x0=s.start[0], y0=s.start[1],
                      **{f"{name}_lr": lr for name, lr in s.lrs.items()})


WINDOW = ("x0", "y0")


def window_range(name: str, surface: str) -> tuple[float, float]:
    w = SURFACES[surface].window
    return w[:2] if name == "x0" else w[2:]


# --- the race ---------------------------------------------------------------------------------
def racer(name: str, params: list[torch.Tensor], lr: float, cfg: RaceConfig):
    """The torch.optim optimizer (and lr scheduler, or None) for one racer."""
    import torch   # here: Home lists this page's presets, and needs no torch for that
    if name in ("sgd", "sgd_exp", "sgd_cyclic"):
        opt = torch.optim.SGD(params, lr=lr)
    elif name in ("momentum", "nesterov"):
        opt = torch.optim.SGD(params, lr=lr, momentum=MOMENTUM, nesterov=name == "nesterov")
    elif name == "adagrad":
        opt = torch.optim.Adagrad(params, lr=lr)
    elif name == "rmsprop":
        opt = torch.optim.RMSprop(params, lr=lr)
    elif name == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    else:
        raise ValueError(f"unknown optimizer {name!r}")
    sched = None
    if name == "sgd_exp":
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.decay)
    elif name == "sgd_cyclic":
        # cycle_momentum=False: plain SGD has momentum 0, and cycling it would make this a
        # momentum method.
        sched = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=lr / 10, max_lr=lr,
                                                  step_size_up=cfg.cycle, cycle_momentum=False)
    return opt, sched


COLUMNS = ["optimizer", "iteration", "x", "y", "loss", "lr", "diverged"]


def race_estimate(cfg: RaceConfig) -> Estimate:
    """What a race costs, for the budgets (core.budget): a step of a 2-D point is all
    per-step cost (STEP_COST); its memory, the table's rows (~50 bytes a value as Python
    tuples, then the frame). Far inside both at every setting; counted so that every request
    that trains is."""
    racers = len(cfg.enabled())
    return Estimate(
        f"this race ({racers} optimizers × {cfg.iterations:,} iterations)",
        {**cfg.to_dict(), "racers": racers},
        lambda v: v["racers"] * v["iterations"] * STEP_COST, (("iterations", "lower"),),
        RaceConfig.fields(),
        memory=lambda v: REQUEST_BASE + v["racers"] * v["iterations"] * len(COLUMNS) * 50,
        memory_knobs=(("iterations", "lower"),))


def race(cfg: RaceConfig) -> pd.DataFrame:
    """Every enabled optimizer from the same start: one row per optimizer and iteration.

    Row i is the point after i steps and its loss; `lr` is the learning rate of the step that
    leaves it. A diverged optimizer's last row is the first bad point, with `diverged` True.
    A race over a budget (`race_estimate`) is refused with a ConfigError.
    """
    import torch   # here, as in `racer`
    refuse(race_estimate(cfg))
    s = SURFACES[cfg.surface]
    names = cfg.enabled()
    if not names:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            COLUMNS, ["object", "int64", "float64", "float64", "float64", "float64", "bool"])})
    limit = BOX * max(abs(v) for v in s.window)
    params = [torch.tensor([cfg.x0, cfg.y0], dtype=torch.float64, requires_grad=True)
              for _ in names]
    racers = [racer(name, [p], cfg.lr(name), cfg) for name, p in zip(names, params)]
    rows: list[list[tuple]] = [[] for _ in names]     # per racer: (x, y, loss, lr) per iteration
    diverged = [False] * len(names)
    alive = list(range(len(names)))
    for i in range(cfg.iterations + 1):
        # One forward and backward for all racers: the gradient of the sum with respect to a
        # racer's own parameter is that racer's gradient (the terms share nothing, so even a
        # NaN elsewhere does not leak in), and one autograd pass instead of eight keeps the
        # race immediate.
        xy = torch.stack([params[j] for j in alive])
        loss = s.f(xy[:, 0], xy[:, 1])
        values = torch.cat([xy.detach(), loss.detach()[:, None]], 1).tolist()
        for j, (x, y, f) in zip(alive, values):
            rows[j].append((x, y, f, racers[j][0].param_groups[0]["lr"]))
            diverged[j] = not (math.isfinite(f) and abs(x) <= limit and abs(y) <= limit)
        alive = [j for j in alive if not diverged[j]]   # a bad point is a racer's last row
        if i == cfg.iterations or not alive:
            break
        grads = torch.autograd.grad(loss.sum(), [params[j] for j in alive])
        for j, g in zip(alive, grads):
            params[j].grad = g                   # what the optimizer reads: a fresh gradient
            opt, sched = racers[j]
            opt.step()
            if sched is not None:
                sched.step()
    frames = []
    for name, r, bad in zip(names, rows, diverged):
        frame = pd.DataFrame(r, columns=["x", "y", "loss", "lr"])
        frame.insert(0, "iteration", np.arange(len(r)))
        frame.insert(0, "optimizer", name)
        frame["diverged"] = bad & (frame["iteration"] == len(r) - 1)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def standings(table: pd.DataFrame, cfg: RaceConfig) -> pd.DataFrame:
    """Per optimizer: its last point, loss, distance to the nearest minimum, divergence."""
    s = SURFACES[cfg.surface]
    out = []
    for name, d in table.groupby("optimizer", sort=False):
        diverged = bool(d["diverged"].any())
        last = d.iloc[-2] if diverged and len(d) > 1 else d.iloc[-1]
        (mx, my), dist = s.nearest_minimum(float(last.x), float(last.y))
        out.append({"optimizer": name, "label": LABELS[name], "lr": cfg.lr(name),
                    "iterations": int(d["iteration"].max()), "x": float(last.x),
                    "y": float(last.y), "loss": float(last.loss),
                    "minimum": f"({mx:.3g}, {my:.3g})",
                    "distance": dist, "diverged": diverged,
                    "diverged_at": int(d["iteration"].max()) if diverged else None})
    return pd.DataFrame(out)


# --- presets: the three learning-rate regimes, checked against their own runs ---------------------
def _sgd(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["optimizer"] == "sgd"].reset_index(drop=True)


def _distance(table: pd.DataFrame) -> np.ndarray:
    """Distance of each row of the quadratic's SGD path to its minimum, the origin."""
    d = _sgd(table)
    return np.hypot(d["x"].to_numpy(), d["y"].to_numpy())


def _steps(table: pd.DataFrame) -> int:
    return int(_sgd(table)["iteration"].max())


def _reached(table: pd.DataFrame, eps: float = 1e-3) -> int | None:
    """The first iteration within `eps` of the minimum, or None."""
    hits = np.flatnonzero(_distance(table) < eps)
    return int(hits[0]) if len(hits) else None


def _first_rise(table: pd.DataFrame) -> int | None:
    rises = np.flatnonzero(np.diff(_sgd(table)["loss"].to_numpy()) > 0)
    return int(rises[0]) + 1 if len(rises) else None


def _diverged_at(table: pd.DataFrame) -> int | None:
    d = _sgd(table)
    return int(d["iteration"].iloc[-1]) if d["diverged"].any() else None


# SGD alone on the quadratic (x² + 25 y²)/2 from (-2.5, 1.5). Along each axis SGD multiplies the
# coordinate by (1 − lr·curvature) per step: stable only for lr < 2/25 = 0.08 (the steep y
# direction), while the flat x direction shrinks by (1 − lr) per step.
_QUAD = defaults_for("quadratic").replace(iterations=300, **{o: o == "sgd" for o in RACERS})
PRESETS: dict[str, Preset[RaceConfig, pd.DataFrame]] = {p.id: p for p in (
    Preset(
        "lr_small", "Learning rate too small", ":material/slow_motion_video:",
        "lr = 0.002: every step is safe, and SGD creeps down the flat valley.",
        "With lr = 0.002 every step is safe, but along the flat x direction each step removes "
        "only 0.2% of the distance left: SGD creeps down the valley, and the loss falls smoothly "
        "and slowly.",
        _QUAD.replace(sgd_lr=0.002),
        (Claim(lambda t: f"After {_steps(t)} steps SGD is still {_distance(t)[-1]:.2f} from the "
                         f"minimum ({_distance(t)[-1] / _distance(t)[0]:.0%} of where it started).",
               lambda t: _distance(t)[-1] > 0.25 * _distance(t)[0]),
         Claim(lambda t: "The loss falls at every step: "
                         + ("never once rises." if _first_rise(t) is None
                            else f"except at step {_first_rise(t)}."),
               lambda t: _first_rise(t) is None and not _sgd(t)["diverged"].any()))),
    Preset(
        "lr_right", "Learning rate about right", ":material/check_circle:",
        "lr = 0.07, just under the steep direction's limit 2/25: SGD reaches the minimum.",
        "With lr = 0.07, just under the limit 2/25 = 0.08 of the steep y direction, SGD "
        "zig-zags across the valley for a few steps while the zig-zag dies out (each y step is "
        "multiplied by −0.75), and moves quickly along x (by 0.93 per step) to the minimum.",
        _QUAD.replace(sgd_lr=0.07),
        (Claim(lambda t: (f"SGD gets within 0.001 of the minimum after {_reached(t)} steps."
                          if _reached(t) is not None else
                          f"SGD does not get within 0.001 of the minimum in {_steps(t)} steps."),
               lambda t: _reached(t) is not None and _reached(t) < _steps(t)),
         Claim(lambda t: f"It ends with loss {_sgd(t)['loss'].iloc[-1]:.1e}, without diverging.",
               lambda t: not _sgd(t)["diverged"].any() and _sgd(t)["loss"].iloc[-1] < 1e-6))),
    Preset(
        "lr_large", "Learning rate too large", ":material/warning:",
        "lr = 0.1, above the limit 2/25 = 0.08: the zig-zag grows and SGD diverges.",
        "With lr = 0.1, above 2/25 = 0.08, each step overshoots the steep y direction by more "
        "than it corrects (y is multiplied by −1.5 per step): the zig-zag grows, the loss "
        "climbs, and SGD is thrown off the surface.",
        _QUAD.replace(sgd_lr=0.1),
        (Claim(lambda t: (f"The loss rises at step {_first_rise(t)}." if _first_rise(t)
                          else "The loss never rises."),
               lambda t: _first_rise(t) is not None),
         Claim(lambda t: (f"SGD diverges: after {_diverged_at(t)} steps it is "
                          f"{_distance(t)[-1]:.0f} from the minimum, its loss "
                          f"{_sgd(t)['loss'].iloc[-1] / _sgd(t)['loss'].iloc[0]:.0e} times "
                          f"where it started." if _diverged_at(t) is not None
                          else "SGD does not diverge."),
               lambda t: _diverged_at(t) is not None))),
)}
