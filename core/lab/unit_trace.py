"""Percentile traces of hidden layers, the form of two classic figures:

- Ioffe & Szegedy 2015, Fig. 1(b, c): the 15th, 50th and 85th percentiles over the batch of one
  unit's input to its nonlinearity, over training. Here UNITS_PER_LAYER fixed units of every
  hidden layer (a conv layer's unit is a channel, its percentiles over batch and positions),
  drawn by `traced_units` from the run's seed.
- Glorot & Bengio 2010, Fig. 2: the 98th percentile of each hidden layer's activations (over
  the batch and every unit) beside their mean.

    with UnitTrace(model, record_every=every, seed=cfg.seed, total_steps=n) as trace:
        ...train...                  # recorded in the forward pass of every `every`-th step
    trace.tables()                   # {"unit_preacts": ..., "act_percentiles": ...}

Its hooks count training forward passes (one a step) themselves and stay quiet in evaluation
mode (validation, the dead-unit probe). Percentiles are computed on the device into one buffer;
the host copies it when the tables are asked for (once an epoch). Percentiles interpolate
linearly between order statistics, as numpy.percentile's default does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from core.lab.models import Network
from core.lab.result import TRACE_COLUMNS

UNITS_PER_LAYER = 3
UNIT_PERCENTILES = (15.0, 50.0, 85.0)
ACT_PERCENTILE = 98.0


def traced_units(widths: list[int], seed: int) -> list[list[int]]:
    """Each hidden layer's traced units (layers of `widths` units, in order): the first
    UNITS_PER_LAYER of a permutation of its units, sorted, the permutations drawn one after
    another from a CPU generator seeded with the run's seed (the model's own draws untouched)."""
    g = torch.Generator().manual_seed(seed)
    return [sorted(torch.randperm(w, generator=g)[:min(UNITS_PER_LAYER, w)].tolist())
            for w in widths]


SORT_BELOW = 1024   # rows this short are sorted whole; longer ones take only the tail needed


def percentiles(x: torch.Tensor, ps: tuple[float, ...]) -> torch.Tensor:
    """[len(ps), rows]: percentiles of each row of x [rows, n], linear between the order
    statistics around p/100·(n − 1), as numpy.percentile's default. A long row's 98th needs only
    its top 2%: torch.topk of that tail is ~8× faster than a sort (and torch.quantile refuses
    inputs over 16M elements)."""
    n = x.shape[1]
    whole = x.sort(dim=1).values if n <= SORT_BELOW else None
    out = []
    for p in ps:
        pos = p / 100 * (n - 1)
        lo = int(pos)
        hi, frac = min(lo + 1, n - 1), pos - lo
        if whole is not None:
            a, b = whole[:, lo], whole[:, hi]
        elif lo >= n // 2:   # the top n − lo values, largest first: s[lo] is the last
            top = x.topk(n - lo, dim=1).values
            a, b = top[:, -1], top[:, max(n - 1 - hi, 0)]
        else:                # the bottom hi + 1 values, smallest first
            bottom = x.topk(hi + 1, dim=1, largest=False).values
            a, b = bottom[:, lo], bottom[:, hi]
        out.append(a * (1 - frac) + b * frac)
    return torch.stack(out)


class UnitTrace:
    def __init__(self, model: Network, *, record_every: int, seed: int, total_steps: int):
        self.model = model
        self.every = record_every
        self.hidden = [(name, layer) for name, layer in model.layers.items()
                       if layer.act is not None]
        # A dense layer's units are its out_features, a conv layer's its out_channels.
        widths = [layer.linear.weight.shape[0] for _, layer in self.hidden]
        self.units = traced_units(widths, seed)
        device = next(model.parameters()).device
        k = len(UNIT_PERCENTILES)
        rows = total_steps // record_every + 1
        # [records, hidden layers, units × percentiles + 1 (the activation's 98th)]
        self._buffer = torch.full((rows, len(self.hidden), UNITS_PER_LAYER * k + 1),
                                  float("nan"), device=device)
        self._steps: list[int] = []
        self._step = 0
        self._row: int | None = None
        # The recorded step's tensors, reduced together at the next step's start (or when the
        # tables are asked for): one sort for all layers of a shape, not one per layer.
        self._pending: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._handles: list = []

    def __enter__(self) -> "UnitTrace":
        self._handles.append(self.model.register_forward_pre_hook(self._count))
        for i, (_, layer) in enumerate(self.hidden):
            self._handles.append(layer.act.register_forward_hook(self._hook(i)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _count(self, module, inputs) -> None:
        if not module.training:
            return
        self._flush()
        due = self._step % self.every == 0 and len(self._steps) < len(self._buffer)
        self._row = len(self._steps) if due else None
        if due:
            self._steps.append(self._step)
        self._step += 1

    def _hook(self, i: int):
        units = self.units[i]

        def hook(module, inputs, a):
            if module.training and self._row is not None:
                # [units, examples (× positions)]: a conv unit is a channel.
                z = inputs[0].detach()[:, units].transpose(0, 1).flatten(1)
                self._pending[i] = (z, a.detach().reshape(-1))
        return hook

    @torch.no_grad()
    def _flush(self) -> None:
        if not self._pending:
            return
        row = self._buffer[len(self._steps) - 1]
        groups: dict[tuple, list[int]] = {}
        for i, (z, a) in self._pending.items():
            groups.setdefault((z.shape, a.shape), []).append(i)
        for idx in groups.values():
            z = torch.cat([self._pending[i][0] for i in idx]).float()     # [layers × units, n]
            a = torch.stack([self._pending[i][1] for i in idx]).float()   # [layers, n]
            unit_ps = percentiles(z, UNIT_PERCENTILES).T.reshape(len(idx), -1)
            where = torch.tensor(idx, device=row.device)
            row[where, :unit_ps.shape[1]] = unit_ps
            row[where, -1] = percentiles(a, (ACT_PERCENTILE,))[0]
        self._pending = {}

    def tables(self, last_step: int | None = None) -> dict[str, pd.DataFrame]:
        """The records so far (those after `last_step` left out: a diverged run keeps what it
        recorded up to its first bad step)."""
        self._flush()
        n = len(self._steps) if last_step is None else sum(s <= last_step for s in self._steps)
        if n == 0 or not self.hidden:
            return {name: pd.DataFrame(columns=TRACE_COLUMNS[name])
                    for name in ("unit_preacts", "act_percentiles")}
        values = self._buffer[:n].cpu().numpy().astype(np.float64)
        steps = np.array(self._steps[:n])
        names = np.array([name for name, _ in self.hidden], dtype=object)
        k, L = len(UNIT_PERCENTILES), len(self.hidden)
        units = np.array(self.units)                                   # [layers, units]
        u = units.shape[1]
        per_unit = values[:, :, :u * k].reshape(n, L, u, k)
        unit_rows = pd.DataFrame({
            "step": np.repeat(steps, L * u * k),
            "layer": np.tile(np.repeat(names, u * k), n),
            "unit": np.tile(np.repeat(units.reshape(-1), k), n),
            "percentile": np.tile(UNIT_PERCENTILES, n * L * u),
            "value": per_unit.reshape(-1)})
        act_rows = pd.DataFrame({
            "step": np.repeat(steps, L), "layer": np.tile(names, n),
            "percentile": ACT_PERCENTILE, "value": values[:, :, -1].reshape(-1)})
        return {"unit_preacts": unit_rows, "act_percentiles": act_rows}
