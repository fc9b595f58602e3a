"""A watch's host records as the Lab's tidy tables: pure functions of what `core.watch.watcher`
copied to the host, so the recording (hooks, device tensors, one copy per interval) and the
reading back stay apart."""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from core import activations

ROOT_NAME = "(model)"   # the root module's layer name, when it owns parameters
STATS = 5               # per activation call: Σz, Σz², Σf(z), Σf(z)², flat count


def forward_order(names: list[str], first_order: list[int], seen: set[int]) -> list[int]:
    """Layers in the order their forward first ran; one that never ran follows its parent
    and the parent's other submodules placed so far (named_modules lists a parent first)."""
    order = list(first_order)
    for i in range(len(names)):
        if i in seen:
            continue
        parent = max((j for j in order if j < i and inside(names[i], names[j])), default=None)
        at = len(order)
        if parent is not None:
            at = order.index(parent) + 1
            while at < len(order) and inside(names[order[at]], names[parent]):
                at += 1
        order.insert(at, i)
    return order


def steps_table(host_steps: list[tuple[int, float, float]], recorded: Iterable[tuple[Any, dict]],
                lrs: list[float], last: float) -> pd.DataFrame:
    """step, epoch (0: a watched loop has none), loss, grad_norm, clipped (known on recorded
    steps: whether the loop's clipping shrank the gradient the optimizer used), lr."""
    rows = [r for r in host_steps if r[0] <= last]
    clipped = {}
    for rec, host in recorded:
        if "update" in host:
            used, before = host["update"][-2:]
            clipped[rec.step] = float(used < before * (1 - 1e-5))
    steps = [r[0] for r in rows]
    return pd.DataFrame({
        "step": steps, "epoch": 0, "loss": [r[1] for r in rows],
        "grad_norm": [r[2] for r in rows],
        "clipped": [clipped.get(s, math.nan) for s in steps],
        "lr": [lrs[s] for s in steps]})


def layers_table(names: list[str], param_layers: list[int], owner: np.ndarray,
                 w0_norms: np.ndarray, recorded: Iterable[tuple[Any, dict]],
                 weight_grads: dict[int, np.ndarray], dead_rows: list[tuple],
                 last: float) -> pd.DataFrame:
    """step, epoch, layer, metric, value: per recorded step up to `last`, each layer's norms
    over its weight tensors (from theirs), ratios, activations, output gradients, dead units."""
    W, L = len(owner), len(names)
    out: list[tuple[int, str, str, float]] = []

    def per_layer(per_weight: np.ndarray) -> dict[int, float]:
        """Each layer's norm over its weight tensors, from theirs."""
        sq = np.zeros(L)
        np.add.at(sq, owner, per_weight ** 2)
        return {i: math.sqrt(sq[i]) for i in param_layers}
    d0 = per_layer(w0_norms)

    for rec, host in recorded:
        if rec.step > last:
            continue
        s = rec.step
        w_norm = per_layer(host["stats"])
        g = per_layer(weight_grads[s])
        for i in param_layers:
            out += [(s, names[i], "weight_grad_norm", g[i]),
                    (s, names[i], "grad_data_ratio", ratio(g[i], w_norm[i]))]
        if "acts" in host:
            out += activation_rows(s, names, rec.act_keys, rec.act_numel,
                                   host["acts"].reshape(-1, STATS))
        if "out_grads" in host:
            sq: dict[int, float] = {}
            for i, x in zip(rec.grad_layers, host["out_grads"]):
                sq[i] = sq.get(i, 0.0) + x * x
            out += [(s, names[i], "out_grad_norm", math.sqrt(x)) for i, x in sq.items()]
        if "update" in host:
            moved, drift = per_layer(host["update"][:W]), per_layer(host["update"][W:2 * W])
            for i in param_layers:
                out += [(s, names[i], "update_data_ratio", ratio(moved[i], w_norm[i])),
                        (s, names[i], "drift", ratio(drift[i], d0[i]))]
    out += [r for r in dead_rows if r[0] <= last]
    return pd.DataFrame({"step": [r[0] for r in out], "epoch": 0,
                         "layer": [r[1] for r in out], "metric": [r[2] for r in out],
                         "value": np.array([r[3] for r in out], dtype=np.float64)})


def activation_rows(step: int, names: list[str], act_keys: list[tuple[int, str]],
                    act_numel: list[int], acts: np.ndarray) -> list[tuple[int, str, str, float]]:
    """Per layer: the mean and std of the activations' inputs and outputs over all its calls,
    and each flat region's share (saturation for sigmoid/tanh, inactive for the ReLU family)."""
    pooled: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    flat: dict[tuple[int, str], list[float]] = {}
    for (i, name), n, row in zip(act_keys, act_numel, acts):
        pooled[i] = pooled.get(i, 0) + row[:4]
        counts[i] = counts.get(i, 0) + n
        region = activations.flat_region(name)
        if region is not None:
            acc = flat.setdefault((i, region), [0.0, 0])
            acc[0] += row[4]
            acc[1] += n
    rows = []
    for i, (sz, szz, sa, saa) in pooled.items():
        n = counts[i]
        for metric, mean, sq in (("preact", sz / n, szz / n), ("act", sa / n, saa / n)):
            rows += [(step, names[i], f"{metric}_mean", mean),
                     (step, names[i], f"{metric}_std", math.sqrt(max(sq - mean * mean, 0.0))
                      if math.isfinite(sq) else math.nan)]
    rows += [(step, names[i], region, k / n) for (i, region), (k, n) in flat.items()]
    return rows


def inside(name: str, parent: str) -> bool:
    return parent == ROOT_NAME or name.startswith(parent + ".")


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan
