"""`LayerRecorder`: per-layer diagnostics recorded while a network trains.

    with LayerRecorder(model, record_every=1) as rec:
        for epoch ...:
            rec.start_epoch(epoch, n_steps)
            for step ...:
                ... loss.backward()
                rec.after_backward(loss)          # per-layer grad norms, before clipping
                norm, clipped = clip(...)
                rec.after_clip(norm, clipped)
                optimizer.step()
                rec.after_step(lr)
            rec.end_epoch()                       # the one host copy of the epoch
    rec.steps, rec.layers, rec.histograms, rec.divergence

Hooks are registered on enter and removed on exit. Nothing here calls `.item()` or otherwise
waits for the device during an epoch: values are written into preallocated device tensors and
copied to the host once, in `end_epoch()`. That keeps recording cheap on a GPU, where a host sync
per step would stall the queue.

What is recorded, per layer (dense or conv) at step 0 and every `record_every` steps:
  weight_grad_norm   ‖∇W‖ of the layer's weight, before clipping
  weight_grad_mean_abs, weight_grad_max_abs   mean and max |∇W| (the gradient-flow bars)
  out_grad_norm      ‖∂L/∂z‖, the gradient back-propagated to the layer's output z = Wx + b
  preact_mean/std    of the input to the activation (after batch norm when that is on)
  act_mean/std       of the activation's output
  saturation         share of (example, unit) pairs with |f'(z)| < 6% of max |f'|
  dead               share of units saturated for every example (and position) in the batch
  grad_data_ratio    std(∇W) / std(W)
  update_data_ratio  std(ΔW) / std(W) for the optimizer step just taken
  drift              ‖W − W₀‖ / ‖W₀‖
Every step: loss, total gradient norm before clipping, whether clipping changed the gradient, lr.
At the first step of each epoch and at the last step: 40-bin histograms of the pre-norm values
(batch norm only), pre-activations, activations, weights and weight gradients, with bin edges
fixed at the first snapshot so the epochs can be compared.
Every step, cheaply: whether any layer's output or weight gradient is non-finite, so a divergence
is reported at its first step and layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from core import activations
from core.models import Layer, Network

LAYER_METRICS = ("weight_grad_norm", "weight_grad_mean_abs", "weight_grad_max_abs", "out_grad_norm", "preact_mean", "preact_std", "act_mean",
                 "act_std", "saturation", "dead", "grad_data_ratio", "update_data_ratio", "drift")
STEP_METRICS = ("loss", "grad_norm", "clipped", "lr")
HIST_KINDS = ("pre_norm", "pre_activation", "activation", "weight", "weight_grad")
HIST_BINS = 40
_M = {name: i for i, name in enumerate(LAYER_METRICS)}
_K = {name: i for i, name in enumerate(HIST_KINDS)}


@dataclass
class _Epoch:
    """Device buffers for one epoch; NaN marks 'not recorded'."""

    epoch: int
    first_step: int
    layer_values: torch.Tensor          # [steps, layers, metrics]
    step_values: torch.Tensor           # [steps, 3]: loss, grad_norm, clipped
    bad: torch.Tensor                   # [steps, 2 * layers + 1]: output, gradient, loss
    hist: torch.Tensor                  # [2 snapshots, layers, kinds, bins]
    recorded: list[int] = field(default_factory=list)   # row indices of recorded steps
    snapshots: list[tuple[int, int]] = field(default_factory=list)  # (slot, histogram epoch)
    lrs: list[float] = field(default_factory=list)


class LayerRecorder:
    def __init__(self, model: Network, *, record_every: int = 1):
        self.model = model
        self.every = record_every
        self.names = list(model.layers.keys())
        self.layers: list[Layer] = list(model.layers.values())
        self.device = next(model.parameters()).device
        self.weights = [layer.linear.weight for layer in self.layers]
        self._w0 = [w.detach().clone() for w in self.weights]
        self._w0_norm = [w.norm() for w in self._w0]
        self._nan = torch.tensor(float("nan"), device=self.device)
        self._edges: dict[tuple[int, int], tuple[float, float]] = {}
        self._handles: list = []
        self._rows: dict[str, list] = {"steps": [], "layers": [], "hist": []}
        self.divergence: dict | None = None
        self.step = 0           # global step counter; step s sees the weights after s updates
        self._training = False  # hooks stay quiet during evaluation
        self._active = False
        self._epoch: _Epoch | None = None

    # --- hooks ------------------------------------------------------------------------------
    def __enter__(self) -> "LayerRecorder":
        for i, layer in enumerate(self.layers):
            self._handles.append(layer.linear.register_forward_hook(self._linear_hook(i)))
            if layer.act is not None:
                self._handles.append(layer.act.register_forward_hook(self._act_hook(i)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _linear_hook(self, i: int):
        layer = self.layers[i]

        def hook(module, inputs, z):
            if not self._training:
                return
            # Cheap every-step check: amax is NaN/inf iff some value is (or overflowed).
            self._out_max[i] = z.detach().abs().amax()
            if not self._active:
                return
            z.register_hook(lambda g: self._put(i, "out_grad_norm", g.norm()))
            zd = z.detach()
            if layer.act is None:  # output layer: z is the logits, the end of the line
                self._put(i, "preact_mean", zd.mean())
                self._put(i, "preact_std", zd.std())
                self._hist(i, "pre_activation", zd)
            elif layer.norm is not None:
                self._hist(i, "pre_norm", zd)
        return hook

    def _act_hook(self, i: int):
        name = self.layers[i].activation

        def hook(module, inputs, a):
            if not (self._training and self._active):
                return
            z, a = inputs[0].detach(), a.detach()
            sat = activations.saturated(name, z)
            # A unit is a feature (dense) or a channel (conv): reduce over all other dims.
            per_unit = sat.transpose(0, 1).reshape(sat.shape[1], -1)
            self._put(i, "preact_mean", z.mean())
            self._put(i, "preact_std", z.std())
            self._put(i, "act_mean", a.mean())
            self._put(i, "act_std", a.std())
            self._put(i, "saturation", sat.float().mean())
            self._put(i, "dead", per_unit.all(dim=1).float().mean())
            self._hist(i, "pre_activation", z)
            self._hist(i, "activation", a)
        return hook

    # --- the training loop's calls ----------------------------------------------------------
    def start_epoch(self, epoch: int, n_steps: int, *, final: bool = False) -> None:
        L, dev = len(self.layers), self.device
        self._epoch = _Epoch(
            epoch=epoch,
            first_step=self.step,
            layer_values=torch.full((n_steps, L, len(LAYER_METRICS)), float("nan"), device=dev),
            step_values=torch.full((n_steps, 3), float("nan"), device=dev),
            bad=torch.zeros((n_steps, 2 * L + 1), dtype=torch.bool, device=dev),
            hist=torch.zeros((2, L, len(HIST_KINDS), HIST_BINS), device=dev),
        )
        self._n_steps = n_steps
        self._final = final
        self._begin_step()

    def _begin_step(self) -> None:
        ep = self._epoch
        self._row = self.step - ep.first_step
        last_of_epoch = self._row == self._n_steps - 1
        # Histograms at each epoch's first step (the state after `epoch - 1` epochs) and at the
        # final epoch's last step (the state the run ends with).
        self._snapshots = ([0] if self._row == 0 else []) + ([1] if last_of_epoch and self._final
                                                             else [])
        self._active = self.step % self.every == 0 or bool(self._snapshots)
        self._training = True
        self._values: list[list[torch.Tensor | None]] = [[None] * len(LAYER_METRICS)
                                                         for _ in self.layers]
        self._out_max: list[torch.Tensor | None] = [None] * len(self.layers)

    def after_backward(self, loss: torch.Tensor) -> None:
        """Per-layer weight-gradient norms, taken before any clipping."""
        grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in self.weights]
        gnorms = torch.stack([g.norm() for g in grads])
        ep = self._epoch
        outs = torch.stack([m if m is not None else self._nan.new_zeros(()) for m in self._out_max])
        ep.bad[self._row] = torch.cat([~torch.isfinite(outs), ~torch.isfinite(gnorms),
                                       ~torch.isfinite(loss.detach()).reshape(1)])
        ep.step_values[self._row, 0] = loss.detach()
        if not self._active:
            return
        self._w_std = [w.detach().std() for w in self.weights]  # reused by the update ratio
        for i, (w, g) in enumerate(zip(self.weights, grads)):
            g_abs = g.abs()
            self._put(i, "weight_grad_norm", gnorms[i])
            self._put(i, "weight_grad_mean_abs", g_abs.mean())
            self._put(i, "weight_grad_max_abs", g_abs.amax())
            self._put(i, "grad_data_ratio", g.std() / self._w_std[i])
            self._hist(i, "weight", w.detach())
            self._hist(i, "weight_grad", g)
        self._w_before = [w.detach().clone() for w in self.weights]

    def after_clip(self, total_norm: torch.Tensor, clipped: torch.Tensor) -> None:
        self._epoch.step_values[self._row, 1] = total_norm.detach()
        self._epoch.step_values[self._row, 2] = clipped.to(torch.float32)

    def after_step(self, lr: float) -> None:
        ep = self._epoch
        ep.lrs.append(lr)
        if self._active:
            for i, (w, w_prev, w0, n0) in enumerate(zip(self.weights, self._w_before, self._w0,
                                                         self._w0_norm)):
                w = w.detach()
                self._put(i, "update_data_ratio", (w - w_prev).std() / self._w_std[i])
                self._put(i, "drift", (w - w0).norm() / n0)
            flat = [v if v is not None else self._nan for row in self._values for v in row]
            ep.layer_values[self._row] = torch.stack(flat).view(len(self.layers), -1)
            ep.recorded.append(self._row)
            ep.snapshots.extend((slot, ep.epoch - 1 + slot) for slot in self._snapshots)
            self._w_before = []
        self.step += 1
        if self._row + 1 < self._n_steps:
            self._begin_step()
        else:
            self._training = False

    def _put(self, i: int, metric: str, value: torch.Tensor) -> None:
        self._values[i][_M[metric]] = value.detach().float()

    def _hist(self, i: int, kind: str, x: torch.Tensor) -> None:
        if not self._snapshots:
            return
        x = x.detach().float().flatten()
        key = (i, _K[kind])
        if key not in self._edges:
            # Fix the edges once, from the first snapshot: a single host sync per run and layer.
            finite = x[torch.isfinite(x)]
            lo, hi = ((finite.min().item(), finite.max().item()) if finite.numel() else (-1.0, 1.0))
            pad = 0.05 * (hi - lo) if hi > lo else 0.1 * abs(hi) + 1e-8
            self._edges[key] = (lo - pad, hi + pad)
        lo, hi = self._edges[key]
        # Out-of-range values land in the edge bins; NaN is pushed outside the range and ignored.
        x = torch.where(torch.isfinite(x) | x.isinf(), x.clamp(lo, hi), torch.full_like(x, lo - 1))
        counts = torch.histc(x, HIST_BINS, min=lo, max=hi)
        for slot in self._snapshots:
            self._epoch.hist[slot, i, _K[kind]] = counts

    # --- once per epoch ---------------------------------------------------------------------
    def end_epoch(self) -> bool:
        """Copy the epoch's records to the host; return True when the run has diverged."""
        ep = self._epoch
        layer_values = ep.layer_values.cpu().numpy()
        step_values = ep.step_values.cpu().numpy()
        bad = ep.bad.cpu().numpy()
        hist = ep.hist.cpu().numpy()
        n_rows = len(ep.lrs)
        last_row = n_rows - 1
        bad_rows = np.flatnonzero(bad[:n_rows].any(axis=1))
        if bad_rows.size:
            last_row = int(bad_rows[0])
            self.divergence = self._describe_divergence(ep.first_step + last_row, ep.epoch,
                                                        bad[last_row])
        L = len(self.layers)
        for r in range(last_row + 1):
            s = ep.first_step + r
            self._rows["steps"].append((s, ep.epoch, step_values[r, 0], step_values[r, 1],
                                        step_values[r, 2], ep.lrs[r]))
        for r in ep.recorded:
            if r > last_row:
                break
            s = ep.first_step + r
            for i in range(L):
                for m, metric in enumerate(LAYER_METRICS):
                    if self.layers[i].act is None and metric in _NOT_APPLICABLE_TO_OUTPUT:
                        continue
                    self._rows["layers"].append((s, ep.epoch, self.names[i], metric,
                                                 layer_values[r, i, m]))
        for slot, hist_epoch in ep.snapshots:
            if slot == 1 and self.divergence:
                continue  # taken after the divergence: nothing finite to show
            for (i, k), (lo, hi) in self._edges.items():
                counts = hist[slot, i, k]
                if counts.sum() == 0:
                    continue  # kind not recorded for this layer (e.g. pre_norm without BN)
                edges = np.linspace(lo, hi, HIST_BINS + 1)
                for b in range(HIST_BINS):
                    self._rows["hist"].append((hist_epoch, self.names[i], HIST_KINDS[k], b,
                                               edges[b], edges[b + 1], counts[b]))
        return self.divergence is not None

    def _describe_divergence(self, step: int, epoch: int, flags: np.ndarray) -> dict:
        L = len(self.layers)
        out_bad, grad_bad, loss_bad = flags[:L], flags[L:2 * L], flags[2 * L]
        if out_bad.any():
            where, layer = "output", self.names[int(np.argmax(out_bad))]
        elif loss_bad:
            where, layer = "loss", None
        else:
            # Back-propagation runs from the last layer: the last bad one is where it started.
            where, layer = "gradient", self.names[int(np.flatnonzero(grad_bad)[-1])]
        text = (f"non-finite values first appeared at step {step} (epoch {epoch})"
                + (f" in the {where} of layer {layer}" if layer else " in the loss"))
        return {"step": step, "epoch": epoch, "layer": layer, "where": where, "message": text}

    # --- tidy tables ------------------------------------------------------------------------
    def tables(self) -> dict[str, pd.DataFrame]:
        steps = pd.DataFrame(self._rows["steps"],
                             columns=["step", "epoch", "loss", "grad_norm", "clipped", "lr"])
        layers = pd.DataFrame(self._rows["layers"],
                              columns=["step", "epoch", "layer", "metric", "value"])
        hist = pd.DataFrame(self._rows["hist"],
                            columns=["epoch", "layer", "kind", "bin", "lo", "hi", "count"])
        return {"steps": steps, "layers": layers, "histograms": hist}


# The output layer has no activation: these would always be NaN there, so they are not rows.
_NOT_APPLICABLE_TO_OUTPUT = {"act_mean", "act_std", "saturation", "dead"}
