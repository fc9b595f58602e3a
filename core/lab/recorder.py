"""`LayerRecorder`: per-layer diagnostics recorded while a network trains.

    with LayerRecorder(model, record_every=1) as rec:
        for epoch ...:
            rec.start_epoch(epoch, n_steps)
            for step ...:
                ... loss.backward()
                norms = torch._foreach_norm(grads)   # every parameter's, before clipping
                rec.after_backward(loss, norms)
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

What is recorded, per layer (dense or conv) at step 0 and every `record_every` steps (the names
and their meaning are core.lab.metrics.CATALOGUE's):
  weight_grad_norm   ‖∇W‖ of the layer's weight, before clipping
  weight_grad_mean_abs, weight_grad_max_abs   mean and max |∇W| (the gradient-flow bars)
  out_grad_norm      ‖∂L/∂z‖, the gradient back-propagated to the layer's output z = Wx + b
  preact_mean/std    of the input to the activation (after batch norm when that is on)
  act_mean/std       of the activation's output
  saturation         sigmoid/tanh layers: share of (example, unit) pairs saturated
  inactive           ReLU-family layers: share of (example, unit) pairs inactive (both from
                     core.activations.flat; a layer records the one its activation has)
  grad_data_ratio    ‖∇W‖ / ‖W‖ (= RMS(∇W) / RMS(W); Karpathy's std ratio for zero-mean W)
  update_data_ratio  ‖ΔW‖ / ‖W‖ for the optimizer step just taken (the 1e-3 rule of thumb)
  drift              ‖W − W₀‖ / ‖W₀‖
Every step: loss, total gradient norm before clipping, whether clipping changed the gradient, lr.
At the first step of each epoch and at the last step: 40-bin histograms of the pre-norm values
(batch norm only), pre-activations, activations, weights and weight gradients. Each snapshot has
its own bins, 40 equal ones from its smallest to its largest finite value, computed on the device:
edges fixed at the first snapshot clamped every later value outside them into the edge bins
(a weight gradient that shrank 100× drew one needle).
Every step, cheaply: whether any layer's output or weight gradient is non-finite, so a divergence
is reported at its first step and layer.
At initialisation and after each epoch (`probe_dead`): each hidden layer's share of *dead* units,
flat for every example of a fixed probe set (PROBE_EXAMPLES training examples). A batch of 64
is too few to call a unit dead: at initialisation the per-batch rule calls 17% of a 10-layer
ReLU net's units dead on digits, the whole training set 11% (4 layers: 8% against 2%).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from core import activations
from core.lab.metrics import LAYER_METRICS, STEP_METRICS
from core.lab.models import Layer, Network

HIST_KINDS = ("pre_norm", "pre_activation", "activation", "weight", "weight_grad")
HIST_BINS = 40
_M = {name: i for i, name in enumerate(LAYER_METRICS)}
_K = {name: i for i, name in enumerate(HIST_KINDS)}


@dataclass
class _Epoch:
    """Device buffers for one epoch; NaN marks 'not recorded'."""

    epoch: int
    first_step: int
    raw: torch.Tensor                   # [steps, slots]: every number of a step, see _Layout
    hist: torch.Tensor                  # [2 snapshots, layers, kinds, bins]
    edges: torch.Tensor                 # [2 snapshots, layers, kinds, 2]: each histogram's lo, hi
    recorded: list[int] = field(default_factory=list)   # row indices of recorded steps
    snapshots: list[tuple[int, int]] = field(default_factory=list)  # (slot, histogram epoch)
    lrs: list[float] = field(default_factory=list)


class _Layout:
    """Where each number of a step lives in the step's row of the epoch buffer.

    A step's numbers are written as a few contiguous blocks (one `torch.stack`/`torch.cat`
    with `out=` each) rather than one indexed write per metric: on the CPU every tensor op costs
    tens of microseconds, and a recorded step should cost a few dozen ops, whatever the depth.
    Ratios and standard deviations are finished in numpy once per epoch.
    """

    def __init__(self, n_layers: int):
        L, at = n_layers, 0

        def block(size: int) -> slice:
            nonlocal at
            at += size
            return slice(at - size, at)
        self.checks = block(2 * L + 1)   # Σ activation input, ‖∇W‖ (every step), loss
        self.clip = block(2)             # total gradient norm before clipping, clipped?
        self.weights = block(4 * L)      # ‖∇W‖₁, min ∇W, max ∇W, ‖W‖ (‖∇W‖ is in checks)
        self.moved = block(2 * L)        # ‖ΔW‖ of the step, ‖W − W₀‖
        self.out_grad = block(L)         # ‖∂L/∂z‖
        self.logits = block(2)           # mean and std of the output layer's z
        self.fixed = at
        self.groups: list[tuple[list[int], slice]] = []  # activation blocks, made on first use
        self.size = at

    def add_group(self, layers: list[int]) -> slice:
        # per layer of the group: mean z, mean a, std z, std a, flat share
        where = slice(self.size, self.size + 5 * len(layers))
        self.size = where.stop
        self.groups.append((layers, where))
        return where


class LayerRecorder:
    def __init__(self, model: Network, *, record_every: int = 1):
        self.model = model
        self.every = record_every
        self.names = list(model.layers.keys())
        self.layers: list[Layer] = list(model.layers.values())
        self.device = next(model.parameters()).device
        self.weights = [layer.linear.weight for layer in self.layers]
        # Where each weight sits in model.parameters(): the trainer hands over the gradient norms
        # of all parameters (it needs them for the total norm and clipping) in that order.
        params = list(model.parameters())
        self._weight_pos = [next(j for j, p in enumerate(params) if p is w) for w in self.weights]
        self._numel = np.array([w.numel() for w in self.weights], dtype=np.float64)
        self._w0 = [w.detach().clone() for w in self.weights]
        self._w0_norm = torch.stack(torch._foreach_norm(self._w0)).cpu().numpy()
        self._w_before = [w.detach().clone() for w in self.weights]  # W before the step
        self._layout = _Layout(len(self.layers))
        self._group_of: dict[tuple, slice] = {}   # (per-example shape, activation, layers)
        self._histogrammed: set[tuple[int, int]] = set()   # (layer, kind) ever recorded
        self._handles: list = []
        self._rows: dict[str, list] = {"steps": [], "layers": [], "hist": []}
        self.divergence: dict | None = None
        self.step = 0           # global step counter; step s sees the weights after s updates
        self._training = False  # hooks stay quiet during evaluation
        self._active = False
        self._epoch: _Epoch | None = None
        self._final_hist: pd.DataFrame | None = None
        self._alive: dict[int, torch.Tensor] | None = None   # set while probe_dead runs

    # --- hooks ------------------------------------------------------------------------------
    # The hooks only keep references to tensors autograd holds anyway; the statistics are
    # computed in after_backward(), batched over layers.
    def __enter__(self) -> "LayerRecorder":
        for i, layer in enumerate(self.layers):
            if layer.act is None or layer.norm is not None:
                # z = Wx + b is the activation's input unless batch norm sits between them.
                self._handles.append(layer.linear.register_forward_hook(self._linear_hook(i)))
            if layer.act is not None:
                self._handles.append(layer.act.register_forward_hook(self._act_hook(i)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._forget_step()  # a run stopped mid-step (an error) lets its tensors go too

    def _linear_hook(self, i: int):
        def hook(module, inputs, z):
            if not self._training:
                return
            self._z[i] = z
            if self._active:
                z.register_hook(_grad_keeper(self._out_grads, i))
        return hook

    def _act_hook(self, i: int):
        with_norm = self.layers[i].norm is not None

        def hook(module, inputs, a):
            if self._alive is not None:
                self._mark_alive(i, inputs[0])
                return
            if not self._training:
                return
            z = inputs[0]
            self._checked[i] = z     # the divergence check looks at every step's activations
            if self._active:
                self._acts[i] = (z.detach(), a.detach())
                if not with_norm:
                    self._z[i] = z
                    z.register_hook(_grad_keeper(self._out_grads, i))
        return hook

    def _mark_alive(self, i: int, z: torch.Tensor) -> None:
        """Per unit (a feature, or a conv channel): whether any example or position of this probe
        batch is outside the activation's flat region."""
        live = ~activations.flat(self.layers[i].activation, z)
        live = live.any(dim=(0, *range(2, live.dim())))
        self._alive[i] = live if i not in self._alive else self._alive[i] | live

    @contextmanager
    def quiet(self):
        """The hooks ignore the forward passes inside: the validation trace's between steps
        (RunConfig.eval_every) and the sharpness estimate's extra one."""
        training, self._training = self._training, False
        try:
            yield
        finally:
            self._training = training

    # --- the training loop's calls ----------------------------------------------------------
    def start_epoch(self, epoch: int, n_steps: int, *, final: bool = False) -> None:
        L, dev = len(self.layers), self.device
        self._epoch = _Epoch(
            epoch=epoch,
            first_step=self.step,
            # Sized for every activation group once the first step has shown the groups.
            raw=torch.full((n_steps, max(self._layout.size, self._layout.fixed + 5 * L)),
                           float("nan"), device=dev),
            hist=torch.zeros((2, L, len(HIST_KINDS), HIST_BINS), device=dev),
            edges=torch.zeros((2, L, len(HIST_KINDS), 2), device=dev),
        )
        self._n_steps = n_steps
        self._final = final
        self._final_hist = None  # this epoch's first step records the state it stood for
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
        L = len(self.layers)
        self._z: list[torch.Tensor | None] = [None] * L
        self._checked: list[torch.Tensor | None] = [None] * L
        self._acts: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._out_grads: list[torch.Tensor | None] = [None] * L

    def _forget_step(self) -> None:
        """Let the step's tensors go. Each z holds the step's autograd graph (and through it the
        model), and its gradient hook lives in autograd's C++ storage, which `gc` cannot see into:
        a recorder still pointing at the last step's z after its run would never be freed."""
        self._z, self._checked, self._acts, self._out_grads = [], [], {}, []

    def after_backward(self, loss: torch.Tensor, grad_norms: list[torch.Tensor]) -> None:
        """Per-layer statistics of this step, weight gradients taken before any clipping.

        `grad_norms`: ‖∇p‖ of every parameter of the model, in `model.parameters()` order (the
        trainer computes them once for the total norm and clipping; they are not redone here)."""
        lay = self._layout
        raw = self._epoch.raw[self._row]
        grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in self.weights]
        weights = [w.detach() for w in self.weights]
        # Every step, cheaply: the sum of each layer's activation input (NaN/inf iff some value
        # is, short of a sum past 3e38), each weight gradient's norm and the loss; tested on the
        # host per epoch. A sum is one vectorised pass; max |z| (an inf-norm) was ~10× slower.
        outs = [(c if c is not None else z).detach() for c, z in zip(self._checked, self._z)]
        torch.stack([*(o.sum() for o in outs), *(grad_norms[j] for j in self._weight_pos),
                     loss.detach()], out=raw[lay.checks])
        if not self._active:
            return
        # aminmax gives max |∇W| as max(−min, max) at a tenth of the cost of an inf-norm.
        extremes = [torch.aminmax(g) for g in grads]
        torch.stack([*torch._foreach_norm(grads, 1), *(e.min for e in extremes),
                     *(e.max for e in extremes), *torch._foreach_norm(weights)],
                    out=raw[lay.weights])
        torch._foreach_copy_(self._w_before, weights)
        self._record_activations(raw)
        if self._snapshots:
            for i, (weight, grad) in enumerate(zip(weights, grads)):
                self._hist(i, "weight", weight)
                self._hist(i, "weight_grad", grad)

    def _record_activations(self, raw: torch.Tensor) -> None:
        # Layers whose activations have the same shape and function (all hidden layers of an
        # MLP) are stacked and reduced together.
        groups: dict[tuple, list[int]] = {}
        for i, (z, _) in self._acts.items():
            groups.setdefault((tuple(z.shape[1:]), self.layers[i].activation), []).append(i)
        for (shape, name), idx in groups.items():
            G = len(idx)
            za = torch.stack([self._acts[i][0] for i in idx] + [self._acts[i][1] for i in idx])
            mean, std = _moments(za.flatten(1))
            sat = activations.flat(name, za[:G])   # bool: counted, not cast to float
            share = sat.flatten(1).sum(1) / sat[0].numel()
            torch.cat([mean, std, share], out=raw[self._group_slice(shape, name, idx)])
            if self._snapshots:
                for k, i in enumerate(idx):
                    self._hist(i, "pre_activation", za[k])
                    self._hist(i, "activation", za[G + k])
        lay = self._layout
        for i, layer in enumerate(self.layers):
            z = self._z[i]
            if layer.act is None and z is not None:  # the logits: the end of the line
                torch.cat(_moments(z.detach().reshape(1, -1)), out=raw[lay.logits])
                self._hist(i, "pre_activation", z.detach())
            elif layer.norm is not None and z is not None:
                self._hist(i, "pre_norm", z.detach())
        if all(g is not None for g in self._out_grads):
            torch.stack(torch._foreach_norm(self._out_grads), out=raw[lay.out_grad])
        else:
            for i, g in enumerate(self._out_grads):
                if g is not None:
                    raw[lay.out_grad.start + i] = g.norm()

    def _group_slice(self, shape: tuple, name: str, idx: list[int]) -> slice:
        key = (shape, name, tuple(idx))
        if key not in self._group_of:
            self._group_of[key] = self._layout.add_group(idx)
            if self._layout.size > self._epoch.raw.shape[1]:  # pragma: no cover - sized above
                raise RuntimeError("recorder layout outgrew its buffer")
        return self._group_of[key]

    def after_clip(self, total_norm: torch.Tensor, clipped: torch.Tensor) -> None:
        torch.stack([total_norm.detach().float(), clipped.float()],
                    out=self._epoch.raw[self._row, self._layout.clip])

    def after_step(self, lr: float) -> None:
        ep = self._epoch
        ep.lrs.append(lr)
        if self._active:
            weights = [w.detach() for w in self.weights]
            # torch.dist(a, b) = ‖a − b‖ in one call per weight, its difference a temporary the
            # allocator reuses: half the time of subtracting into a scratch copy in place and
            # taking the norm (0.28 against 0.55 ms for the seed model's eleven weights).
            moved = [torch.dist(before, w) for before, w in zip(self._w_before, weights)]
            drift = [torch.dist(w, w0) for w, w0 in zip(weights, self._w0)]
            torch.stack([*moved, *drift], out=ep.raw[self._row, self._layout.moved])
            ep.recorded.append(self._row)
            ep.snapshots.extend((slot, ep.epoch - 1 + slot) for slot in self._snapshots)
        self._forget_step()
        self.step += 1
        if self._row + 1 < self._n_steps:
            self._begin_step()
        else:
            self._training = False

    def _hist(self, i: int, kind: str, x: torch.Tensor) -> None:
        """Histogram x into HIST_BINS equal bins from its own finite min to max, on the device.

        No host sync: the edges stay tensors (histc wants them as Python numbers) and are copied
        with the counts in end_epoch. ±inf count in the edge bins; NaN in none. In float32 with
        in-place steps, a few bytes a value: float64 temporaries raised a CNN run's peak past
        its memory estimate (tests/test_memory.py)."""
        if not self._snapshots:
            return
        x = x.detach().float().flatten()
        finite = torch.isfinite(x)
        lo = torch.where(finite, x, math.inf).min()
        hi = torch.where(finite, x, -math.inf).max()
        del finite
        none = lo > hi   # no finite value at all: a nominal range, the infinities at its edges
        lo, hi = torch.where(none, -1.0, lo), torch.where(none, 1.0, hi)
        # A constant snapshot (a zero gradient) gets a small range around its value.
        pad = torch.where(hi > lo, 0.0, 0.1 * hi.abs() + 1e-8)
        lo, hi = lo - pad, hi + pad
        # hi − lo overflows float32 past ~1e38: such values (and their edges) are scaled down by
        # an exact power of two, which leaves every bin as it was.
        s = torch.where(torch.maximum(-lo, hi) > 2.0 ** 100, 2.0 ** -64, 1.0)
        # floor((x − lo) / width) puts x = hi at index HIST_BINS: into the last bin, as
        # numpy.histogram closes its last bin. NaN goes to an extra slot, dropped.
        index = (x * s).sub_(lo * s).mul_(HIST_BINS / (hi * s - lo * s)).floor_()
        index = index.clamp_(0, HIST_BINS - 1).nan_to_num_(HIST_BINS)
        counts = torch.bincount(index.to(torch.int32), minlength=HIST_BINS + 1)[:HIST_BINS]
        self._histogrammed.add((i, _K[kind]))
        for slot in self._snapshots:
            self._epoch.hist[slot, i, _K[kind]] = counts
            self._epoch.edges[slot, i, _K[kind]] = torch.stack([lo, hi])

    # --- once per epoch ---------------------------------------------------------------------
    def end_epoch(self) -> bool:
        """Copy the epoch's records to the host; return True when the run has diverged."""
        ep = self._epoch
        raw = ep.raw.cpu().numpy().astype(np.float64)
        hist, edges = ep.hist.cpu().numpy(), ep.edges.cpu().numpy()
        lay = self._layout
        checks = raw[:, lay.checks]
        bad = ~np.isfinite(checks)
        n_rows = len(ep.lrs)
        last_row = n_rows - 1
        bad_rows = np.flatnonzero(bad[:n_rows].any(axis=1))
        if bad_rows.size:
            last_row = int(bad_rows[0])
            self.divergence = self._describe_divergence(ep.first_step + last_row, ep.epoch,
                                                        bad[last_row])
        n = last_row + 1
        self._rows["steps"].append(pd.DataFrame({
            "step": np.arange(ep.first_step, ep.first_step + n), "epoch": ep.epoch,
            "loss": checks[:n, -1], "grad_norm": raw[:n, lay.clip.start],
            "clipped": raw[:n, lay.clip.start + 1], "lr": ep.lrs[:n]}))
        rows = np.array([r for r in ep.recorded if r <= last_row], dtype=np.int64)
        values = self._layer_values(raw[rows], checks[rows])
        # Long format: one row per (recorded step, layer, metric) that applies to the layer.
        layer_idx, metric_idx = np.nonzero(self._applies)
        self._rows["layers"].append(pd.DataFrame({
            "step": np.repeat(ep.first_step + rows, len(layer_idx)), "epoch": ep.epoch,
            "layer": np.tile(np.array(self.names, dtype=object)[layer_idx], len(rows)),
            "metric": np.tile(np.array(LAYER_METRICS, dtype=object)[metric_idx], len(rows)),
            "value": values[:, layer_idx, metric_idx].reshape(-1),
        }))
        for slot, hist_epoch in ep.snapshots:
            if slot == 1 and self.divergence:
                continue  # taken after the divergence: nothing finite to show
            parts = [(hist_epoch, i, k, hist[slot, i, k], edges[slot, i, k])
                     for (i, k) in sorted(self._histogrammed)
                     if hist[slot, i, k].sum() > 0]  # 0: kind not recorded (pre_norm w/o BN)
            if not parts:
                continue
            frame = self._hist_frame(parts)
            if slot == 0:
                self._rows["hist"].append(frame)
            else:
                # The epoch's end state: the run's final state unless another epoch follows,
                # whose first step records the same state (slot 0) and replaces it.
                self._final_hist = frame
        return self.divergence is not None

    def _hist_frame(self, parts: list) -> pd.DataFrame:
        """Rows of histograms [(epoch, layer index, kind index, counts, (lo, hi))]."""
        edges = np.array([np.linspace(lo, hi, HIST_BINS + 1) for *_, (lo, hi) in parts])
        names, kinds = np.array(self.names, dtype=object), np.array(HIST_KINDS, dtype=object)
        return pd.DataFrame({
            "epoch": np.repeat([p[0] for p in parts], HIST_BINS),
            "layer": np.repeat(names[[p[1] for p in parts]], HIST_BINS),
            "kind": np.repeat(kinds[[p[2] for p in parts]], HIST_BINS),
            "bin": np.tile(np.arange(HIST_BINS), len(parts)),
            "lo": edges[:, :-1].reshape(-1), "hi": edges[:, 1:].reshape(-1),
            "count": np.concatenate([p[3] for p in parts]).astype(np.float64)})

    def _layer_values(self, raw: np.ndarray, checks: np.ndarray) -> np.ndarray:
        """[recorded steps, layers, metrics] from the raw rows: ratios and stds finished here."""
        lay, L = self._layout, len(self.layers)
        out = np.full((len(raw), L, len(LAYER_METRICS)), np.nan)
        g_norm = checks[:, L:2 * L]
        g_l1, g_min, g_max, w_norm = raw[:, lay.weights].reshape(len(raw), 4, L).transpose(1, 0, 2)
        moved, drift = raw[:, lay.moved].reshape(len(raw), 2, L).transpose(1, 0, 2)
        with np.errstate(divide="ignore", invalid="ignore"):  # zero weights: the ratio is NaN
            out[..., _M["weight_grad_norm"]] = g_norm
            out[..., _M["weight_grad_mean_abs"]] = g_l1 / self._numel
            out[..., _M["weight_grad_max_abs"]] = np.maximum(-g_min, g_max)
            out[..., _M["grad_data_ratio"]] = g_norm / w_norm
            out[..., _M["update_data_ratio"]] = moved / w_norm
            out[..., _M["drift"]] = drift / self._w0_norm
        out[..., _M["out_grad_norm"]] = raw[:, lay.out_grad]
        out_layer = [i for i, layer in enumerate(self.layers) if layer.act is None]
        for i in out_layer:
            out[:, i, _M["preact_mean"]] = raw[:, lay.logits.start]
            out[:, i, _M["preact_std"]] = raw[:, lay.logits.start + 1]
        for (_, activation, idx), where in self._group_of.items():
            block = raw[:, where].reshape(len(raw), 5, len(idx))
            for k, name in enumerate(("preact_mean", "act_mean", "preact_std", "act_std",
                                      activations.flat_region(activation))):
                if name is not None:
                    out[:, idx, _M[name]] = block[:, k]
        return out

    @property
    def _applies(self) -> np.ndarray:
        """[layers, LAYER_METRICS]: whether a step row of the metric exists for the layer. The
        flat share is the one the layer's activation has (none for linear ones); dead units are
        rows of their own, from `probe_dead`."""
        def applies(layer: Layer, metric: str) -> bool:
            if metric in ("saturation", "inactive"):
                return layer.act is not None and activations.flat_region(layer.activation) == metric
            return metric != "dead" and not (layer.act is None and metric in _OF_ACTIVATIONS)
        return np.array([[applies(layer, m) for m in LAYER_METRICS] for layer in self.layers])

    # --- dead units, on the probe set ---------------------------------------------------------
    @torch.inference_mode()
    def probe_dead(self, epoch: int, batches) -> None:
        """Record each hidden layer's share of dead units: flat for every example of the probe
        set, given as `batches` (the same examples every time), run through the network as it
        predicts (evaluation mode: dropout off, batch norm on its running statistics). Called at
        initialisation and after each epoch (`epoch` = epochs done). The rows sit where the
        charts find the state after `epoch` epochs: at the first step of the next epoch, which
        sees the same weights, and the final state at the last step (`tables`)."""
        if self.divergence is not None:
            return  # the weights are non-finite: every unit would read as dead
        hidden = [i for i, layer in enumerate(self.layers)
                  if layer.act is not None and activations.flat_region(layer.activation)]
        if not hidden:
            return
        was_training = self.model.training
        self.model.eval()
        self._alive = {}
        try:
            for x in batches:
                self.model(x)
            dead = torch.stack([(~self._alive[i]).float().mean() for i in hidden])
        finally:
            self._alive = None
            self.model.train(was_training)
        self._rows["layers"].append(pd.DataFrame({
            "step": self.step, "epoch": epoch + 1, "layer": [self.names[i] for i in hidden],
            "metric": "dead", "value": dead.cpu().numpy().astype(np.float64)}))

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
    def step_table(self) -> pd.DataFrame:
        """The per-step rows recorded so far (the `steps` table)."""
        return _concat(self._rows["steps"], ["step", "epoch", *STEP_METRICS])

    def tables(self) -> dict[str, pd.DataFrame]:
        steps = self.step_table()
        layers = _concat(self._rows["layers"], ["step", "epoch", "layer", "metric", "value"])
        if self.step > 0 and len(steps):
            # The final state, probed after the last update, is drawn at the last step, unless
            # an epoch of one step already probed there (the state one update before).
            final = (layers["step"] == self.step).to_numpy()
            if ((layers["step"] == self.step - 1) & (layers["metric"] == "dead")).any():
                layers = layers[~final].reset_index(drop=True)
            else:
                layers.loc[final, ["step", "epoch"]] = [self.step - 1,
                                                        int(steps["epoch"].iloc[-1])]
        frames = self._rows["hist"] + ([self._final_hist] if self._final_hist is not None else [])
        hist = _concat(frames, ["epoch", "layer", "kind", "bin", "lo", "hi", "count"])
        return {"steps": steps, "layers": layers, "histograms": hist}


def _grad_keeper(out_grads: list, i: int):
    """A hook that keeps ∂L/∂z of layer i in the step's list. It holds that list, not the
    recorder: autograd keeps hooks where `gc` cannot follow, so a hook holding the recorder (which
    holds z, which holds the hook) would be a cycle never collected."""
    def keep(g):
        out_grads[i] = g
    return keep


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and sample std of each row of x [rows, n], two-pass so that a large mean does not
    swamp a small spread. Plain reductions: torch.std_mean is ~10× slower on the CPU here."""
    mean = x.mean(dim=1)
    scale = 1 / math.sqrt(x.shape[1] - 1) if x.shape[1] > 1 else math.nan
    return mean, torch.linalg.vector_norm(x - mean[:, None], dim=1).mul_(scale)


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


# The output layer has no activation: these would always be NaN there, so they are not rows.
_OF_ACTIVATIONS = {"act_mean", "act_std"}
