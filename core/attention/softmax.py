"""Softmax saturation in scaled dot-product attention, measured on real digit token sequences.

A digit image becomes a sequence of tokens (its 8 pixel rows, or its 2×2 / 4×4 patches). Query
and key projections of width d with weights N(0, 1/fan_in) give logits q·k whose variance
grows like d; dividing by √d (Vaswani et al. 2017) keeps it of order 1. Without it the softmax
saturates as d grows: the attention entropy falls toward 0, the largest weight toward 1, and
the softmax's Jacobian diag(p) − ppᵀ toward 0, so little gradient reaches the logits. (The
query/key weights' gradient is another matter: unscaled, ∂s/∂q carries a factor √d more.)

    cfg = AttentionConfig(d=256)
    table = softmax_saturation(cfg)     # tidy: sweep, d, logit_scale, variant, metric, value
    result = get_attention(cfg)         # a tiny attention classifier, scaled vs unscaled,
                                        # trained on digits (cached in the run store)

The settings are `core.attention.config.AttentionConfig`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from core import cache
from core.attention.config import (D_GRID, KEY_PREFIX, SCALE_GRID, TOKEN_SHAPES,
                                   AttentionConfig)
from core.budget import LAYER_STEP_COST, REQUEST_BASE, STEP_COST, Estimate
from core.cache import RunKind
from core.data.datasets import load_splits, nominal_sizes
from core.store import RunStore
from core.training import DeviceData, flushed_denormals, make_optimizer

VARIANTS = ("scaled", "unscaled")
N_SEQUENCES = 256   # digits whose attention the sweep averages over: enough for smooth curves
WIDTH = 32          # the classifier's token embedding (and value) width
CLASSES = 10        # the ten digits


# --- tokens -----------------------------------------------------------------------------------
def tokenize(images: torch.Tensor, kind: str) -> torch.Tensor:
    """[N, 1, 8, 8] images → [N, tokens, pixels per token], in reading order."""
    kernel = {"rows": (1, 8), "patch2": (2, 2), "patch4": (4, 4)}[kind]
    return F.unfold(images, kernel_size=kernel, stride=kernel).transpose(1, 2)


def digit_tokens(cfg: AttentionConfig, n: int = N_SEQUENCES) -> tuple[torch.Tensor, np.ndarray]:
    """The first `n` training digits of the seeded split, standardised, as token sequences."""
    splits = load_splits("digits", seed=cfg.seed)
    data = DeviceData(splits, torch.device("cpu"))
    return tokenize(data.prepare(data.x_train[:n]), cfg.tokens), splits.y_train[:n]


# --- softmax statistics -------------------------------------------------------------------------
SATURATED = 0.99    # a query whose largest weight exceeds this attends to one token alone


def jacobian_norm(p: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of the softmax Jacobian ∂p/∂z = diag(p) − ppᵀ, per row of p (last axis).

    Closed form, a few sums instead of an n×n matrix per query:
        ‖J‖²_F = Σ_i (p_i(1 − p_i))² + Σ_{i≠j} p_i²p_j² = Σ_i p_i² ((1 − p_i)² + Σ_{j≠i} p_j²)
    with 1 − p_i summed as Σ_{j≠i} p_j: every term is positive, so a nearly one-hot row (where
    1 − p_i would cancel to noise) keeps its tiny norm accurately. It is √(n−1)/n for uniform
    attention, at most 1/2 (two tokens sharing all weight), and → 0 as attention turns one-hot.
    """
    rest, rest_sq = _sum_of_others(p), _sum_of_others(p * p)
    return (p * p * (rest * rest + rest_sq)).sum(-1).sqrt()


def _sum_of_others(a: torch.Tensor) -> torch.Tensor:
    """Σ_{j≠i} a_j for every i of the last axis, as prefix + suffix sums (no subtraction)."""
    before = F.pad(a.cumsum(-1)[..., :-1], (1, 0))
    after = F.pad(a.flip(-1).cumsum(-1).flip(-1)[..., 1:], (0, 1))
    return before + after


def attention_stats(logits: torch.Tensor) -> dict[str, float]:
    """Over all queries: the softmax's mean entropy (nats), mean largest weight, mean and median
    Jacobian norm (Frobenius), the share of saturated queries (largest weight > 0.99), and the
    logits' mean spread (std over keys: softmax ignores a shift, so this is what it sees)."""
    return {m: float(v[0]) for m, v in _stats(logits.unsqueeze(0)).items()}


