"""`train(config) -> RunResult`: train the configured network on real data, recording as it goes.

    from core.lab.config import RunConfig
    from core.lab.trainer import train
    result = train(RunConfig(depth=10, activation="sigmoid", optimizer="sgd", lr=0.1))
    result.depth_ratio()       # first/last layer ‖∂L/∂z‖ at initialisation

Everything numeric is PyTorch's own: torch.optim optimizers, torch.optim.lr_scheduler schedules,
clip_grad_norm_/clip_grad_value_. The data lives on the device as uint8 and is standardised one
batch at a time. A run whose values become NaN/inf stops with status "diverged" and keeps what
was recorded up to the first bad step; one whose caller's `on_epoch` raises StopTraining (a Stop
button) ends after one more epoch (recording its end state, as a last epoch does) with status
"stopped", and keeps what it recorded. Beside the recorder: percentile traces of a few fixed
units (core.lab.unit_trace), validation every eval_every steps (core.lab.val_trace), and with
target_loss set, the step the loss criterion was met (core.lab.criterion), after whose epoch
the run ends.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.budget import MAX_LAYER_ROWS
from core.data.datasets import Splits, load_splits
from core.lab.config import VAL_TRACE_EXAMPLES, RunConfig
from core.lab.criterion import steps_to_target
from core.lab.metrics import LAYER_METRICS, PROBE_EXAMPLES
from core.lab.models import build_model
from core.lab.recorder import LayerRecorder
from core.lab.result import RunResult
from core.lab.unit_trace import UnitTrace
from core.lab.val_trace import ValidationTrace
from core.lab.sharpness import SHARPNESS_EXAMPLES, Sharpness
from core.tables import STOPPED
from core.training import (EVAL_BATCH, DeviceData, EpochReports, evaluate, flushed_denormals,
                           loss_of, make_optimizer, resolve_device, steps_per_epoch)

RECORDS_PER_EPOCH = 50      # with record_every unset: enough points for smooth charts
# Decision-boundary resolution for 2-D data: 64×64 points per epoch (40×40 drew visible blocks
# on a 380 px square); 200 epochs of it are 0.8M rows, within the memory budget (runs.run_memory).
BOUNDARY_GRID = 64


def record_interval(record_every: int | None, n_steps: int, epochs: int, layers: int) -> int:
    """Steps between records: as asked, else about RECORDS_PER_EPOCH an epoch, fewer where a
    long, deep run would record more layer-table rows than MAX_LAYER_ROWS (a download stays
    small; an explicit record_every over the cap is refused instead, core.budget)."""
    if record_every:
        return record_every
    rows_a_record = layers * len(LAYER_METRICS)
    # Besides every `every`-th step, each epoch records its first and last step, and the
    # epoch's count of records rounds up: three records an epoch beyond steps / every.
    left = MAX_LAYER_ROWS - 3 * epochs * rows_a_record
    floor = math.ceil(epochs * n_steps * rows_a_record / left) if left > 0 else n_steps
    return max(1, n_steps // RECORDS_PER_EPOCH, floor)


def run_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    """A RunConfig's optimizer, with its momentum, betas, ε and weight decay."""
    return make_optimizer(cfg.optimizer, params, cfg.lr, momentum=cfg.momentum,
                          betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                          weight_decay=cfg.weight_decay)


def make_scheduler(cfg: RunConfig, optimizer: torch.optim.Optimizer, n_steps: int):
    """(scheduler, steps per scheduler step); None for a constant learning rate."""
    sched = torch.optim.lr_scheduler
    match cfg.schedule:
        case "exponential":
            return sched.ExponentialLR(optimizer, gamma=cfg.lr_decay), n_steps
        case "cosine":
            return sched.CosineAnnealingLR(optimizer, T_max=n_steps * cfg.epochs), 1
        case "cyclic":
            # One triangle per two epochs between lr/10 and lr; Adam has no `momentum` to cycle.
            return sched.CyclicLR(optimizer, base_lr=cfg.lr / 10, max_lr=cfg.lr,
                                  step_size_up=max(1, n_steps), cycle_momentum=False), 1
    return None, 0


