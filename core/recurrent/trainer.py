"""Recurrent networks on real images read as sequences, and the gradient through time.

    from core.recurrent.config import RecurrentConfig
    from core.recurrent.trainer import get_recurrent_run
    result = get_recurrent_run(RecurrentConfig(cell="rnn"))   # trains once, then from the store
    result.time_ratio()        # ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ at every recorded step

torch's own nn.RNN (tanh), nn.LSTM and nn.GRU read the image a row (or a chunk of pixels) per
time step; a linear layer classifies the top layer's last hidden state. Training uses
torch.optim, clip_grad_norm_ and the Training Lab's data handling (uint8 on the device,
standardised per batch).

What `time_grads` holds: L is the batch-mean cross-entropy and h_t the top layer's hidden state
after time step t, a [batch, hidden] tensor. value = ‖∂L/∂h_t‖, the Frobenius norm over the
batch and the hidden units of the total derivative of L with respect to h_t, through every
later step. Not the per-example mean: the ratio between time steps is the same either way.

Why a step-by-step forward on the recording steps: nn.RNN runs the whole sequence in one op, and
the output tensor it returns is not what its next step reads (the recurrence stays inside the
op), so the gradient with respect to output[:, t] holds only the direct path to the loss, zero
for t < T here. On a recording step the same module is called one time step at a time, so each
call's returned state is the tensor the next call consumes, and `retain_grad()` on it gives
∂L/∂h_t through the future. The other steps use the fused call: same weights, same function.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from core import cache
from core.budget import REQUEST_BASE, STEP_COST, TIME_STEP_COST, Estimate
from core.cache import RunKind
from core.data.datasets import load_splits, nominal_sizes
from core.optimizer_choices import OPTIMIZER_SLOTS
from core.recurrent.config import KEY_PREFIX, SIDES, RecurrentConfig
from core.recurrent.model import GATES, build_recurrent
from core.recurrent.result import RecurrentResult
from core.store import RunStore
from core.tables import STOPPED
from core.training import (DeviceData, EpochReports, evaluate, flushed_denormals,
                           make_optimizer, resolve_device, steps_per_epoch)

# With record_every unset; each record costs a step-by-step forward (~1.5×).
RECURRENT_RECORDS_PER_EPOCH = 20
EVAL_LIMIT = 2000       # validation and test images evaluated: the accuracies settle long before


def time_grad_norms(states: list[torch.Tensor]) -> torch.Tensor:
    """[T] ‖∂L/∂h_t‖ of the top layer (Frobenius over batch and units), on the device."""
    return torch.linalg.vector_norm(torch.stack([h.grad[-1] for h in states]), dim=(1, 2))


# --- training -------------------------------------------------------------------------------
def train_recurrent(cfg: RecurrentConfig,
                    on_epoch: Callable[[RecurrentResult], None] | None = None) -> RecurrentResult:
    """Train and record; `on_epoch(partial_result)` after every epoch (and at init). If it
    raises StopTraining, the run ends after the next epoch with status "stopped"
    (core.training)."""
    with flushed_denormals():
        return _train(cfg, on_epoch)


def _clip(cfg: RecurrentConfig, params: list[nn.Parameter]) -> tuple[torch.Tensor, torch.Tensor]:
    """(total gradient norm before clipping, whether clipping changed it), on the device."""
    if cfg.clip_norm is None:
        total = nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        return total, torch.zeros_like(total)
    total = nn.utils.clip_grad_norm_(params, cfg.clip_norm)
    return total, (total > cfg.clip_norm).to(total.dtype)


def _recorded_rows(n_steps: int, every: int, final: bool) -> list[int]:
    rows = list(range(0, n_steps, every))
    if final and rows[-1] != n_steps - 1:
        rows.append(n_steps - 1)   # the state the run ends with
    return rows


def _train(cfg: RecurrentConfig, on_epoch) -> RecurrentResult:
    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    splits = load_splits(cfg.dataset, seed=cfg.seed, max_train=cfg.max_train)
    data = DeviceData(splits, device)
    model = build_recurrent(cfg, splits.info.n_classes).to(device)
    params = list(model.parameters())
    # The Training Lab's optimizers: its defaults for momentum (0.9) and Adam's betas.
    optimizer = make_optimizer(cfg.optimizer, params, cfg.lr)
    n_steps = steps_per_epoch(len(splits.y_train), cfg.batch_size, 1)
    every = cfg.record_every or max(1, n_steps // RECURRENT_RECORDS_PER_EPOCH)
    generator = torch.Generator().manual_seed(cfg.seed)
    x_val, y_val = data.x_val[:EVAL_LIMIT], data.y_val[:EVAL_LIMIT]
    T = cfg.seq_len
    epoch_rows: list[tuple] = []
    step_parts: list[pd.DataFrame] = []
    grad_parts: list[pd.DataFrame] = []
    status, divergence = "completed", None
    train_seconds = 0.0

    def log_eval(epoch: int, train_sums=None, n_seen: int = 0) -> None:
        values = torch.stack([*evaluate(model, data, x_val, y_val),
                              *(train_sums or ())]).cpu().tolist()   # one host copy
        epoch_rows.extend([(epoch, "val", "loss", values[0] / len(y_val)),
                           (epoch, "val", "accuracy", values[1] / len(y_val))])
        if train_sums is not None:
            epoch_rows.extend([(epoch, "train", "loss", values[2] / n_seen),
                               (epoch, "train", "accuracy", values[3] / n_seen)])

    def snapshot() -> RecurrentResult:
        info = {**asdict(splits.info), "input_shape": list(splits.info.input_shape),
                "class_names": list(splits.info.class_names),
                "n_val_evaluated": len(y_val), "n_test_evaluated": min(EVAL_LIMIT, len(
                    splits.y_test)), "seq_len": T, "step_size": cfg.step_size}
        return RecurrentResult(
            config=cfg, status=status, device=str(device), dataset=info,
            n_params=sum(p.numel() for p in params),
            timing={"seconds": time.perf_counter() - t_start - reports.seconds,
                    "train_seconds": train_seconds, "record_every": every},
            divergence=divergence,
            epochs=pd.DataFrame(epoch_rows, columns=["epoch", "split", "metric", "value"]),
            steps=_concat(step_parts, ["step", "epoch", "loss", "grad_norm", "clipped"]),
            time_grads=_concat(grad_parts, ["step", "epoch", "t", "value"]))

    reports = EpochReports(on_epoch)   # a Stop button: end after the next epoch

    def report() -> None:
        reports(snapshot)

    log_eval(0)
    report()
    first_step = 0
    for epoch in range(1, cfg.epochs + 1):
        t_epoch = time.perf_counter()
        model.train()
        stopping = reports.stop_asked   # asked for: this epoch is the last, and records its end
        rows = _recorded_rows(n_steps, every, final=epoch == cfg.epochs or stopping)
        slot = {row: i for i, row in enumerate(rows)}
        # Filled on the device step by step and copied to the host once, at the epoch's end.
        step_buf = torch.full((n_steps, 3), float("nan"), device=device)
        grad_buf = torch.full((len(rows), T), float("nan"), device=device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        for row, (xb, yb) in enumerate(data.batches(cfg.batch_size, generator, min_size=1)):
            states = [] if row in slot else None
            optimizer.zero_grad(set_to_none=True)
            logits = model(xb, states)
            loss = F.cross_entropy(logits, yb)
            loss.backward()
            if states is not None:
                grad_buf[slot[row]] = time_grad_norms(states)
            total, clipped = _clip(cfg, params)
            optimizer.step()
            step_buf[row] = torch.stack([loss.detach(), total, clipped])
            loss_sum += loss.detach() * len(yb)
            correct += (logits.detach().argmax(1) == yb).sum()
            seen += len(yb)
        values = step_buf.cpu().numpy().astype(np.float64)
        grads = grad_buf.cpu().numpy().astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(values[:, :2]).all(axis=1))
        n = int(bad[0]) + 1 if bad.size else n_steps   # keep the first bad step, drop the rest
        step_parts.append(pd.DataFrame({
            "step": np.arange(first_step, first_step + n), "epoch": epoch,
            "loss": values[:n, 0], "grad_norm": values[:n, 1], "clipped": values[:n, 2]}))
        kept = [i for i, row in enumerate(rows) if row < n]
        grad_parts.append(pd.DataFrame({
            "step": np.repeat([first_step + rows[i] for i in kept], T), "epoch": epoch,
            "t": np.tile(np.arange(1, T + 1), len(kept)), "value": grads[kept].reshape(-1)}))
        train_seconds += time.perf_counter() - t_epoch
        if bad.size:
            where = "loss" if not np.isfinite(values[bad[0], 0]) else "gradient norm"
            step = first_step + int(bad[0])
            status = "diverged"
            divergence = {"step": step, "epoch": epoch, "where": where,
                          "message": f"non-finite values first appeared at step {step} "
                                     f"(epoch {epoch}) in the {where}"}
            report()  # a broken network's epoch metrics would mean nothing: none are logged
            break
        log_eval(epoch, (loss_sum, correct), seen)
        first_step += n_steps
        report()
        if stopping and epoch < cfg.epochs:
            status = STOPPED
            break
    if status == "completed":
        x_test, y_test = data.x_test[:EVAL_LIMIT], data.y_test[:EVAL_LIMIT]
        test_loss, test_correct = torch.stack(evaluate(model, data, x_test, y_test)).tolist()
        epoch_rows.extend([(cfg.epochs, "test", "loss", test_loss / len(y_test)),
                           (cfg.epochs, "test", "accuracy", test_correct / len(y_test))])
    return snapshot()


def _concat(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


# --- the compute budget and the run cache -------------------------------------------------
CLASSES = 10    # every sequence dataset's (digits, MNIST, Fashion-MNIST)


def recurrent_work(v: Mapping[str, Any]) -> float:
    """Estimated multiply-adds of training a RecurrentConfig's settings (`v`: its fields)."""
    side = SIDES[v["dataset"]]
    step_size = side if v["sequence"] == "rows" else v["chunk"]
    T = side * side // step_size
    h, layers = v["hidden"], v["layers"]
    per_step = sum(GATES[v["cell"]] * h * ((step_size if i == 0 else h) + h)
                   for i in range(layers))
    macs = T * per_step + h * CLASSES
    n_train, n_val, n_test = nominal_sizes(v["dataset"])
    n = min(v["max_train"] or n_train, n_train)
    epochs = v["epochs"]
    steps = epochs * math.ceil(n / v["batch_size"])
    evaluated = min(EVAL_LIMIT, n_val) * (epochs + 1) + min(EVAL_LIMIT, n_test)
    return (macs * (3 * n * epochs + evaluated)
            + steps * (STEP_COST + TIME_STEP_COST * layers * T))