def _stats(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """`attention_stats` for each index of the first axis at once (one pass for a sweep)."""
    logits = logits.flatten(1, -2)                  # [settings, queries, keys]
    p = torch.softmax(logits, dim=-1)
    top = p.amax(-1)
    j = jacobian_norm(p)
    return {"entropy": torch.special.entr(p).sum(-1).mean(1),
            "max_weight": top.mean(1),
            "jacobian_norm": j.mean(1),
            "jacobian_median": j.median(1).values,
            "saturated": (top > SATURATED).double().mean(1),
            "logit_std": logits.std(-1).mean(1)}


def projections(token_dim: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Query and key weights [token_dim, d], N(0, 1/fan_in), in float64. Column j does not
    depend on d, so a wider projection extends a narrower one and the sweep over d is smooth."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(2, token_dim, max(d, D_GRID[-1]), generator=g, dtype=torch.float64)
    w /= math.sqrt(token_dim)
    return w[0, :, :d], w[1, :, :d]


def logit_matrix(token_dim: int, d: int, logit_scale: float, scaled: bool, seed: int
                 ) -> torch.Tensor:
    """M with logits = x M xᵀ: (x Wq)(x Wk)ᵀ = x (Wq Wkᵀ) xᵀ, a p×p matrix whatever d is,
    times 1/√d if scaled, times the logit scale."""
    wq, wk = projections(token_dim, d, seed)
    return wq @ wk.T * (logit_scale / math.sqrt(d) if scaled else logit_scale)


def logits_for(x: torch.Tensor, d: int, logit_scale: float, scaled: bool, seed: int
               ) -> torch.Tensor:
    """Attention logits [N, n, n] of token sequences x [N, n, p] through width-d projections."""
    return x @ logit_matrix(x.shape[-1], d, logit_scale, scaled, seed) @ x.transpose(-1, -2)


def softmax_saturation(cfg: AttentionConfig) -> pd.DataFrame:
    """Attention statistics of real digit sequences under random query/key projections.

    Two sweeps, each for both variants: over d (at cfg.logit_scale) and over the logit scale
    (at cfg.d). Columns: sweep, d, logit_scale, variant, metric, value, log_n (the entropy of
    uniform attention over the sequence's n tokens, the largest possible).
    """
    x, _ = digit_tokens(cfg)
    x = x.double()  # unscaled logits reach ~100: float32 would round p to exactly one-hot
    settings = [(sweep, d, scale, variant)
                for sweep, d, scale in [("d", d, cfg.logit_scale) for d in D_GRID]
                + [("logit_scale", cfg.d, s) for s in SCALE_GRID]
                for variant in VARIANTS]
    m = torch.stack([logit_matrix(x.shape[-1], d, scale, variant == "scaled", cfg.seed)
                     for _, d, scale, variant in settings])
    stats = _stats(torch.einsum("bip,spq,bjq->sbij", x, m, x))
    table = pd.DataFrame(settings, columns=["sweep", "d", "logit_scale", "variant"])
    table = pd.concat([table.assign(metric=name, value=v.numpy()) for name, v in stats.items()],
                      ignore_index=True)
    return table.assign(log_n=math.log(x.shape[1]))


def example_weights(cfg: AttentionConfig, index: int = 0) -> pd.DataFrame:
    """Attention weights of one real digit (the sweep's first) at cfg.d and cfg.logit_scale,
    both variants. Columns: variant, query, key, weight; `example_image` has its pixels."""
    x, _ = digit_tokens(cfg, n=index + 1)
    x = x[index:index + 1].double()
    parts = []
    for variant in VARIANTS:
        p = torch.softmax(logits_for(x, cfg.d, cfg.logit_scale, variant == "scaled", cfg.seed),
                          -1)[0]
        n = p.shape[0]
        parts.append(pd.DataFrame({"variant": variant, "query": np.repeat(np.arange(n), n),
                                   "key": np.tile(np.arange(n), n), "weight": p.flatten().numpy()}))
    return pd.concat(parts, ignore_index=True)


def example_image(cfg: AttentionConfig, index: int = 0) -> tuple[pd.DataFrame, int]:
    """The raw pixels (row, col, value 0–16) of the digit `example_weights` shows, its label."""
    splits = load_splits("digits", seed=cfg.seed)
    img = splits.x_train[index, 0]
    rr, cc = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    return (pd.DataFrame({"row": rr.ravel(), "col": cc.ravel(), "value": img.ravel()}),
            int(splits.y_train[index]))


# --- the classifier ---------------------------------------------------------------------------
class AttentionClassifier(nn.Module):
    """tokens → linear embedding + position → one single-head self-attention → mean → 10 classes.

    The attention itself is torch's `scaled_dot_product_attention`, with `scale` 1/√d (scaled)
    or 1 (unscaled), times the logit scale.
    """

    def __init__(self, n_tokens: int, token_dim: int, d: int, *, scaled: bool,
                 logit_scale: float, generator: torch.Generator):
        super().__init__()
        self.embed = nn.Linear(token_dim, WIDTH)
        self.position = nn.Parameter(torch.zeros(n_tokens, WIDTH))
        self.query = nn.Linear(WIDTH, d, bias=False)
        self.key = nn.Linear(WIDTH, d, bias=False)
        self.value = nn.Linear(WIDTH, WIDTH, bias=False)
        self.head = nn.Linear(WIDTH, CLASSES)
        self.scale = logit_scale / math.sqrt(d) if scaled else logit_scale
        # N(0, 1/fan_in) everywhere, so embedded tokens have unit variance and q·k has
        # variance ~d, the premise of 1/√d scaling; positions N(0, 1) like the tokens.
        for lin in (self.embed, self.query, self.key, self.value, self.head):
            nn.init.normal_(lin.weight, std=1 / math.sqrt(lin.in_features), generator=generator)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        nn.init.normal_(self.position, generator=generator)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.embed(x) + self.position
        return self.query(h), self.key(h), self.value(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.head(out.mean(1))

    def qk_parameters(self) -> list[nn.Parameter]:
        return [self.query.weight, self.key.weight]

    def other_parameters(self) -> list[nn.Parameter]:
        qk = {id(p) for p in self.qk_parameters()}
        return [p for p in self.parameters() if id(p) not in qk]


def build_classifier(cfg: AttentionConfig, variant: str, n_tokens: int, token_dim: int
                     ) -> AttentionClassifier:
    """The same initial weights for both variants (same seed): only the scaling differs."""
    return AttentionClassifier(n_tokens, token_dim, cfg.d, scaled=variant == "scaled",
                               logit_scale=cfg.logit_scale,
                               generator=torch.Generator().manual_seed(cfg.seed))


class TokenData(DeviceData):
    """The digit splits on the CPU; batches come out standardised and tokenised."""

    def __init__(self, cfg: AttentionConfig):
        super().__init__(load_splits("digits", seed=cfg.seed, max_train=cfg.max_train),
                         torch.device("cpu"))
        self.kind = cfg.tokens

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return tokenize(super().prepare(x), self.kind)


@dataclass
class AttentionResult:
    """Tidy tables of the two classifiers' training.

    epochs  variant, epoch, split (train/val), metric, value: loss and accuracy (train: the
            epoch's running mean; val: after the epoch), and on val the attention's mean
            entropy, max weight, share of saturated queries, and grad_logits (the mean per-query
            norm of one example's loss gradient at the attention logits). Epoch 0 is the
            network at initialisation.
    steps   variant, step, epoch, metric, value: loss, grad_qk (the joint norm of the query and
            key weights' gradients) and grad_rest (of every other parameter), before the update.
    """

    config: AttentionConfig
    epochs: pd.DataFrame
    steps: pd.DataFrame
    log_n: float
    seconds: float
    from_store: bool = dataclasses.field(default=False, compare=False)

    def final(self, variant: str, metric: str, split: str = "val") -> float:
        e = self.epochs
        rows = e[(e.variant == variant) & (e.split == split) & (e.metric == metric)]
        return float(rows.sort_values("epoch").value.iloc[-1]) if len(rows) else math.nan

    def at(self, variant: str, metric: str, epoch: int, split: str = "val") -> float:
        e = self.epochs
        rows = e[(e.variant == variant) & (e.split == split) & (e.metric == metric)
                 & (e.epoch == epoch)]
        return float(rows.value.iloc[0]) if len(rows) else math.nan

    def grad(self, variant: str, metric: str, epoch: int | None = None) -> float:
        """Median per-step gradient norm over an epoch (None: the whole run)."""
        s = self.steps
        rows = s[(s.variant == variant) & (s.metric == metric)]
        if epoch is not None:
            rows = rows[rows.epoch == epoch]
        return float(rows.value.median()) if len(rows) else math.nan

    def diverged(self, variant: str) -> bool:
        """Whether this variant's training loss became NaN or infinite at some step."""
        s = self.steps
        loss = s[(s.variant == variant) & (s.metric == "loss")].value
        return bool((~np.isfinite(loss.to_numpy(dtype=float))).any())

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "log_n": self.log_n, "seconds": self.seconds,
                "epochs": {c: self.epochs[c].tolist() for c in self.epochs.columns},
                "steps": {c: self.steps[c].tolist() for c in self.steps.columns}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AttentionResult":
        return cls(AttentionConfig(**data["config"]), pd.DataFrame(data["epochs"]),
                   pd.DataFrame(data["steps"]), float(data["log_n"]), float(data["seconds"]))


def train_attention(cfg: AttentionConfig,
                    on_progress: Callable[[int, int], None] | None = None) -> AttentionResult:
    """Train the scaled and the unscaled classifier; `on_progress(done, total)` per epoch."""
    start = time.perf_counter()
    data = TokenData(cfg)
    n_tokens, token_dim = data.prepare(data.x_train[:1]).shape[1:]
    epoch_rows: list[tuple] = []
    step_rows: list[tuple] = []
    with flushed_denormals():
        for i, variant in enumerate(VARIANTS):
            def progress(epoch: int, done_before: int = i * cfg.epochs) -> None:
                if on_progress:
                    on_progress(done_before + epoch, len(VARIANTS) * cfg.epochs)
            model = build_classifier(cfg, variant, n_tokens, token_dim)
            _train_one(cfg, variant, model, data, epoch_rows, step_rows, progress)
    cols = ["variant", "epoch", "split", "metric", "value"]
    return AttentionResult(cfg, pd.DataFrame(epoch_rows, columns=cols),
                           pd.DataFrame(step_rows, columns=["variant", "step", "epoch", "metric",
                                                            "value"]),
                           math.log(n_tokens), time.perf_counter() - start)


def _train_one(cfg, variant, model, data, epoch_rows, step_rows, progress) -> None:
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)
    qk, rest = model.qk_parameters(), model.other_parameters()
    generator = torch.Generator().manual_seed(cfg.seed)
    n_steps = math.ceil(len(data.y_train) / cfg.batch_size)
    # Per-step records stay tensors until the epoch ends: one host copy per epoch.
    grads = torch.zeros(n_steps, 3)
    epoch_rows += _evaluate(model, data, variant, 0)
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        loss_sum, correct, seen = torch.zeros(()), torch.zeros(()), 0
        for i, (xb, yb) in enumerate(data.batches(cfg.batch_size, generator, min_size=1)):
            optimizer.zero_grad(set_to_none=True)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            loss.backward()
            grads[i, 0] = loss.detach()
            grads[i, 1] = nn.utils.get_total_norm([p.grad for p in qk])
            grads[i, 2] = nn.utils.get_total_norm([p.grad for p in rest])
            optimizer.step()
            loss_sum += loss.detach() * len(yb)
            correct += (logits.detach().argmax(1) == yb).sum()
            seen += len(yb)
        for i, (loss_v, g_qk, g_rest) in enumerate(grads.tolist()):
            step_rows += [(variant, step + i + 1, epoch, "loss", loss_v),
                          (variant, step + i + 1, epoch, "grad_qk", g_qk),
                          (variant, step + i + 1, epoch, "grad_rest", g_rest)]
        step += n_steps
        epoch_rows += [(variant, epoch, "train", "loss", float(loss_sum) / seen),
                       (variant, epoch, "train", "accuracy", float(correct) / seen)]
        epoch_rows += _evaluate(model, data, variant, epoch)
        progress(epoch)


def _evaluate(model: AttentionClassifier, data: TokenData, variant: str, epoch: int) -> list:
    """Validation loss and accuracy, the attention's statistics, and the gradient that reaches
    the attention logits: the mean over queries of ‖∂ℓ/∂s_i‖, ℓ one example's loss and s_i
    one query's row of logits (SDPA hides its logits, so this pass spells attention out)."""
    model.eval()
    x, y = data.prepare(data.x_val), data.y_val
    with torch.inference_mode():
        logits = model(x)
        loss, accuracy = F.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean()
    q, k, v = model.qkv(x)
    s = q @ k.transpose(-1, -2) * model.scale
    out = torch.softmax(s, dim=-1) @ v
    per_example = F.cross_entropy(model.head(out.mean(1)), y, reduction="sum")
    (grad_s,) = torch.autograd.grad(per_example, s)
    stats = attention_stats(s.detach())
    model.train()
    return [(variant, epoch, "val", "loss", float(loss)),
            (variant, epoch, "val", "accuracy", float(accuracy)),
            (variant, epoch, "val", "entropy", stats["entropy"]),
            (variant, epoch, "val", "max_weight", stats["max_weight"]),
            (variant, epoch, "val", "saturated", stats["saturated"]),
            (variant, epoch, "val", "grad_logits",
             float(torch.linalg.vector_norm(grad_s, dim=-1).mean()))]


# --- the compute budget and the run cache -------------------------------------------------
def attention_work(v: Mapping[str, Any]) -> float:
    """Estimated multiply-adds of training both classifiers (scaled and unscaled) of an
    AttentionConfig's settings (`v`: its fields)."""
    n_tokens, token_dim = TOKEN_SHAPES[v["tokens"]]
    d = v["d"]
    macs = n_tokens * (token_dim * WIDTH + 2 * WIDTH * d + WIDTH * WIDTH) \
        + n_tokens * n_tokens * (d + WIDTH) + WIDTH * CLASSES
    n_train, n_val, _ = nominal_sizes("digits")
    n = min(v["max_train"] or n_train, n_train)
    epochs = v["epochs"]
    steps = epochs * math.ceil(n / v["batch_size"])
    # Each evaluation also back-propagates to the attention logits: ~3 passes.
    one = macs * (3 * n * epochs + 3 * n_val * (epochs + 1)) + steps * (STEP_COST
                                                                         + LAYER_STEP_COST * 5)
    return len(VARIANTS) * one


def attention_memory(v: Mapping[str, Any]) -> float:
    """Peak bytes training an AttentionConfig's two classifiers adds (one at a time): per
    example, the tokens' embeddings, queries, keys and values and the attention matrix, kept
    for backward with their gradients (the validation split is evaluated in one pass that
    back-propagates too); REQUEST_BASE."""
    n_tokens, token_dim = TOKEN_SHAPES[v["tokens"]]
    n_train, n_val, _ = nominal_sizes("digits")
    n = min(v["max_train"] or n_train, n_train)
    per_example = 4 * 3 * (n_tokens * (token_dim + 3 * WIDTH + 2 * v["d"])
                           + 3 * n_tokens * n_tokens)
    return REQUEST_BASE + max(min(v["batch_size"], n), n_val) * per_example


def attention_estimate(cfg: AttentionConfig) -> Estimate:
    """What training cfg's two classifiers costs, for the compute and memory budgets
    (core.budget)."""
    n_train = nominal_sizes("digits")[0]
    n = min(cfg.max_train or n_train, n_train)
    return Estimate(
        f"training both classifiers ({n:,} digits × {cfg.epochs} epochs, plus evaluation and "
        "per-step costs)", {**cfg.to_dict(), "max_train": n}, attention_work,
        (("epochs", "lower"), ("batch_size", "raise"), ("max_train", "lower"), ("d", "lower")),
        AttentionConfig.fields(),
        memory=attention_memory, memory_knobs=(("d", "lower"), ("batch_size", "lower")))


def attention_meta(result: AttentionResult) -> dict:
    """Small, listable facts about a classifier pair (kept beside the payload in the store)."""
    return {"kind": "attention", "changed": result.config.to_params(),
            "seconds": round(result.seconds, 3)}


# Stored and trained under the config with scaled=True: `scaled` only picks which variant the
# page highlights (see AttentionConfig.store_key), so one training serves both.
ATTENTION_RUN = RunKind("attention classifier", KEY_PREFIX, AttentionResult.from_dict,
                        attention_estimate, attention_meta, train_attention)


def cached_attention(cfg: AttentionConfig, store: RunStore | None = None
                     ) -> AttentionResult | None:
    """The stored classifier result for cfg, or None (an unreadable entry counts as missing)."""
    hit = cache.cached(ATTENTION_RUN, cfg.replace(scaled=True), store)
    return None if hit is None else dataclasses.replace(hit, config=cfg)


def get_attention(cfg: AttentionConfig, *, store: RunStore | None = None,
                  on_progress: Callable[[int, int], None] | None = None,
                  on_wait: Callable[[str], None] | None = None) -> AttentionResult:
    """The classifier result for cfg: from the run store, else trained now and stored.

    Concurrent callers asking for the same classifier wait for the first one's training; a
    request over the compute budget (core.budget) is refused with a ConfigError; `on_wait`
    hears its place while it queues for a training slot (core.cache)."""
    result = cache.obtain(ATTENTION_RUN, cfg.replace(scaled=True), store, on_progress, on_wait)
    return dataclasses.replace(result, config=cfg)