def gradient_norms(params: list[nn.Parameter]) -> list[torch.Tensor]:
    """‖∇p‖ of every parameter (zero where a parameter got no gradient), in one multi-tensor
    pass: the recorder, the total norm and clipping all use these, so none redoes them."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    return torch._foreach_norm(grads)


def clip_gradients(cfg: RunConfig, params: list[nn.Parameter],
                   norms: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip as configured, given each parameter's gradient norm; return (total gradient norm
    before clipping, whether it clipped). torch's clip_grad_norm_ is get_total_norm followed by
    clip_grads_with_norm_; the first is done here from the norms already taken."""
    total = torch.linalg.vector_norm(torch.stack(norms))
    if cfg.clip_norm is not None:
        nn.utils.clip_grads_with_norm_(params, cfg.clip_norm, total)
        return total, total > cfg.clip_norm
    if cfg.clip_value is not None:
        grads = [p.grad for p in params if p.grad is not None]
        largest = nn.utils.get_total_norm(grads, norm_type=float("inf"))
        nn.utils.clip_grad_value_(params, cfg.clip_value)
        return total, largest > cfg.clip_value
    return total, torch.zeros((), dtype=torch.bool, device=total.device)


def boundary_grid(x_raw: torch.Tensor, n: int = BOUNDARY_GRID) -> torch.Tensor:
    """An n×n grid of raw input points covering the data with a margin (row-major, y outer).

    Square, the same span on both axes around the data's centre, so the decision boundary is
    drawn at equal x and y scales (not stretched to the data's aspect)."""
    lo, hi = x_raw.min(0).values, x_raw.max(0).values
    mid, half = (lo + hi) / 2, 0.6 * float((hi - lo).max())
    xs = torch.linspace(float(mid[0]) - half, float(mid[0]) + half, n, device=x_raw.device)
    ys = torch.linspace(float(mid[1]) - half, float(mid[1]) + half, n, device=x_raw.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.flatten(), gy.flatten()], dim=1)


