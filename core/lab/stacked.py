"""Train several configurations of one network shape together, as one stacked model.

This is the sweep's fast path (core/lab/sweep.py). On a small network most of a step's time is the
per-op overhead of PyTorch, not arithmetic, so K networks stacked along a leading dimension cost
little more than one:

    groups = batch_groups(cfgs)                    # index lists; each trains as one model
    cells = train_batched([cfgs[i] for i in groups[0]])   # one CellSummary per config

How members are kept independent and faithful to `core.lab.trainer.train`:
  * Member k's weights sit at index k of stacked tensors [K, out, in] (built by
    `torch.func.stack_module_state` from the members' own modules); one `torch.baddbmm` per
    layer computes all members; batch norm treats (member, unit) as one channel, so
    `F.batch_norm` normalises and tracks running statistics per member.
  * The loss is the sum of the members' mean losses, so each member's gradient is exactly its
    own; nothing mixes members, and a member whose values become NaN spoils only itself.
  * Member k is built by `build_model(cfg_k)` (same seed, same initial weights), shuffles with
    its own generator seeded like train(cfg_k), and on the CPU draws its dropout masks from the
    random stream train(cfg_k) would use. It follows train(cfg_k)'s trajectory up to
    floating-point summation order (bmm vs mm), which only chaotic runs amplify.
  * Members that share optimizer settings and clipping form a *block*: one leaf tensor per
    parameter, one torch.optim optimizer from `run_optimizer`, one scheduler; the blocks are
    concatenated for the forward pass. All our optimizers and `clip_grad_value_` are
    elementwise, so they act per member on a stacked leaf; `clip_grad_norm_` needs the member's
    own total norm, so a member with clip_norm is a block of its own. Activations may differ
    inside a block (applied per run of members): an optimizer step costs 0.6–1 ms on a CPU
    whatever the tensor sizes, so fewer blocks is faster.
What differs in shape or loop (dataset, model, depth, width, batch norm, batch size, epochs,
device) makes a separate group. CNNs are not stacked here: they train with `train()`.

Recorded per member (a `CellSummary`): per-epoch validation and training loss/accuracy, each
layer's back-propagated gradient ‖∂L/∂z‖ at step 0 (the depth ratio of RunResult.depth_ratio),
each hidden layer's saturated or inactive share on the last training batch (as the recorder's
last record), and the first step with
a non-finite loss, weight gradient or activation input (as the recorder's divergence check).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from core import activations
from core.data.datasets import load_splits
from core.lab.config import FIELDS, RunConfig
from core.lab.models import build_model
from core.lab.result import RunResult
from core.lab.trainer import make_scheduler, run_optimizer
from core.settings import format_value
from core.tables import EpochRecords
from core.training import flushed_denormals, resolve_device, steps_per_epoch

# Settings that may differ inside one stacked model: each member has its own activation, init,
# seed (its own split, shuffle and dropout stream) and dropout rate.
PER_MEMBER = ("activation", "init", "sigma_w2", "bias_init", "bias_value", "seed", "dropout",
              "record_every")
# Settings that may differ between blocks of a stacked model: each block has its own leaves,
# optimizer, schedule and clipping.
PER_BLOCK = ("optimizer", "lr", "momentum", "beta1", "beta2", "eps", "weight_decay",
             "schedule", "lr_decay", "clip_norm", "clip_value")
# Everything else changes shapes or the loop. A new RunConfig field lands here by default,
# which is the safe side: it separates groups rather than mixing them.
SHAPE_FIELDS = tuple(n for n in FIELDS if n not in PER_MEMBER + PER_BLOCK)

MAX_GROUP = 64                    # members per stacked model (a sweep has at most 64 cells)
MAX_DATA_BYTES = 512 * 2**20      # per group: each distinct seed keeps its own split on device
EVAL_ELEMENTS = 2**23             # input floats per evaluation chunk, over all members
EPOCH_COLUMNS = ["epoch", "split", "metric", "value"]


@dataclass
class CellSummary(EpochRecords):
    """What a sweep shows for one configuration; from a stacked group or from a full run."""

    config: RunConfig
    status: str                       # "completed" | "diverged"
    layer_names: list[str]
    out_grad_norms: list[float]       # ‖∂L/∂z‖ per layer at step 0, network order
    flat: list[float]                 # saturated or inactive share per hidden layer at the
                                      # end (flat_metric says which); NaN when diverged
    diverged_step: int | None
    epochs: pd.DataFrame              # epoch, split (val/train), metric (loss/accuracy), value
    seconds: float                    # a stacked group's time is shared equally by its members
    source: str                       # "stacked": trained here; "run": a full train() run
    group_size: int = 1
    from_store: bool = field(default=False, compare=False)

    @property
    def depth_ratio(self) -> float:
        """First layer's ‖∂L/∂z‖ over the output layer's at step 0 (as RunResult.depth_ratio)."""
        g = self.out_grad_norms
        if len(g) < 2:
            return math.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.float64(g[0]) / np.float64(g[-1]))

    @property
    def flat_metric(self) -> str | None:
        return activations.flat_region(self.config.activation)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "status": self.status,
                "layer_names": self.layer_names, "out_grad_norms": self.out_grad_norms,
                "flat": self.flat, "diverged_step": self.diverged_step,
                "epochs": {c: self.epochs[c].tolist() for c in EPOCH_COLUMNS},
                "seconds": self.seconds, "source": self.source, "group_size": self.group_size}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CellSummary":
        return cls(config=RunConfig.from_dict(d["config"]), status=d["status"],
                   layer_names=list(d["layer_names"]),
                   out_grad_norms=[_num(v) for v in d["out_grad_norms"]],
                   flat=[_num(v) for v in d["flat"]],
                   diverged_step=d["diverged_step"],
                   epochs=pd.DataFrame(d["epochs"], columns=EPOCH_COLUMNS).astype(
                       {"epoch": int, "value": float}),
                   seconds=float(d["seconds"]), source=d["source"],
                   group_size=int(d["group_size"]))

    @classmethod
    def from_run(cls, result: RunResult) -> "CellSummary":
        """The same summary from a full recorded run (e.g. one trained in the Training Lab)."""
        g = result.at_step("out_grad_norm", 0) if len(result.layers) else pd.Series(dtype=float)
        epochs = result.epochs[result.epochs.split.isin(("val", "train"))][EPOCH_COLUMNS]
        return cls(config=result.config, status=result.status,
                   layer_names=list(result.layer_names),
                   out_grad_norms=g.astype(float).tolist(), flat=result.end_flat(),
                   diverged_step=(result.divergence or {}).get("step"),
                   epochs=epochs.reset_index(drop=True), seconds=result.timing["seconds"],
                   source="run", from_store=result.from_store)


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


# --- grouping ----------------------------------------------------------------------------------
def can_batch(cfg: RunConfig) -> bool:
    """Whether the stacked trainer implements everything the config asks: not a CNN, nor
    bias-free layers, squared error or a loss criterion (those train with core.lab.trainer)."""
    return (cfg.model != "cnn" and cfg.bias and cfg.loss == "cross_entropy"
            and cfg.target_loss is None)


def shape_key(cfg: RunConfig) -> tuple:
    return tuple(getattr(cfg, n) for n in SHAPE_FIELDS)


def _block_key(cfg: RunConfig, k: int) -> tuple[str, ...]:
    key = tuple(format_value(getattr(cfg, n)) for n in PER_BLOCK)
    # clip_grad_norm_ scales by the total norm of all it is given: one member per block.
    return key + ((str(k),) if cfg.clip_norm is not None else ())


def batch_groups(cfgs: list[RunConfig]) -> list[list[int]]:
    """Indices of `cfgs` grouped into stacked models, first-seen order; CNNs alone."""
    groups: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        key = shape_key(cfg) if can_batch(cfg) else ("alone", i)
        groups.setdefault(key, []).append(i)
    return [g[s:s + MAX_GROUP] for g in groups.values() for s in range(0, len(g), MAX_GROUP)]


# --- the stacked network -----------------------------------------------------------------------
class _Stacked:
    """K MLPs as stacked tensors; `forward` takes inputs [K, batch, ...] and gives logits
    [K, batch, classes] plus each layer's activation input (the logits for the output)."""

    def __init__(self, members: list[RunConfig], models: list[nn.Module],
                 blocks: list[list[int]], gens: list[torch.Generator | None],
                 device: torch.device):
        first = models[0]
        self.K = len(members)
        self.names = list(first.layers.keys())
        self.residual = members[0].model == "residual_mlp"
        self.params = [n for n, _ in first.named_parameters()]
        models = [m.to(device) for m in models]
        # One leaf [block size, ...] per parameter and block: what the block's optimizer updates.
        stacked = [torch.func.stack_module_state([models[k] for k in blk])[0] for blk in blocks]
        self.leaves = {n: [p[n] for p in stacked] for n in self.params}
        # Batch norm's running statistics as K·width channels, the layout _norm() gives F.
        _, buffers = torch.func.stack_module_state(models)
        self.norms = {}  # layer -> (running mean, running var, momentum, eps)
        for name, layer in first.layers.items():
            if layer.norm is not None:
                self.norms[name] = (buffers[f"layers.{name}.norm.running_mean"].reshape(-1),
                                    buffers[f"layers.{name}.norm.running_var"].reshape(-1),
                                    layer.norm.momentum, layer.norm.eps)
        # Runs of members with the same activation (members are sorted by it within a block).
        runs: list[list] = []
        for k, cfg in enumerate(members):
            if runs and runs[-1][0] == cfg.activation:
                runs[-1][1] += 1
            else:
                runs.append([cfg.activation, 1])
        self.act_runs = [(name, n, activations.make(name)) for name, n in runs]
        self.dropout = [cfg.dropout for cfg in members]
        self.any_dropout = any(p > 0 for p in self.dropout)
        self.gens = gens
        self.weights: list[torch.Tensor] = []   # this step's stacked weights, grads retained
        # With keep_outputs set, each layer's z = Wx + b, gradient retained (the depth ratio).
        self.keep_outputs = False
        self.outputs: list[torch.Tensor] = []

    def block_params(self, j: int) -> list[torch.Tensor]:
        return [self.leaves[n][j] for n in self.params]

    def _param(self, name: str, training: bool) -> torch.Tensor:
        leaves = self.leaves[name]
        t = leaves[0] if len(leaves) == 1 else torch.cat(leaves)
        if training and name.endswith("linear.weight"):
            if not t.is_leaf:
                t.retain_grad()
            self.weights.append(t)
        return t

    def forward(self, x: torch.Tensor, training: bool):
        K, B = x.shape[:2]
        h = x.reshape(K, B, -1)
        checked = []
        self.weights, self.outputs = [], []
        for i, name in enumerate(self.names):
            W = self._param(f"layers.{name}.linear.weight", training)
            b = self._param(f"layers.{name}.linear.bias", training)
            z = torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))
            if training and self.keep_outputs:
                z.retain_grad()
                self.outputs.append(z)
            if i == len(self.names) - 1:
                checked.append(z)
                return z, checked
            if name in self.norms:
                z = self._norm(name, z, training)
            checked.append(z)
            a = self._activate(z)
            if training and self.any_dropout:
                a = a * self._dropout_masks(a)
            h = h + a if (self.residual and i > 0) else a
        raise RuntimeError("a network ends in its output layer")  # pragma: no cover

    def _norm(self, name: str, z: torch.Tensor, training: bool) -> torch.Tensor:
        K, B, W = z.shape
        mean, var, momentum, eps = self.norms[name]
        weight = self._param(f"layers.{name}.norm.weight", training).reshape(-1)
        bias = self._param(f"layers.{name}.norm.bias", training).reshape(-1)
        out = F.batch_norm(z.transpose(0, 1).reshape(B, K * W), mean, var, weight, bias,
                           training, momentum, eps)
        return out.reshape(B, K, W).transpose(0, 1)

    def _activate(self, z: torch.Tensor) -> torch.Tensor:
        if len(self.act_runs) == 1:
            return self.act_runs[0][2](z)
        parts = z.split([n for _, n, _ in self.act_runs])
        return torch.cat([f(part) for (_, _, f), part in zip(self.act_runs, parts)])

    def _dropout_masks(self, a: torch.Tensor) -> torch.Tensor:
        # F.dropout takes no generator, and one stream for the stack would tie a member's masks
        # to its neighbours. This is F.dropout's own CPU computation (bernoulli_(1-p), then
        # ÷(1-p)) on the member's stream, so the masks are the ones train() draws.
        masks = []
        for p, g in zip(self.dropout, self.gens):
            if p > 0:
                masks.append(torch.empty(a.shape[1:], device=a.device)
                             .bernoulli_(1 - p, generator=g).div_(1 - p))
            else:
                masks.append(torch.ones(a.shape[1:], device=a.device))
        return torch.stack(masks)

    def flat(self, checked: list[torch.Tensor]) -> torch.Tensor:
        """[hidden layers, K]: share of (example, unit) pairs saturated or inactive, per member
        (NaN for a linear member: it has no flat region, and the recorder records none)."""
        rows = []
        for z in checked[:-1]:
            parts = z.detach().split([n for _, n, _ in self.act_runs])
            rows.append(torch.cat([activations.flat(name, part).float().mean(dim=(1, 2))
                                   if activations.flat_region(name) else
                                   torch.full(part.shape[:1], math.nan, device=part.device)
                                   for (name, _, _), part in zip(self.act_runs, parts)]))
        return torch.stack(rows)


