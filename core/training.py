"""What every family's training shares: the device, the data on it, evaluation, weight
initialisations and optimizers by name, and the denormal flush.

The Lab's trainer (core/lab/trainer.py), the recurrent and attention lessons train through these,
so a batch, an evaluation or an "adam" means the same thing in each.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from core.data.datasets import Splits
from core.optimizer_choices import BETAS, EPS, MOMENTUM
from core.settings import ConfigError

EVAL_BATCH = 2048



class StopTraining(Exception):
    """Raised by a trainer's `on_epoch` callback (a Stop button) to end the run, keeping
    everything recorded: its status is then "stopped". The trainer hears it after an epoch and
    trains one more, which records the end state (its last step's per-layer statistics and
    histograms) as a run's last epoch does, so a stopped run draws like a full one; asked at
    initialisation, the run stops after its first epoch."""


class EpochReports:
    """A trainer's calls of its caller's `on_epoch(snapshot)` (a page drawing the run so far):
    the time they take is the caller's, not training (`seconds`, which the run's timing leaves
    out), and a StopTraining one raises sets `stop_asked`, which the trainer's loop reads at the
    next epoch. None: nothing to call, and the snapshot is not built."""

    def __init__(self, on_epoch: Callable[[Any], None] | None):
        self.on_epoch, self.seconds, self.stop_asked = on_epoch, 0.0, False

    def __call__(self, snapshot: Callable[[], Any]) -> None:
        if self.on_epoch is None:
            return
        t = time.perf_counter()
        try:
            self.on_epoch(snapshot())
        except StopTraining:
            self.stop_asked = True
        self.seconds += time.perf_counter() - t


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA, then MPS, then CPU; an explicit device that is missing is an error."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ConfigError("device", f"{name} is not available on this machine; use auto or cpu")
    return torch.device(name)


class DeviceData:
    """The splits as device tensors; images stay uint8 until a batch is taken."""

    def __init__(self, splits: Splits, device: torch.device):
        def put(a):
            return torch.as_tensor(a).to(device)
        self.x_train, self.y_train = put(splits.x_train), put(splits.y_train)
        self.x_val, self.y_val = put(splits.x_val), put(splits.y_val)
        self.x_test, self.y_test = put(splits.x_test), put(splits.y_test)
        self.mean = put(splits.mean).float()
        self.std = put(splits.std).float()

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std

    def batches(self, batch_size: int, generator: torch.Generator, *, min_size: int):
        n = len(self.y_train)
        order = torch.randperm(n, generator=generator).to(self.x_train.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < min_size:
                break  # batch norm cannot normalise a single example
            yield self.prepare(self.x_train[idx]), self.y_train[idx]


def steps_per_epoch(n_train: int, batch_size: int, min_size: int) -> int:
    full, rest = divmod(n_train, batch_size)
    return full + (1 if rest >= min_size else 0)


def init_weights_(w: torch.Tensor, scheme: str, *, sigma_w2: float = 2.0) -> None:
    """Initialise the weight tensor `w` ([out, in, …]) in place by the scheme's name: the Lab's
    layers and the recurrent lesson's hidden-to-hidden blocks mean the same by each name.
    `sigma_w2` is the mean-field variance: W ~ N(0, σ_w²/fan_in)."""
    fan_in = w[0].numel()
    match scheme:
        case "zeros":
            nn.init.zeros_(w)
        case "normal_small":
            nn.init.normal_(w, 0.0, 0.01)
        case "normal_large":
            nn.init.normal_(w, 0.0, 1.0)
        case "xavier_normal":
            nn.init.xavier_normal_(w)
        case "xavier_uniform":
            nn.init.xavier_uniform_(w)
        case "he_normal":
            nn.init.kaiming_normal_(w, nonlinearity="relu")
        case "he_uniform":
            nn.init.kaiming_uniform_(w, nonlinearity="relu")
        case "orthogonal":
            nn.init.orthogonal_(w)
        case "mean_field":
            nn.init.normal_(w, 0.0, math.sqrt(sigma_w2 / fan_in))
        case "pytorch_default":
            # nn.Linear's and nn.Conv2d's own reset_parameters() call: U(±1/√fan_in), drawn
            # as torch draws it, so a seed gives torch's weights.
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        case other:  # pragma: no cover - the configs validate the name
            raise ValueError(f"init: unknown scheme {other!r}")


def pytorch_default_bias_(b: torch.Tensor, w: torch.Tensor) -> None:
    """Bias `b` of the layer whose weight is `w`, as nn.Linear/nn.Conv2d's reset_parameters()
    draws it (after the weight): U(±1/√fan_in)."""
    fan_in = w[0].numel()
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    nn.init.uniform_(b, -bound, bound)


def make_optimizer(name: str, params, lr: float, *, momentum: float = MOMENTUM,
                   betas: tuple[float, float] = BETAS, eps: float = EPS,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The torch.optim optimizer called `name` (OPTIMIZERS); RMSprop's smoothing α
    is betas[1]; `eps` is Adam's, AdamW's and RMSprop's ε (Adagrad keeps torch's own 1e-10)."""
    # foreach: one multi-tensor update for all parameters instead of a Python loop over them
    # (torch only picks it by default on CUDA; on the CPU it is ~3× faster for small nets).
    common = dict(lr=lr, weight_decay=weight_decay, foreach=True)
    match name:
        case "sgd":
            return torch.optim.SGD(params, **common)
        case "momentum":
            return torch.optim.SGD(params, momentum=momentum, **common)
        case "nesterov":
            return torch.optim.SGD(params, momentum=momentum, nesterov=True, **common)
        case "adagrad":
            return torch.optim.Adagrad(params, **common)
        case "rmsprop":
            return torch.optim.RMSprop(params, alpha=betas[1], eps=eps, **common)
        # Adam's fused kernel (CPU, CUDA and MPS) does the whole update in one pass: ~2.5×
        # faster than foreach per step for the Lab's nets on the CPU.
        case "adam":
            return torch.optim.Adam(params, betas=betas, eps=eps,
                                    **{**common, "foreach": None, "fused": True})
        case "adamw":
            return torch.optim.AdamW(params, betas=betas, eps=eps,
                                     **{**common, "foreach": None, "fused": True})
    raise ConfigError("optimizer", f"unknown optimizer {name!r}")  # pragma: no cover