@torch.inference_mode()
def predict_proba(model: nn.Module, data: DeviceData, points: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    p = torch.softmax(model(data.prepare(points)), dim=1)[:, 1]
    model.train(was_training)
    return p


def boundary_table(grid: torch.Tensor | None, parts: list) -> pd.DataFrame:
    columns = ["epoch", "x", "y", "p"]
    if grid is None or not parts:
        return pd.DataFrame(columns=columns)
    xy = grid.cpu().numpy()
    return pd.DataFrame({
        "epoch": np.repeat([e for e, _ in parts], len(xy)),
        "x": np.tile(xy[:, 0], len(parts)),
        "y": np.tile(xy[:, 1], len(parts)),
        "p": np.concatenate([p for _, p in parts]),
    })


def points_table(splits: Splits) -> pd.DataFrame:
    """The 2-D data itself (raw coordinates), so the playground can draw it over the boundary."""
    parts = []
    for split, x, y in (("train", splits.x_train, splits.y_train),
                        ("val", splits.x_val, splits.y_val),
                        ("test", splits.x_test, splits.y_test)):
        parts.append(pd.DataFrame({"x": x[:, 0], "y": x[:, 1], "label": y, "split": split}))
    return pd.concat(parts, ignore_index=True)


def train(cfg: RunConfig, on_epoch: Callable[[RunResult], None] | None = None) -> RunResult:
    """Train and record. `on_epoch(partial_result)` is called after every epoch (and at init);
    if it raises StopTraining, the run ends after the next epoch, which records the run's end
    state (core.training)."""
    with flushed_denormals():
        return _train(cfg, on_epoch)


def _train(cfg: RunConfig, on_epoch: Callable[[RunResult], None] | None) -> RunResult:
    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    splits = load_splits(cfg.dataset, seed=cfg.seed, max_train=cfg.max_train, noise=cfg.noise)
    data = DeviceData(splits, device)
    model = build_model(cfg, splits.info.input_shape, splits.info.n_classes).to(device)
    params = list(model.parameters())
    optimizer = run_optimizer(cfg, params)
    min_batch = 2 if cfg.batch_norm else 1
    n_steps = steps_per_epoch(len(splits.y_train), cfg.batch_size, min_batch)
    scheduler, sched_every = make_scheduler(cfg, optimizer, n_steps)
    every = record_interval(cfg.record_every, n_steps, cfg.epochs, len(model.layers))
    generator = torch.Generator().manual_seed(cfg.seed)
    epoch_rows: list[tuple] = []
    status = "completed"
    early_stop: dict | None = None
    reached: int | None = None   # the step the loss criterion was met at (target_loss)
    best = (float("inf"), 0)  # (validation loss, epoch)
    grid = boundary_grid(data.x_train) if splits.info.input_shape == (2,) else None
    boundary_parts: list = []
    points = points_table(splits) if grid is not None else pd.DataFrame(
        columns=["x", "y", "label", "split"])
    # The fixed probe set dead units are measured on (the training split is already shuffled).
    probe = data.x_train[:PROBE_EXAMPLES]
    # Sharpness on one fixed batch, so its curve follows the weights, not the batches.
    sharp = Sharpness(model, cfg.sharpness_every) if cfg.sharpness_every else None
    sharp_batch = ((data.prepare(data.x_train[:SHARPNESS_EXAMPLES]),
                    data.y_train[:SHARPNESS_EXAMPLES]) if sharp else None)

    def log_eval(epoch: int, train_sums=None, n_train_seen: int = 0) -> float:
        """Record the epoch's summary; return the validation loss."""
        # One host copy for the whole epoch's summary.
        sums = [*evaluate(model, data, data.x_val, data.y_val, cfg.loss)]
        if train_sums is not None:
            sums += list(train_sums)
        values = torch.stack(sums).cpu().tolist()
        if grid is not None:
            boundary_parts.append((epoch, predict_proba(model, data, grid).cpu().numpy()))
        rec.probe_dead(epoch, (data.prepare(probe[i:i + EVAL_BATCH])
                               for i in range(0, len(probe), EVAL_BATCH)))
        n_val = len(splits.y_val)
        epoch_rows.extend([(epoch, "val", "loss", values[0] / n_val),
                           (epoch, "val", "accuracy", values[1] / n_val)])
        if train_sums is not None:
            epoch_rows.extend([(epoch, "train", "loss", values[2] / n_train_seen),
                               (epoch, "train", "accuracy", values[3] / n_train_seen)])
        return values[0] / n_val

    def snapshot(train_seconds: float) -> RunResult:
        tables = rec.tables()
        seen = len(splits.y_train) * max(0, epochs_done)
        return RunResult(
            config=cfg, status=status, device=str(device),
            dataset={**asdict(splits.info), "input_shape": list(splits.info.input_shape),
                     "class_names": list(splits.info.class_names)},
            layer_names=list(model.layers.keys()),
            n_params=sum(p.numel() for p in params),
            timing={"seconds": time.perf_counter() - t_start - reports.seconds,
                    "train_seconds": train_seconds,
                    "samples_per_sec": seen / train_seconds if train_seconds > 0 else 0.0},
            divergence=rec.divergence,
            early_stop=early_stop,
            steps_to_target=reached,
            val_trace=trace.table(),
            **(units.tables(last_step=rec.divergence["step"] if rec.divergence else None)
               if units else {}),
            epochs=pd.DataFrame(epoch_rows, columns=["epoch", "split", "metric", "value"]),
            boundary=boundary_table(grid, boundary_parts),
            points=points,
            **tables,
            **({"sharpness": sharp.table(rec.divergence["step"] if rec.divergence
                                         else math.inf)} if sharp else {}),
        )

    train_seconds = 0.0
    epochs_done = 0
    reports = EpochReports(on_epoch)

    def report() -> None:
        reports(lambda: snapshot(train_seconds))
    # The fixed validation subset of eval_every, measured with the recorder's hooks quiet.
    val_x, val_y = data.x_val[:VAL_TRACE_EXAMPLES], data.y_val[:VAL_TRACE_EXAMPLES]

    def measure_val() -> torch.Tensor:
        with rec.quiet():
            return torch.stack(evaluate(model, data, val_x, val_y, cfg.loss)) / len(val_y)
    trace = ValidationTrace(cfg.eval_every, measure_val, device)
    # Opt-in: its percentiles (a top-k per layer) cost 2-3 ms a recorded step of the seed
    # model, the largest single recording cost (issue 19's profile).
    units = (UnitTrace(model, record_every=every, seed=cfg.seed, total_steps=n_steps * cfg.epochs)
             if cfg.percentile_traces else None)
    with LayerRecorder(model, record_every=every) as rec, units or contextlib.nullcontext():
        log_eval(0)
        report()
        for epoch in range(1, cfg.epochs + 1):
            t_epoch = time.perf_counter()
            model.train()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device)
            seen = 0
            # With early stopping any epoch may be the last: record each epoch's end state
            # (kept only if no epoch follows). A stop asked for ends the run after the next
            # epoch, which records it, so a stopped run ends as a full one does.
            stopping = reports.stop_asked
            rec.start_epoch(epoch, n_steps,
                            final=(epoch == cfg.epochs or cfg.patience is not None or stopping
                                   or cfg.target_loss is not None))
            trace.start_epoch(n_steps)
            if epoch == 1:
                trace.after_update(0)
            for xb, yb in data.batches(cfg.batch_size, generator, min_size=min_batch):
                if sharp and sharp.due(rec.step):   # at the weights this step's loss sees
                    with rec.quiet():
                        sharp.measure(rec.step, lambda: loss_of(cfg.loss, model(sharp_batch[0]),
                                                                sharp_batch[1]))
                optimizer.zero_grad(set_to_none=True)
                logits = model(xb)
                loss = loss_of(cfg.loss, logits, yb)
                loss.backward()
                norms = gradient_norms(params)           # before clipping
                rec.after_backward(loss, norms)
                rec.after_clip(*clip_gradients(cfg, params, norms))
                optimizer.step()
                rec.after_step(optimizer.param_groups[0]["lr"])
                trace.after_update(rec.step)
                if sched_every == 1:
                    scheduler.step()
                loss_sum += loss.detach() * len(yb)
                correct += (logits.detach().argmax(1) == yb).sum()
                seen += len(yb)
            if sched_every > 1:
                scheduler.step()
            diverged = rec.end_epoch()
            trace.end_epoch()
            if sharp:
                sharp.take()   # with the recorder's copy: the queue is already drained
            train_seconds += time.perf_counter() - t_epoch
            epochs_done = epoch
            val_loss = log_eval(epoch, (loss_sum, correct), seen)
            if diverged:
                status = "diverged"
            elif cfg.patience is not None:
                if val_loss < best[0]:
                    best = (val_loss, epoch)
                elif epoch - best[1] >= cfg.patience and epoch < cfg.epochs:
                    early_stop = {"epoch": epoch, "best_epoch": best[1],
                                  "best_val_loss": best[0], "patience": cfg.patience}
            if cfg.target_loss is not None and not diverged:
                reached = steps_to_target(rec.step_table(), cfg.target_loss)
            report()
            if diverged or early_stop or reached is not None:
                break
            if stopping and epoch < cfg.epochs:
                status = STOPPED
                break
        if status == "completed":
            test_loss, test_correct = (v.item() for v in evaluate(model, data, data.x_test,
                                                                  data.y_test, cfg.loss))
            n_test = len(splits.y_test)
            epoch_rows.extend([(epochs_done, "test", "loss", test_loss / n_test),
                               (epochs_done, "test", "accuracy", test_correct / n_test)])
        return snapshot(train_seconds)