def recurrent_memory(v: Mapping[str, Any]) -> float:
    """Peak bytes training a RecurrentConfig's settings adds: parameters with their gradients
    and optimizer state; every time step's gates and states kept for backward (twice on a
    recording step, whose step-by-step forward keeps each h_t); an evaluation chunk's layer
    outputs and the first layer's input gates, which the CPU kernels take for every step at
    once; the data as floats;
    REQUEST_BASE."""
    side = SIDES[v["dataset"]]
    step_size = side if v["sequence"] == "rows" else v["chunk"]
    T = side * side // step_size
    h, layers, gates = v["hidden"], v["layers"], GATES[v["cell"]]
    params = sum(gates * h * ((step_size if i == 0 else h) + h + 2) for i in range(layers))
    state = 4 * (params + h * CLASSES) * (5 + OPTIMIZER_SLOTS[v["optimizer"]])
    n_train, n_val, n_test = nominal_sizes(v["dataset"])
    n = min(v["max_train"] or n_train, n_train)
    per_sequence = 4 * T * (layers * h * 2 * (gates + 6) + step_size)
    training = min(v["batch_size"], n) * per_sequence
    evaluation = min(EVAL_LIMIT, max(n_val, n_test)) * 4 * T * (gates * h + 2 * layers * h
                                                                + step_size)
    data = (n + n_val + n_test) * side * side * 4
    return REQUEST_BASE + state + max(training, evaluation) + data