def loss_of(kind: str, logits: torch.Tensor, y: torch.Tensor,
            reduction: str = "mean") -> torch.Tensor:
    """The training loss by name, per example averaged ("mean") or summed ("sum") over the batch.

    "cross_entropy": softmax cross-entropy of the logits. "mse": squared error of the outputs
    against the one-hot target, averaged over the classes (torch's mse_loss), so an example's
    loss is (1/C) Σ_c (z_c − [c = y])²; the summed form divides by C for the same per-example
    loss."""
    if kind == "cross_entropy":
        return F.cross_entropy(logits, y, reduction=reduction)
    if kind == "mse":
        target = F.one_hot(y, logits.shape[1]).to(logits.dtype)
        loss = F.mse_loss(logits, target, reduction=reduction)
        return loss / logits.shape[1] if reduction == "sum" else loss
    raise ConfigError("loss", f"unknown loss {kind!r}; use cross_entropy or mse")


@torch.inference_mode()
def evaluate(model: nn.Module, data: DeviceData, x: torch.Tensor, y: torch.Tensor,
             loss_kind: str = "cross_entropy"):
    """(summed loss, correct count) as device tensors: no host sync here."""
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=y.device)
    correct = torch.zeros((), device=y.device)
    for start in range(0, len(y), EVAL_BATCH):
        logits = model(data.prepare(x[start:start + EVAL_BATCH]))
        yb = y[start:start + EVAL_BATCH]
        loss += loss_of(loss_kind, logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    return loss, correct


@contextlib.contextmanager
def flushed_denormals():
    """Vanishing gradients are, literally, tiny floats: below 1e-38 the CPU computes on denormals
    up to ~10× slower. Flushing them to zero changes nothing a chart can show. The CPU flag is
    process state that other code relies on (numpy, hypothesis), so it is restored afterwards."""
    was_on = torch.tensor(1e-40).mul(1.0).item() == 0.0
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_on)
