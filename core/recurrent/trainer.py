"""Recurrent networks on real images read as sequences, and the gradient through time.

    from core.recurrent.trainer import RecurrentConfig, get_recurrent_run
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
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from core import cache
from core.budget import STEP_COST, TIME_STEP_COST, Estimate
from core.cache import RunKind
from core.data.datasets import load_splits, nominal_sizes
from core.recurrent.config import SIDES, RecurrentConfig
from core.store import RunStore
from core.tables import TrainedRun, table_from_dict, table_to_dict
from core.training import (DeviceData, evaluate, flushed_denormals, make_optimizer,
                           resolve_device, steps_per_epoch)

__all__ = ["RecurrentConfig", "RecurrentResult", "SequenceClassifier", "build_recurrent",
           "train_recurrent", "get_recurrent_run", "cached_recurrent_run"]

# With record_every unset; each record costs a step-by-step forward (~1.5×).
RECURRENT_RECORDS_PER_EPOCH = 20
EVAL_LIMIT = 2000       # validation and test images evaluated: the accuracies settle long before
CELL_MODULES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # hidden-to-hidden blocks stacked in weight_hh
RECURRENT_TABLES = ("epochs", "steps", "time_grads")


# --- the model ------------------------------------------------------------------------------
class SequenceClassifier(nn.Module):
    """Images [B, 1, H, W] → sequences [B, T, pixels per step] → nn.RNN/LSTM/GRU → linear."""

    def __init__(self, cfg: RecurrentConfig, n_classes: int):
        super().__init__()
        self.seq_len, self.step_size = cfg.seq_len, cfg.step_size
        # nn.RNN's default nonlinearity is tanh: the vanilla RNN of the vanishing-gradient story.
        self.rnn = CELL_MODULES[cfg.cell](cfg.step_size, cfg.hidden, num_layers=cfg.layers,
                                          batch_first=True)
        self.head = nn.Linear(cfg.hidden, n_classes)

    def sequences(self, images: torch.Tensor) -> torch.Tensor:
        """Rows or chunks in reading order: a reshape of the row-major image."""
        return images.reshape(len(images), self.seq_len, self.step_size)

    def forward(self, images: torch.Tensor, states: list | None = None) -> torch.Tensor:
        """Logits. With a list `states`, run step by step and append each step's hidden state
        [layers, B, hidden] (gradient retained): the tensors whose .grad is ∂L/∂h_t."""
        x = self.sequences(images)
        if states is None:
            out, _ = self.rnn(x)
            return self.head(out[:, -1])
        state = None
        for t in range(self.seq_len):
            _, state = self.rnn(x[:, t:t + 1], state)
            h = state[0] if isinstance(state, tuple) else state   # LSTM: (h, c)
            h.retain_grad()
            states.append(h)
        return self.head(h[-1])


def build_recurrent(cfg: RecurrentConfig, n_classes: int) -> SequenceClassifier:
    """The seeded model with its recurrent weights and gate biases initialised as configured."""
    torch.manual_seed(cfg.seed)
    model = SequenceClassifier(cfg, n_classes)
    rnn, hidden = model.rnn, cfg.hidden
    with torch.no_grad():
        for layer in range(cfg.layers):
            # One [hidden, hidden] block per gate, so "orthogonal" means orthogonal per gate.
            for block in getattr(rnn, f"weight_hh_l{layer}").chunk(GATES[cfg.cell]):
                match cfg.recurrent_init:
                    case "orthogonal":
                        nn.init.orthogonal_(block)
                    case "xavier_normal":
                        nn.init.xavier_normal_(block)
                    case "normal_small":
                        nn.init.normal_(block, 0.0, 0.01)
                    case "normal_large":
                        nn.init.normal_(block, 0.0, 1.0)
            if cfg.cell != "rnn" and cfg.forget_bias is not None:
                # Gate order: LSTM (input, forget, cell, output), GRU (reset, update, new); the
                # gate that keeps the old state is the second in both. Two biases add up.
                keep = slice(hidden, 2 * hidden)
                nn.init.constant_(getattr(rnn, f"bias_ih_l{layer}")[keep], cfg.forget_bias)
                nn.init.zeros_(getattr(rnn, f"bias_hh_l{layer}")[keep])
    return model


def time_grad_norms(states: list[torch.Tensor]) -> torch.Tensor:
    """[T] ‖∂L/∂h_t‖ of the top layer (Frobenius over batch and units), on the device."""
    return torch.linalg.vector_norm(torch.stack([h.grad[-1] for h in states]), dim=(1, 2))


# --- the result -----------------------------------------------------------------------------
@dataclass
class RecurrentResult(TrainedRun):
    """Tidy tables of one run.

    epochs      epoch, split (train/val/test), metric (loss/accuracy), value; epoch 0 = at init
    steps       step, epoch, loss, grad_norm (total, before clipping), clipped (0/1)
    time_grads  step, epoch, t (1…T), value = ‖∂L/∂h_t‖ (see the module's docstring)
    Step s sees the weights after s updates; an epoch's first step shows the state after the
    epoch before.
    """

    config: RecurrentConfig
    status: str                     # "completed" | "diverged"
    device: str
    dataset: dict[str, Any]
    n_params: int
    timing: dict[str, float]
    divergence: dict[str, Any] | None
    epochs: pd.DataFrame
    steps: pd.DataFrame
    time_grads: pd.DataFrame
    from_store: bool = field(default=False, compare=False)

    def time_ratio(self) -> pd.DataFrame:
        """step, epoch, ratio = ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ at every recorded step."""
        tg = self.time_grads
        if tg.empty:
            return pd.DataFrame(columns=["step", "epoch", "ratio"])
        wide = tg.pivot_table(index=["step", "epoch"], columns="t", values="value",
                              dropna=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = wide[wide.columns.min()] / wide[wide.columns.max()]
        return ratio.rename("ratio").reset_index()

    def ratio_at_init(self) -> float:
        r = self.time_ratio()
        return float(r.ratio.iloc[0]) if len(r) else float("nan")

    def median_ratio(self) -> float:
        """The median over training of ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ (non-finite records left out)."""
        r = self.time_ratio().ratio.to_numpy(dtype=float)
        r = r[np.isfinite(r)]
        return float(np.median(r)) if len(r) else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "key": self.key, "status": self.status,
                "device": self.device, "dataset": self.dataset, "n_params": self.n_params,
                "timing": self.timing, "divergence": self.divergence,
                **{name: table_to_dict(getattr(self, name)) for name in RECURRENT_TABLES}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RecurrentResult":
        return cls(config=RecurrentConfig.from_dict(data["config"]), status=data["status"],
                   device=data["device"], dataset=dict(data["dataset"]),
                   n_params=int(data["n_params"]), timing=dict(data["timing"]),
                   divergence=data["divergence"],
                   **{name: table_from_dict(data[name]) for name in RECURRENT_TABLES})


# --- training -------------------------------------------------------------------------------
def train_recurrent(cfg: RecurrentConfig,
                    on_epoch: Callable[[RecurrentResult], None] | None = None) -> RecurrentResult:
    """Train and record; `on_epoch(partial_result)` after every epoch (and at init)."""
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
    train_seconds = callback_seconds = 0.0

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
            timing={"seconds": time.perf_counter() - t_start - callback_seconds,
                    "train_seconds": train_seconds, "record_every": every},
            divergence=divergence,
            epochs=pd.DataFrame(epoch_rows, columns=["epoch", "split", "metric", "value"]),
            steps=_concat(step_parts, ["step", "epoch", "loss", "grad_norm", "clipped"]),
            time_grads=_concat(grad_parts, ["step", "epoch", "t", "value"]))

    def report() -> None:
        nonlocal callback_seconds
        if on_epoch:
            t = time.perf_counter()
            on_epoch(snapshot())
            callback_seconds += time.perf_counter() - t

    log_eval(0)
    report()
    first_step = 0
    for epoch in range(1, cfg.epochs + 1):
        t_epoch = time.perf_counter()
        model.train()
        rows = _recorded_rows(n_steps, every, final=epoch == cfg.epochs)
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


def recurrent_estimate(cfg: RecurrentConfig) -> Estimate:
    """What training cfg costs, for the compute budget (core.budget)."""
    n_train = nominal_sizes(cfg.dataset)[0]
    n = min(cfg.max_train or n_train, n_train)
    return Estimate(
        f"this run ({n:,} sequences of {cfg.seq_len} steps × {cfg.epochs} epochs, plus "
        "evaluation and per-step costs)", {**cfg.to_dict(), "max_train": n}, recurrent_work,
        (("epochs", "lower"), ("max_train", "lower"), ("batch_size", "raise"),
         ("hidden", "lower"), ("layers", "lower")), RecurrentConfig.fields())


def recurrent_meta(result: RecurrentResult) -> dict:
    """Small, listable facts about a run (kept beside the payload in the store)."""
    return {"kind": "recurrent", "changed": result.config.changed(), "status": result.status,
            "val_accuracy": result.final("val", "accuracy"),
            "seconds": round(result.timing["seconds"], 3), "device": result.device}


RECURRENT_RUN = RunKind("recurrent run", "rnn-", RecurrentResult.from_dict, recurrent_estimate,
                        recurrent_meta, train_recurrent)


def cached_recurrent_run(cfg: RecurrentConfig,
                         store: RunStore | None = None) -> RecurrentResult | None:
    """The stored result for this config, or None. An unreadable entry counts as missing."""
    return cache.cached(RECURRENT_RUN, cfg, store)


def get_recurrent_run(cfg: RecurrentConfig, store: RunStore | None = None,
                      on_epoch: Callable[[RecurrentResult], None] | None = None
                      ) -> RecurrentResult:
    """The result for `cfg`: from the store if present, else trained now and stored.

    Concurrent callers asking for the same config wait for the first one's training; a run over
    the compute budget (core.budget) is refused with a ConfigError.
    """
    return cache.obtain(RECURRENT_RUN, cfg, store, on_epoch)