def recurrent_estimate(cfg: RecurrentConfig) -> Estimate:
    """What training cfg costs, for the compute and memory budgets (core.budget)."""
    n_train = nominal_sizes(cfg.dataset)[0]
    n = min(cfg.max_train or n_train, n_train)
    return Estimate(
        f"this run ({n:,} sequences of {cfg.seq_len} steps × {cfg.epochs} epochs, plus "
        "evaluation and per-step costs)", {**cfg.to_dict(), "max_train": n}, recurrent_work,
        (("epochs", "lower"), ("max_train", "lower"), ("batch_size", "raise"),
         ("hidden", "lower"), ("layers", "lower")), RecurrentConfig.fields(),
        memory=recurrent_memory, memory_knobs=(("batch_size", "lower"), ("hidden", "lower"),
                                               ("layers", "lower")))


def recurrent_meta(result: RecurrentResult) -> dict:
    """Small, listable facts about a run (kept beside the payload in the store)."""
    return {"kind": "recurrent", "changed": result.config.changed(), "status": result.status,
            "val_accuracy": result.final("val", "accuracy"),
            "seconds": round(result.timing["seconds"], 3), "device": result.device}


RECURRENT_RUN = RunKind("recurrent run", KEY_PREFIX, RecurrentResult.from_dict,
                        recurrent_estimate, recurrent_meta, train_recurrent)


def cached_recurrent_run(cfg: RecurrentConfig, store: RunStore | None = None, *,
                         stopped: bool = False) -> RecurrentResult | None:
    """The stored result for this config, or None. An unreadable entry counts as missing, and
    so does a run its user stopped unless `stopped`."""
    return cache.cached(RECURRENT_RUN, cfg, store, stopped=stopped)


def get_recurrent_run(cfg: RecurrentConfig, store: RunStore | None = None,
                      on_epoch: Callable[[RecurrentResult], None] | None = None,
                      on_wait: Callable[[str], None] | None = None, *,
                      stopped: bool = False) -> RecurrentResult:
    """The result for `cfg`: from the store if present, else trained now and stored.

    Concurrent callers asking for the same config wait for the first one's training; a run over
    the compute budget (core.budget) is refused with a ConfigError; `on_wait(message)` hears
    its place while it queues for a training slot (core.cache).
    """
    return cache.obtain(RECURRENT_RUN, cfg, store, on_epoch, on_wait, stopped=stopped)