# --- training ----------------------------------------------------------------------------------
def train_batched(cfgs: list[RunConfig],
                  on_epoch: Callable[[float], None] | None = None) -> list[CellSummary]:
    """Train configs of one group (see `batch_groups`) together; a summary per config, in order.

    `on_epoch(fraction_done)` is called after each epoch.
    """
    cfgs = list(cfgs)
    if not cfgs:
        return []
    if len({shape_key(c) for c in cfgs}) > 1 or not all(can_batch(c) for c in cfgs):
        raise ValueError("train_batched needs configs of one shape; group them with "
                         "batch_groups()")
    seeds = sorted({c.seed for c in cfgs})
    probe = load_splits(cfgs[0].dataset, seed=seeds[0], max_train=cfgs[0].max_train,
                        noise=cfgs[0].noise)
    per_seed = probe.x_train.nbytes + probe.x_val.nbytes
    max_seeds = max(1, MAX_DATA_BYTES // max(per_seed, 1))
    if len(seeds) > max_seeds:  # too many distinct splits to hold at once: split the group
        out: dict[int, CellSummary] = {}
        for s in range(0, len(seeds), max_seeds):
            chunk = set(seeds[s:s + max_seeds])
            idx = [i for i, c in enumerate(cfgs) if c.seed in chunk]
            part = None if on_epoch is None else (  # progress over the whole request
                lambda f, before=len(out), m=len(idx): on_epoch((before + f * m) / len(cfgs)))
            out.update(zip(idx, train_batched([cfgs[i] for i in idx], part)))
        return [out[i] for i in range(len(cfgs))]
    with flushed_denormals():
        return _train_group(cfgs, on_epoch)


class _Data:
    """Each member's split on the device, one copy per distinct seed, uint8 until a batch is
    taken (as trainer.DeviceData), rows flattened so one index_select gathers all members."""

    def __init__(self, members: list[RunConfig], device: torch.device):
        base = members[0]
        seeds = sorted({c.seed for c in members})
        splits = [load_splits(base.dataset, seed=s, max_train=base.max_train, noise=base.noise)
                  for s in seeds]
        if len({(len(s.y_train), len(s.y_val)) for s in splits}) > 1:  # pragma: no cover
            raise ValueError("the splits of these seeds differ in size; train them apart")
        self.info = splits[0].info
        self.n_train, self.n_val = len(splits[0].y_train), len(splits[0].y_val)
        self.n_features = math.prod(self.info.input_shape)

        def rows(name: str) -> torch.Tensor:   # [seeds · examples, features]
            parts = [torch.as_tensor(getattr(s, name)) for s in splits]
            return torch.cat([p.reshape(len(p), -1) for p in parts]).to(device)

        def per_member(name: str) -> torch.Tensor:   # [K, 1, features]
            per_seed = torch.stack([torch.as_tensor(getattr(s, name)).float()
                                    .expand(self.info.input_shape).reshape(-1) for s in splits])
            return per_seed.to(device)[self.split_of].unsqueeze(1)
        self.split_of = torch.tensor([seeds.index(c.seed) for c in members], device=device)
        self.x_train, self.x_val = rows("x_train"), rows("x_val")
        self.y_train, self.y_val = rows("y_train")[:, 0], rows("y_val")[:, 0]
        self.mean, self.std = per_member("mean"), per_member("std")

    def _gather(self, x: torch.Tensor, n: int, idx: torch.Tensor) -> torch.Tensor:
        flat = (idx + (self.split_of * n)[:, None]).flatten()
        return x.index_select(0, flat).view(*idx.shape, *x.shape[1:])

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training rows idx [K, b] of each member's split: standardised inputs and labels."""
        x = self._gather(self.x_train, self.n_train, idx)
        return (x.float() - self.mean) / self.std, self._gather(self.y_train, self.n_train, idx)

    def val_chunks(self, K: int):
        chunk = max(1, EVAL_ELEMENTS // (K * self.n_features))
        for s in range(0, self.n_val, chunk):
            idx = torch.arange(s, min(s + chunk, self.n_val),
                               device=self.split_of.device).expand(K, -1)
            x = self._gather(self.x_val, self.n_val, idx)
            yield (x.float() - self.mean) / self.std, self._gather(self.y_val, self.n_val, idx)


def _member_losses(logits: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
    """Cross-entropy per member [K] (mean or sum over its examples)."""
    per_example = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    per_example = per_example.view(y.shape)
    return per_example.mean(1) if reduction == "mean" else per_example.sum(1)


def _train_group(cfgs: list[RunConfig], on_epoch) -> list[CellSummary]:
    t_start = time.perf_counter()
    # Members sorted into blocks (contiguous leaves), and by activation within a block.
    order = sorted(range(len(cfgs)), key=lambda k: (_block_key(cfgs[k], k), cfgs[k].activation,
                                                    k))
    members = [cfgs[k] for k in order]
    K, base = len(members), members[0]
    device = resolve_device(base.device)
    data = _Data(members, device)
    models, gens = [], []
    for cfg in members:
        models.append(build_model(cfg, data.info.input_shape, data.info.n_classes))
        gen = None
        if cfg.dropout > 0 and device.type == "cpu":
            # build_model seeded the global stream and drew the init from it; train()'s dropout
            # continues that stream, so the member's own generator starts from the same state.
            gen = torch.Generator().set_state(torch.get_rng_state())
        elif cfg.dropout > 0:  # other devices: a stream of the member's own, not train()'s
            gen = torch.Generator(device).manual_seed(cfg.seed)
        gens.append(gen)
    keys = [_block_key(cfg, k) for cfg, k in zip(members, order)]
    bounds = [0] + [k for k in range(1, K) if keys[k] != keys[k - 1]] + [K]
    blocks = [list(range(a, b)) for a, b in zip(bounds, bounds[1:])]
    net = _Stacked(members, models, blocks, gens, device)
    block_cfgs = [members[blk[0]] for blk in blocks]
    optimizers = [run_optimizer(cfg, net.block_params(j)) for j, cfg in enumerate(block_cfgs)]
    min_batch = 2 if base.batch_norm else 1
    B, n_train = base.batch_size, data.n_train
    n_steps = steps_per_epoch(n_train, B, min_batch)
    schedulers = [make_scheduler(cfg, opt, n_steps) for cfg, opt in zip(block_cfgs, optimizers)]
    shufflers = [torch.Generator().manual_seed(c.seed) for c in members]
    L = len(net.names)
    checks = torch.zeros((n_steps, 2 * L + 1, K), device=device)

    @torch.inference_mode()
    def evaluate() -> np.ndarray:
        """[loss, accuracy] × members on the validation split."""
        sums = torch.zeros((2, K), device=device)
        for xv, yv in data.val_chunks(K):
            logits, _ = net.forward(xv, training=False)
            sums[0] += _member_losses(logits, yv, "sum")
            sums[1] += (logits.argmax(-1) == yv).sum(1)
        return sums.cpu().numpy().astype(np.float64) / data.n_val

    rows: list[list[tuple]] = [[] for _ in range(K)]
    val = evaluate()
    for k in range(K):
        rows[k] += [(0, "val", "loss", val[0, k]), (0, "val", "accuracy", val[1, k])]
    active = np.ones(K, dtype=bool)
    diverged_step: list[int | None] = [None] * K
    out_grad0 = np.full((L, K), np.nan)
    flat = np.full((L - 1, K), np.nan)
    step = 0
    for epoch in range(1, base.epochs + 1):
        perms = torch.stack([torch.randperm(n_train, generator=g) for g in shufflers]).to(device)
        sums = torch.zeros((2, K), device=device)
        seen = 0
        for row in range(n_steps):
            idx = perms[:, row * B:(row + 1) * B]
            xb, yb = data.batch(idx)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            net.keep_outputs = step == 0 and row == 0
            logits, z = net.forward(xb, training=True)
            losses = _member_losses(logits, yb, "mean")
            losses.sum().backward()  # each member's gradient is that of its own mean loss
            if net.keep_outputs:   # once per group: one host copy is fine
                out_grad0 = torch.stack([torch.linalg.vector_norm(o.grad.flatten(1), dim=1)
                                         for o in net.outputs]).cpu().numpy().astype(np.float64)
                net.keep_outputs, net.outputs = False, []
            # As the recorder's per-step check: ‖∇W‖ per layer (before clipping), the largest
            # |activation input| per layer, the loss; to the host once per epoch. (Flattened
            # 1-D reductions: a 2-D vector_norm, the inf-norm above all, is far slower on CPUs.)
            torch.stack([*(torch.linalg.vector_norm(w.grad.flatten(1), dim=1)
                           for w in net.weights),
                         *(zi.detach().flatten(1).abs().amax(1) for zi in z),
                         losses.detach()], out=checks[row])
            for j, (cfg, opt) in enumerate(zip(block_cfgs, optimizers)):
                if cfg.clip_norm is not None:      # a block of one member: its own norm
                    nn.utils.clip_grad_norm_(net.block_params(j), cfg.clip_norm, foreach=True)
                elif cfg.clip_value is not None:   # elementwise: per member on a stack
                    nn.utils.clip_grad_value_(net.block_params(j), cfg.clip_value, foreach=True)
                opt.step()
            for sched, every in schedulers:
                if every == 1:
                    sched.step()
            sums[0] += losses.detach() * idx.shape[1]
            sums[1] += (logits.detach().argmax(-1) == yb).sum(1)
            seen += idx.shape[1]
            if epoch == base.epochs and row == n_steps - 1:  # the recorder's last record
                flat = net.flat(z).cpu().numpy().astype(np.float64)
        for sched, every in schedulers:
            if every > 1:
                sched.step()
        host = checks.cpu().numpy().astype(np.float64)
        bad = ~np.isfinite(host).all(axis=1)   # [steps, K]
        val = evaluate()
        fit = sums.cpu().numpy().astype(np.float64) / max(seen, 1)
        for k in np.flatnonzero(active):
            rows[k] += [(epoch, "val", "loss", val[0, k]), (epoch, "val", "accuracy", val[1, k]),
                        (epoch, "train", "loss", fit[0, k]),
                        (epoch, "train", "accuracy", fit[1, k])]
            if bad[:, k].any():  # as train(): the epoch is reported, then the member stops
                diverged_step[k] = step + int(np.argmax(bad[:, k]))
                active[k] = False
        step += n_steps
        if on_epoch:
            on_epoch(epoch / base.epochs)
        if not active.any():
            break
    seconds = (time.perf_counter() - t_start) / K
    out: list[CellSummary | None] = [None] * K
    for k, cfg in enumerate(members):
        div = diverged_step[k] is not None
        out[order[k]] = CellSummary(
            config=cfg, status="diverged" if div else "completed", layer_names=net.names,
            out_grad_norms=out_grad0[:, k].tolist(),
            flat=[math.nan] * (L - 1) if div else flat[:, k].tolist(),
            diverged_step=diverged_step[k],
            epochs=pd.DataFrame(rows[k], columns=EPOCH_COLUMNS),
            seconds=seconds, source="stacked", group_size=K)
    return out  # type: ignore[return-value]
