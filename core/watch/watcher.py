"""`watch`: the Lab's per-layer diagnostics, recorded from any PyTorch model in its own loop.

    from core.watch import watch, load
    with watch(model, optimizer, every=25, probe=x_probe) as w:
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            w.after_backward(loss)          # once per optimizer step, before any clipping
            optimizer.step()
    run = w.result()                        # a WatchedRun: the Lab's tidy tables
    run.save("run.json")                    # core.watch.load("run.json") reads it back

One call in the loop, the rest hooks. No hook sees the loss, nor the gradient between the
backward pass and the loop's own clipping: `after_backward(loss)` is that point, and it counts
the steps (call it once per optimizer step, after the last backward of an accumulation; with a
GradScaler, after `scaler.unscale_(optimizer)`, so the gradients are the true ones). The
optimizer's step hooks (`register_step_pre_hook`/`register_step_post_hook`) measure the update
it really made, whatever the update rule.

The layers are the modules that own parameters (Linear, Conv*, RNN/LSTM/GRU, Embedding, norm
layers, MultiheadAttention's input projection, ...) and the modules inside which an activation
ran, named by module path (`layers.0.linear1`; the root, if it owns parameters, is "(model)"),
in the order their forward first ran; a module whose forward never runs (MultiheadAttention's
`out_proj`, whose weight the attention reads directly) follows its parent. A layer's "weight" is
its own parameters named *weight* (`weight`, `in_proj_weight`, an LSTM's `weight_ih_l0` and
`weight_hh_l0` together), or all its own parameters when none is so named; biases are left out,
as in the Lab.

Recorded, with core.lab.metrics.CATALOGUE's names:
  every step              loss, grad_norm (every parameter, before clipping), lr; and whether
                          any layer's output, the loss or a gradient is non-finite, so a
                          divergence is reported at its first step and module
  every `every` steps     per layer: weight_grad_norm, grad_data_ratio, update_data_ratio (the
  (and step 0)            optimizer's real step ‖ΔW‖/‖W‖), drift ‖W − W₀‖/‖W₀‖, out_grad_norm
                          (‖∂L/∂y‖ at the module's output y, by a tensor hook registered on that
                          step only); per activation: preact/act mean and std and its saturated
                          or inactive share (core.activations.flat); per step: clipped (whether
                          the loop's clipping shrank the gradient before the optimizer's step)
  with `probe`            dead: the share of units flat for every example of the probe batch,
                          run as the model predicts (eval mode, no gradient), at the start and
                          at the end. A unit is a feature (the last dimension) or, for a 4-D or
                          larger activation (a conv feature map), a channel (dimension 1).
Activations are seen whether modules (nn.ReLU) or functions (F.relu, F.gelu, torch.tanh, as
inside nn.TransformerEncoderLayer): a `TorchFunctionMode` (core.watch.activation_calls)
intercepts them while the model's forward runs on recorded steps, and a module pre/post-hook
stack attributes each call to the innermost module running (the TransformerEncoderLayer for its F.relu). Several calls in one
module pool their counts. Fused kernels (nn.LSTM's gates, scaled_dot_product_attention) hide
theirs; a tanh inside a hand-written GELU counts as a tanh.

Cost discipline, as the Lab's recorder: statistics are computed on the device into small
tensors, and copied to the host once per recorded interval (`.tolist()` of one concatenation);
the activation interception, the module-stack hooks and the output-gradient hooks exist only on
recorded steps; every hook is removed on exit, also when the loop raised. Memory beyond the
records, while the watch runs: two copies of the weights (W₀ for drift, W before the step for
the update). Statistics are taken in float32, so autocast's half-precision tensors are
measured alike.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from core import activations
from core.lab.sharpness import Sharpness
from core.watch import tables
from core.watch.activation_calls import ActivationCalls
from core.watch.result import WatchedConfig, WatchedRun, identified
from core.watch.tables import ROOT_NAME

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
_PARTS = ("stats", "acts", "out_grads", "update")   # a recorded step's device tensors


def watch(model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *, every: int = 25,
          probe: Any = None, sharpness_every: int | None = None) -> "Watch":
    """Record `model`'s diagnostics while the loop inside the `with` trains it.

    every: per-layer statistics at step 0 and every `every` steps (the loss and gradient norm
    every step). optimizer: its step hooks give update:data (None: no update measured).
    probe: a batch the model is called on (a tensor, or a tuple of its arguments) to measure
    dead units at the start and at the end; the same examples both times.
    sharpness_every: the loss's top Hessian eigenvalue every this many steps (None: off), on
    the step's batch, which `after_backward(loss, closure)` recomputes (core.lab.sharpness)."""
    given = {"every": every, "sharpness_every": 1 if sharpness_every is None else sharpness_every}
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: a whole number of steps of at least 1, not {value!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: a torch.nn.Module, not {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model: it has no trainable parameters to watch")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer: a torch.optim.Optimizer or None, not "
                        f"{type(optimizer).__name__}")
    return Watch(model, optimizer, every, probe, sharpness_every)


@dataclass
class _Recorded:
    """One recorded step's device tensors (_PARTS, until the interval's host copy) and the host
    facts to read them back."""

    step: int
    stats: torch.Tensor | None                           # weight norms ‖W‖, per weight tensor
    act_keys: list[tuple[int, str]] = field(default_factory=list)   # (layer, activation)
    act_numel: list[int] = field(default_factory=list)
    acts: torch.Tensor | None = None                     # [calls, tables.STATS]
    grad_layers: list[int] = field(default_factory=list)
    out_grads: torch.Tensor | None = None                # ‖∂L/∂y‖ per output-gradient hook call
    update: torch.Tensor | None = None                   # ‖ΔW‖, ‖W − W₀‖ per weight, clipped norm


class Watch:
    """The context `watch()` returns; see the module docstring."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None, every: int,
                 probe: Any, sharpness_every: int | None):
        self.model, self.optimizer, self.every, self.probe = model, optimizer, every, probe
        self.sharpness = Sharpness(model, sharpness_every) if sharpness_every else None
        self._quiet = False                  # while the sharpness estimate runs its forward
        self.names: list[str] = []           # layers, in named_modules order (indices below)
        self.modules: list[nn.Module] = []
        weights, owner = [], []
        for name, module in model.named_modules():
            own = [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad]
            if own:
                named_weight = [p for n, p in own if "weight" in n]
                for p in named_weight or [p for _, p in own]:
                    weights.append(p)
                    owner.append(len(self.names))
            self.names.append(name or ROOT_NAME)
            self.modules.append(module)
        self._index = {id(m): i for i, m in enumerate(self.modules)}
        self._param_layers = sorted(set(owner))
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.weights = weights
        self._owner = np.array(owner, dtype=np.int64)
        pos = {id(p): j for j, p in enumerate(self.params)}
        self._weight_pos = np.array([pos[id(w)] for w in weights], dtype=np.int64)
        self.step = 0                        # after_backward calls so far
        self._handles: list = []             # hooks that live for the whole watch
        self._armed: list = []               # hooks of a recorded step
        self._mode = ActivationCalls(self._measure_input, self._measure_output)
        self._in_mode = False
        self._stack: list[int] = []
        self._first_order: list[int] = []    # layers in the order their forward first ran
        self._seen: set[int] = set()
        self._outs: dict[int, torch.Tensor] = {}   # this step's output sums, in forward order
        self._out_grads: list[tuple[int, torch.Tensor]] = []
        self._acts: list[tuple[int, str, int, torch.Tensor]] = []
        self._alive: dict[tuple[int, str], torch.Tensor] | None = None   # while probing
        self._pending_checks: list[tuple[int, list[int], torch.Tensor]] = []
        self._pending_recorded: list[_Recorded] = []
        self._updating: _Recorded | None = None
        self._lrs: list[float] = []
        self._host_steps: list[tuple[int, float, float]] = []   # (step, loss, grad_norm)
        self._weight_grads: dict[int, np.ndarray] = {}   # recorded step: ‖∇W‖ per weight tensor
        self.divergence: dict | None = None
        self._clip_reference: torch.Tensor | None = None   # a recorded step's ‖∇p‖, unclipped
        self._host_recorded: list[tuple[_Recorded, dict[str, np.ndarray]]] = []   # _PARTS
        self._dead_rows: list[tuple[int, str, str, float]] = []
        self._activation_pairs: Counter = Counter()
        self._failed = False
        self._inside = False
        self._seconds = math.nan
        self._config: WatchedConfig | None = None

    # --- entering and leaving -------------------------------------------------------------
    def __enter__(self) -> "Watch":
        self._w0 = [w.detach().clone() for w in self.weights]
        self._w_before = [w.detach().clone() for w in self.weights]   # reused buffers
        self._config = self._describe()
        for i in self._param_layers:
            self._handles.append(self.modules[i].register_forward_hook(self._output_hook(i)))
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(self._before_step))
            self._handles.append(self.optimizer.register_step_post_hook(self._after_step))
        self._inside = True
        self._start = time.perf_counter()
        if self.probe is not None:
            self._probe_dead(0)
        self._arm()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self._seconds = time.perf_counter() - self._start
        self._disarm()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._inside = False
        self._failed = exc_type is not None
        # The step cut short by an error lets its tensors (and their graphs) go.
        self._outs, self._out_grads, self._acts = {}, [], []
        self._updating = None
        if self.probe is not None and self.step > 0 and not self._failed:
            self._probe_dead(self.step - 1)   # the state after the last update, as the run ends
        self._flush()
        # Only host numbers stay: the weight copies (twice the weights) go with the last copy.
        self._w0_norms = np.asarray(torch.stack(torch._foreach_norm(self._w0)).float().tolist()
                                    if self._w0 else [], dtype=np.float64)
        self._w0, self._w_before, self._clip_reference = [], [], None

    def _describe(self) -> WatchedConfig:
        group = self.optimizer.param_groups[0] if self.optimizer is not None else {}
        drops = [m.p for m in self.model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
        return WatchedConfig(
            run_id="", model=type(self.model).__name__,   # run_id: set by `identified`
            optimizer=type(self.optimizer).__name__.lower() if self.optimizer else "",
            lr=float(group.get("lr", math.nan)), weight_decay=float(group.get("weight_decay", 0)),
            momentum=float(group.get("momentum", 0.0)), nesterov=bool(group.get("nesterov")),
            every=self.every, activation="linear",   # set from the first recorded step
            batch_norm=any(isinstance(m, _NORMS) for m in self.model.modules()),
            dropout=float(max(drops, default=0.0)), probe=_examples(self.probe))

    # --- hooks of a recorded step -----------------------------------------------------------
    def _recording(self) -> bool:
        return self.step % self.every == 0

    def _arm(self, probing: bool = False) -> None:
        """Module-stack hooks (the root's enter and leave the activation mode) for the next
        forward, when it is a recorded step's or the probe's."""
        if self._armed or not (probing or self._recording()):
            return
        for module in self.modules:
            self._armed.append(module.register_forward_pre_hook(self._push))
            self._armed.append(module.register_forward_hook(self._pop, always_call=True))

    def _disarm(self) -> None:
        for handle in self._armed:
            handle.remove()
        self._armed.clear()
        if self._in_mode:   # a forward cut short before the root's post-hook
            self._mode.__exit__(None, None, None)
            self._in_mode = False
        self._stack.clear()

    def _counting(self) -> bool:
        """A training forward (an evaluation pass in between is not the step's), or the probe."""
        return self._alive is not None or (torch.is_grad_enabled() and self.model.training)

    def _push(self, module, args) -> None:
        if not self._counting():
            return
        i = self._index[id(module)]
        if not self._stack and not self._in_mode:
            self._mode.__enter__()
            self._in_mode = True
        self._stack.append(i)
        if i not in self._seen:
            self._seen.add(i)
            self._first_order.append(i)

    def _pop(self, module, args, out) -> None:
        if not self._stack or self._stack[-1] != self._index[id(module)]:
            return
        self._stack.pop()
        if not self._stack and self._in_mode:
            self._mode.__exit__(None, None, None)
            self._in_mode = False

    def _measure_input(self, name: str, z: torch.Tensor) -> tuple | None:
        """An activation's input: its sums and flat count on a recorded step (finished by
        `_measure_output`), or which units were live when probing."""
        if not self._stack:
            return None
        i = self._stack[-1]
        flat = activations.flat(name, z)
        if self._alive is not None:   # probing for dead units: which units were ever live
            live = ~flat
            unit = 1 if live.dim() >= 4 else live.dim() - 1
            dims = [d for d in range(live.dim()) if d != unit]
            live = live.amax(dim=dims) if dims else live
            key = (i, name, live.numel())
            self._alive[key] = live if key not in self._alive else self._alive[key] | live
            return None
        return i, name, z.numel(), (z.sum(), (z * z).sum(), flat.sum())

    def _measure_output(self, measured: tuple, out: torch.Tensor) -> None:
        i, name, n, (z_sum, z_sq, flat) = measured
        a = out.detach().float()
        self._acts.append((i, name, n, torch.stack([z_sum, z_sq, a.sum(), (a * a).sum(),
                                                    flat.float()])))

    def _output_hook(self, i: int):
        def hook(module, args, out):
            if self._quiet or not torch.is_grad_enabled() or not self.model.training:
                return
            y = _first_tensor(out)
            if y is None:
                return
            # Its sum: NaN/inf iff some value is, short of a sum past 3e38 (as the Lab's
            # recorder). max |y| would say it exactly but cost 18x more: 9 ms a step on the
            # benchmark's transformer, the sums 0.5 ms. Taken here, not kept as y, so autograd
            # can free y during the backward pass as it would without the watch.
            self._outs[i] = y.detach().sum().float().reshape(1)
            if self._recording() and y.requires_grad:
                y.register_hook(lambda g: self._out_grads.append((i, g)))
        return hook

    # --- the loop's call --------------------------------------------------------------------
    def after_backward(self, loss: torch.Tensor, closure: Any = None) -> None:
        """This step's loss and gradients (call after backward, before clipping and the
        optimizer's step); statistics of a recorded step. closure (with sharpness_every):
        recomputes this step's loss, as for torch.optim's `step(closure)`."""
        if not self._inside:
            raise RuntimeError("after_backward: call it inside `with watch(...) as w:`")
        if not isinstance(loss, torch.Tensor):
            raise TypeError(f"after_backward: loss is the loss tensor backward ran on, not "
                            f"{type(loss).__name__}")
        self._updating = None   # the last recorded step's optimizer step was skipped (GradScaler)
        if self._recording() and self.step > 0:
            self._flush()     # the interval before this recorded step: one host copy
        grads = [p.grad for p in self.params]
        if all(g is not None for g in grads):
            norms = torch.stack(torch._foreach_norm(grads)).float()
        else:
            norms = torch.zeros(len(self.params), device=_device(self.params))  # no gradient
            have = [j for j, g in enumerate(grads) if g is not None]
            if have:
                norms[have] = torch.stack(torch._foreach_norm([grads[j] for j in have])).float()
        outs = list(self._outs.items())
        check = torch.cat([loss.detach().float().reshape(1), norms, *(y for _, y in outs)])
        self._pending_checks.append((self.step, [i for i, _ in outs], check))
        self._lrs.append(_lr(self.optimizer))
        self._outs = {}
        if self._recording():
            self._record(norms)
        if self.sharpness is not None and self.sharpness.due(self.step):
            self._quiet = True   # the estimate's forward is not the step's
            try:
                self.sharpness.measure(self.step, closure)   # restores buffers and RNG
            finally:
                self._quiet = False
        self.step += 1
        self._arm()

    def _record(self, norms: torch.Tensor) -> None:
        self._disarm()
        weights = [w.detach() for w in self.weights]
        rec = _Recorded(self.step, torch.stack(torch._foreach_norm(weights)).float())
        if self._acts:
            rec.act_keys = [(i, name) for i, name, _, _ in self._acts]
            rec.act_numel = [n for _, _, n, _ in self._acts]
            rec.acts = torch.stack([s for *_, s in self._acts])
            if self.step == 0:
                for (i, name), n in zip(rec.act_keys, rec.act_numel):
                    self._activation_pairs[name] += n
        if self._out_grads:
            rec.grad_layers = [i for i, _ in self._out_grads]
            rec.out_grads = torch.stack(torch._foreach_norm(
                [g.detach().float() for _, g in self._out_grads]))
        self._acts, self._out_grads = [], []
        self._pending_recorded.append(rec)
        self._updating = rec
        self._clip_reference = norms

    def _before_step(self, optimizer, args, kwargs) -> None:
        if self._updating is not None:
            torch._foreach_copy_(self._w_before, [w.detach() for w in self.weights])

    def _after_step(self, optimizer, args, kwargs) -> None:
        rec, self._updating = self._updating, None
        if rec is None:
            return
        weights = [w.detach() for w in self.weights]
        scratch = self._w_before       # in place: fresh tensors the size of the weights cost more
        torch._foreach_sub_(scratch, weights)               # W_before − W = −ΔW
        moved = torch._foreach_norm(scratch)
        torch._foreach_copy_(scratch, weights)
        torch._foreach_sub_(scratch, self._w0)              # W − W₀
        drift = torch._foreach_norm(scratch)
        # The gradient the optimizer used, after the loop's clipping, against the one before.
        grads = [p.grad for p in self.params if p.grad is not None]
        used = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float()) \
            if grads else torch.tensor(math.nan)
        before = torch.linalg.vector_norm(self._clip_reference)
        rec.update = torch.cat([torch.stack(moved).float(), torch.stack(drift).float(),
                                torch.stack([used.to(before.device), before])])

    # --- the one host copy per interval -----------------------------------------------------
    def _flush(self) -> None:
        parts = [c for *_, c in self._pending_checks]
        for rec in self._pending_recorded:
            parts += [t for t in (getattr(rec, name) for name in _PARTS) if t is not None]
        sharp = self.sharpness.pending() if self.sharpness is not None else []
        parts += sharp
        if not parts:
            return
        flat = torch.cat([p.reshape(-1).float().to(parts[0].device) for p in parts]).tolist()
        at, P = 0, len(self.params)
        for step, present, check in self._pending_checks:
            values = np.asarray(flat[at:at + check.numel()], dtype=np.float64)
            at += check.numel()
            self._host_steps.append((step, values[0], float(np.sqrt((values[1:1 + P] ** 2).sum()))))
            if step % self.every == 0:
                self._weight_grads[step] = values[1 + self._weight_pos]
            if self.divergence is None and not np.isfinite(values).all():
                self.divergence = self._describe_divergence(step, values, present)
        for rec in self._pending_recorded:
            host = {}
            for name in _PARTS:
                t = getattr(rec, name)
                if t is not None:
                    host[name] = np.asarray(flat[at:at + t.numel()], dtype=np.float64)
                    at += t.numel()
                setattr(rec, name, None)   # the device tensors go
            self._host_recorded.append((rec, host))
        if sharp:
            self.sharpness.take(flat[at:at + len(sharp)])
        self._pending_checks, self._pending_recorded = [], []

    # --- dead units -----------------------------------------------------------------------
    @torch.no_grad()
    def _probe_dead(self, step: int) -> None:
        modes = {m: m.training for m in self.model.modules()}
        self.model.eval()
        self._alive = {}
        armed_before = bool(self._armed)
        self._arm(probing=True)
        try:
            args = self.probe if isinstance(self.probe, tuple) else (self.probe,)
            self.model(*args)
            alive = list(self._alive.items())
            dead = torch.stack([(~live).sum() for _, live in alive]).tolist() if alive else []
            counts: dict[tuple[int, str], list[float]] = {}   # (layer, region): [dead, units]
            for ((i, name, units), _), n_dead in zip(alive, dead):
                region = activations.flat_region(name)
                if region is not None:
                    acc = counts.setdefault((i, region), [0.0, 0])
                    acc[0] += n_dead
                    acc[1] += units
            self._dead_rows += [(step, self.names[i], "dead", n / units)
                                for (i, _), (n, units) in counts.items()]
        finally:
            self._alive = None
            if not armed_before:
                self._disarm()
            for module, training in modes.items():
                module.train(training)

    # --- the result -----------------------------------------------------------------------
    def result(self) -> WatchedRun:
        """The records as a WatchedRun (call after the `with` block, which made the last host
        copy: what happens to the model after it does not change the result)."""
        if self._inside:
            raise RuntimeError("result: call it after the `with watch(...)` block has ended")
        if self._config is None:
            raise RuntimeError("result: nothing was watched (use `with watch(...) as w:`)")
        divergence = self.divergence
        last = divergence["step"] if divergence else math.inf
        steps = tables.steps_table(self._host_steps, self._host_recorded, self._lrs, last)
        layers = tables.layers_table(self.names, self._param_layers, self._owner,
                                     self._w0_norms, self._host_recorded, self._weight_grads,
                                     self._dead_rows, last)
        order = tables.forward_order(self.names, self._first_order, self._seen)
        names = [self.names[i] for i in order]
        present = set(layers.layer) if len(layers) else set()
        seen = self._activation_pairs.most_common(1)
        config = self._config.replace(activation=seen[0][0] if seen else "linear")
        status = "diverged" if divergence else "stopped" if self._failed else "completed"
        return identified(WatchedRun(
            config=config, status=status, device=str(_device(self.params)),
            dataset={"source": "the watched loop's own data"},
            layer_names=[n for n in names if n in present],
            n_params=sum(p.numel() for p in self.model.parameters()),
            timing={"seconds": self._seconds, "train_seconds": self._seconds},
            divergence=divergence,
            epochs=pd.DataFrame({"epoch": [], "split": [], "metric": [], "value": []}),
            steps=steps, layers=layers,
            histograms=pd.DataFrame({c: [] for c in ("epoch", "layer", "kind", "bin", "lo",
                                                     "hi", "count")}),
            boundary=pd.DataFrame({"epoch": [], "x": [], "y": [], "p": []}),
            points=pd.DataFrame({"x": [], "y": [], "label": [], "split": []}),
            **({"sharpness": self.sharpness.table(last)} if self.sharpness else {})))

    def _describe_divergence(self, step: int, values: np.ndarray, present: list[int]) -> dict:
        """Where a step's first non-finite value was: a layer's output (the first in forward
        order), else the loss, else a weight gradient."""
        bad = ~np.isfinite(values)
        P = len(self.params)
        outs_bad = bad[1 + P:]
        if outs_bad.any():
            where, layer = "output", self.names[present[int(np.argmax(outs_bad))]]
        elif bad[0]:
            where, layer = "loss", None
        else:
            # Back-propagation runs from the last layer: the last bad one is where it began.
            order = {i: k for k, i in enumerate(
                tables.forward_order(self.names, self._first_order, self._seen))}
            bad_layers = {int(self._owner[k]) for k, j in enumerate(self._weight_pos)
                          if bad[1 + j]}
            where = "gradient"
            layer = self.names[max(bad_layers, key=order.get)] if bad_layers else None
        text = (f"non-finite values first appeared at step {step}"
                + (f" in the {where} of {layer}" if layer else f" in the {where}"))
        return {"step": step, "epoch": 0, "layer": layer, "where": where, "message": text}


def _first_tensor(out: Any) -> torch.Tensor | None:
    """A module's output tensor: itself, or the first of a tuple (MultiheadAttention's
    (output, weights), an LSTM's (output, (h, c)))."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _lr(optimizer: torch.optim.Optimizer | None) -> float:
    return float(optimizer.param_groups[0]["lr"]) if optimizer is not None else math.nan


def _device(params: list[torch.Tensor]) -> torch.device:
    return params[0].device if params else torch.device("cpu")


def _examples(probe: Any) -> int:
    """Examples in the probe batch: its first tensor's first dimension; 0 without a probe."""
    first = next((a for a in (probe if isinstance(probe, tuple) else (probe,))
                  if isinstance(a, torch.Tensor)), None)
    return int(first.shape[0]) if first is not None and first.dim() else 0
