"""The gradient doctor: findings computed from a run's records, each with evidence and fixes.

    for f in diagnose(result):
        f.title, f.evidence          # "Vanishing gradients", "… ‖∂L/∂z‖ is 6.2e-07 of …"
        f.fixes[0].apply(result.config)   # a new RunConfig with the fix applied

Every number in a finding comes from the run's own tables and uses the catalogue's words
(core.lab.metrics), so a finding agrees with the chart and headline beside it. The thresholds
are named here, once, with the measurements that set them. A fix is offered only where applying
it clears the finding it sits under on the lessons' runs (tests/lab/test_doctor.py runs them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from core.lab.config import ConfigError, RunConfig
from core.lab.metrics import CATALOGUE, DEPTH_RATIO, FLAT_WHEN, points, power, readable
from core.lab.result import RunResult
from core.lab.sharpness import beyond_edge

VANISHING_RATIO = 1e-3     # depth ratio ‖∂L/∂z₁‖/‖∂L/∂z_out‖ below this: vanishing
EXPLODING_RATIO = 1e3      # … above this: exploding towards the input
# grad:data ‖∇W‖/‖W‖ at initialisation, every layer alike (uniform vanishing or explosion, which
# a ratio between layers cannot see). Healthy lesson runs measure 0.05–8; a 30-layer ReLU net
# with Xavier init at most 1.3e-5; the exploding lesson at least 3e5.
TINY_GRAD_DATA = 1e-3
HUGE_GRAD_DATA = 1e2
SATURATED_SHARE = 0.3      # share of saturated (example, unit) pairs, mean over the hidden layers,
                           # worth a warning
ASYMPTOTE = 0.1            # a sigmoid layer's mean activation within this of 0 or 1
DEAD_SHARE = 0.25          # share of dead units, mean over the hidden layers, worth a warning
# One hidden layer more than half saturated or dead is worth the same warning whatever the mean:
# a mean hides it in a deep net (one layer 80% dead among nine healthy ones is 8%). On the Lab's
# nets death and saturation spread through the layers: the lessons on seeds 0-4 end with no
# layer above 38% dead or 23% saturated, and of 29 ReLU runs (SGD and Adam at learning rates up
# to killing units) and 12 tanh runs (large initial weights or steps) measured, those with a
# layer past half dead or saturated were past the mean's threshold too. So it changes no
# lesson's findings; in a model of one's own (core.watch) one layer can die alone, behind a
# bias initialised negative, say.
LAYER_SHARE = 0.5
UPDATE_DATA = CATALOGUE["update_data_ratio"]
UPDATE_RATIO_HIGH = 3e-2   # update:data far above its rule of thumb (UPDATE_DATA.target)
# Below the healthy band the Weights & ratios chart shades (1e-4): the lowest median of a lesson
# run that learns is 3.4e-4 (overfitting, seeds 0-4); a 12-layer ReLU net under Xavier init at
# SGD's lr 0.01 measured 3.8e-5 and moved its validation loss from 2.30 to 2.29 in six epochs,
# while the doctor, warning only below 1e-5, said its steps were a healthy size.
UPDATE_RATIO_LOW = UPDATE_DATA.healthy[0]
# What raising the learning rate aims the median at: inside the band, not at its 1e-3 target,
# as a larger jump risks a divergence the doctor would then have caused.
UPDATE_RAISE_TO = 3e-4
# The first step's training loss over ln(classes), a uniform guess's cross-entropy (Karpathy's
# "verify loss @ init"): the lessons start at 1.0-5.0 times it (a residual MLP of sigmoids at
# 5.0); a 10-block residual ReLU MLP under He init at 106 times, its last block's activations
# 60 times the first's, as each block adds its branch's variance to the stream.
INIT_LOSS = 10.0
# "About chance": within three standard errors, √(p(1 − p)/n), of a uniform guess's accuracy p
# on the run's n validation examples: 14.8% for ten classes on digits' 359 (a rule of 1.5 times
# chance said 15%), 60.6% for two classes on a toy set's 200 points (it said 75%, and called a
# spiral at 64% "about chance (50%)").
CHANCE_ERRORS = 3.0
CLIPPED_SHARE = 0.5        # clipping on more than half the steps hides a scale problem
SPIKE = 10.0               # a gradient norm this many times its median over the steps before
SPIKE_WINDOW = 50          # … the steps the median looks back over
COLLAPSE = 0.15            # validation accuracy falling this far below its best after a spike
GAP = 0.1                  # train − val accuracy worth calling overfitting, when the losses agree:
LOSS_GAP = 0.5             # training loss below this share of the validation loss, or
VAL_RISE = 0.1             # validation loss ending this far above its best
SATURATING = {"sigmoid", "tanh"}
RELU_LIKE = {"relu", "leaky_relu", "elu", "gelu", "selu", "silu", "softplus"}


@dataclass(frozen=True)
class Fix:
    label: str
    changes: dict[str, Any] = field(hash=False)

    def apply(self, cfg: RunConfig) -> RunConfig:
        return cfg.replace(**self.changes)

    def advice(self) -> str:
        """The fix as words, for a run no button can retrain (the CLI's, a watched loop's):
        "switch to ReLU + He init (activation=relu, init=he_normal)"."""
        settings = ", ".join(f"{name}={RunConfig.format_setting(name, value)}"
                             for name, value in self.changes.items())
        return f"{self.label[0].lower()}{self.label[1:]} ({settings})"


@dataclass(frozen=True)
class Finding:
    id: str
    severity: str            # "error" | "warning" | "info"
    title: str
    evidence: str
    fixes: tuple[Fix, ...] = ()


def diagnose(result: RunResult) -> list[Finding]:
    """Findings, most serious first. An empty list means nothing looks wrong. Made once per run
    object (findings are frozen): each session shown a run from memory asks again."""
    return list(result.derived("doctor", _diagnose))


def all_clear(result: RunResult) -> str:
    """What no findings mean for this run, in the checks' own terms and with its numbers.

    The saturation and dead-unit checks read the hidden layers' mean and their most flat layer;
    both are given, the latter beside the Lab's headline of the most saturated (or inactive)
    layer. ("No layer is mostly saturated or dead" once claimed what no check measured.)"""
    measured = [(f"0% of their {what} in every layer" if f"{shares.max():.0%}" == "0%" else
                 f"{shares.mean():.0%} of their {what} on average, {shares.max():.0%} at most "
                 f"({_named(shares.idxmax())})", f"{limit:.0%}")
                for shares, what, limit in ((_last_shares(result, "saturation"),
                                             "outputs saturated", SATURATED_SHARE),
                                            (_last_shares(result, "dead"), "units dead",
                                             DEAD_SHARE))
                if shares is not None]
    layers = (f" The hidden layers end with {' and '.join(m for m, _ in measured)}; the doctor "
              f"warns above {' and '.join(t for _, t in measured)} on average, or "
              f"{LAYER_SHARE:.0%} in any one layer." if measured else "")
    upd = _median(result, "update_data_ratio")
    steps = (f" (the median {UPDATE_DATA.label} is {readable(upd)}; the doctor warns below "
             f"{power(UPDATE_RATIO_LOW)} or above {power(UPDATE_RATIO_HIGH)})"
             if upd is not None else "")
    return ("Nothing looks wrong: gradients reach every layer at a healthy scale, and the steps "
            f"are a healthy size{steps}.{layers}")


def _diagnose(result: RunResult) -> tuple[Finding, ...]:
    found: list[Finding] = []
    for check in _CHECKS:
        finding = check(result, found)
        if finding is not None:
            found.append(finding)
    return tuple(found)


# --- fixes ------------------------------------------------------------------------------------
def _fixes(cfg: RunConfig, *fixes: Fix | None) -> tuple[Fix, ...]:
    """Only fixes that change something and give a valid config (e.g. lr stays in range)."""
    out = []
    for fix in fixes:
        if fix is None:
            continue
        try:
            if fix.apply(cfg) != cfg:
                out.append(fix)
        except ConfigError:
            continue
    return tuple(out)


def _init_fix(cfg: RunConfig) -> Fix | None:
    """The initialisation that keeps the signal's scale for the run's activation: He for the
    ReLU family, Xavier for the others (a linear net under He init still doubles its variance
    per layer)."""
    init, label = (("he_normal", "Use He initialisation") if cfg.activation in RELU_LIKE
                   else ("xavier_normal", "Use Xavier initialisation"))
    return None if cfg.init == init else Fix(label, {"init": init})


def _clip(cfg: RunConfig) -> Fix:
    return Fix("Clip the gradient norm at 1.0", {"clip_norm": 1.0, "clip_value": None})


def _lower_lr(cfg: RunConfig) -> Fix:
    return Fix(f"Lower the learning rate to {cfg.lr / 10:g}", {"lr": cfg.lr / 10})


def _batch_norm(cfg: RunConfig) -> Fix | None:
    return None if cfg.batch_norm else Fix("Enable batch norm", {"batch_norm": True})


def _relu_he(cfg: RunConfig) -> Fix | None:
    return None if cfg.activation in RELU_LIKE else Fix(
        "Switch to ReLU + He init", {"activation": "relu", "init": "he_normal"})


# --- the checks, in the order findings are listed ---------------------------------------------
def _diverged(r: RunResult, found: list[Finding]) -> Finding | None:
    if not r.diverged:
        return None
    d, cfg = r.divergence, r.config
    # Exploding at initialisation: the scale is the cause, and a smaller step does not fix it
    # (the exploding lesson diverges at lr/10, and under Xavier init at its lr).
    scale = _exploding_at_init(r) is not None
    return Finding(
        "diverged", "error", "The run diverged",
        f"Loss or activations became NaN/inf at step {d['step']} (epoch {d['epoch']})"
        + (f", first in the {d['where']} of {_named(d['layer'])}" if d.get("layer") else "")
        + f". The largest gradient norm before that was {readable(_max_grad(r), 3)}.",
        _fixes(cfg, _clip(cfg), _batch_norm(cfg) if scale else _lower_lr(cfg)))


def _exploding_at_init(r: RunResult) -> str | None:
    """Evidence of gradients exploding at initialisation, or None."""
    ratio = r.depth_ratio(0) if len(r.layers) else math.nan
    if math.isfinite(ratio) and ratio > EXPLODING_RATIO:
        return (f"At initialisation the gradient back-propagated to the first layer's output is "
                f"{ratio:.1e} times the gradient at the output ({DEPTH_RATIO.label.lower()}): "
                f"it grows layer by layer on its way to the input.")
    gd = _init_grad_data(r)
    if gd is not None and gd.min() > HUGE_GRAD_DATA:
        return (f"At initialisation every layer's weight gradient is at least {gd.min():.1e} "
                f"times the size of its weights (grad:data {CATALOGUE['grad_data_ratio'].symbol}"
                f"): any step of a usual size throws the weights far away.")
    return None


def _exploding(r: RunResult, found: list[Finding]) -> Finding | None:
    evidence = _exploding_at_init(r)
    if evidence is None:
        return None
    cfg = r.config
    return Finding("exploding", "error", "Exploding gradients", evidence,
                   _fixes(cfg, _init_fix(cfg), _batch_norm(cfg)))


def _init_loss(r: RunResult, found: list[Finding]) -> Finding | None:
    """Outputs blown up at initialisation, read from the first step's loss: told apart from
    exploding gradients (found above, with the same fixes), it is the forward pass's scale."""
    cfg = r.config
    if getattr(cfg, "loss", None) != "cross_entropy" or r.steps.empty \
            or "exploding" in {f.id for f in found}:
        return None
    n_classes = int(r.dataset.get("n_classes", 10))
    first = float(r.steps.loss.iloc[0])
    uniform = math.log(n_classes)
    if not first > INIT_LOSS * uniform:   # NaN too: a run that diverged at once
        return None
    std = r.layer_metric("act_std").drop(columns="output", errors="ignore")
    grows = ""
    if len(std) and std.shape[1] > 1:
        start = std.iloc[0]
        grows = (f" At initialisation the hidden activations' spread grows from std "
                 f"{readable(start.iloc[0])} in {_named(start.index[0])} to "
                 f"{readable(start.iloc[-1])} in {_named(start.index[-1])}.")
    return Finding(
        "init_loss", "warning", "Huge loss at initialisation",
        f"The first step's training loss is {readable(first, 3)}, {first / uniform:.0f} times "
        f"ln {n_classes} = {uniform:.2f}, the cross-entropy of a uniform guess over {n_classes} "
        f"classes: the network starts out with huge outputs, confidently wrong.{grows}",
        # Not the initialisation on a residual net: its blocks add their branches' variance to
        # the stream whatever keeps each branch's scale (He instead of Xavier took a 10-block
        # ReLU net from 18 to 106 times ln 10); batch norm took it to 4 times.
        _fixes(cfg, _init_fix(cfg) if cfg.model != "residual_mlp" else None, _batch_norm(cfg)))


def _too_sharp(r: RunResult, found: list[Finding]) -> Finding | None:
    """The learning rate too large for the loss's curvature (core.lab.sharpness.beyond_edge),
    told from exploding gradients by the gradient's growth through depth at that step."""
    edge = beyond_edge(r) if "exploding" not in {f.id for f in found} else None
    if edge is None:
        return None
    g = r.layer_metric("out_grad_norm")
    g = g[g.index <= edge["step"]]
    ratio = float(g.iloc[-1, 0] / g.iloc[-1, -1]) if g.shape[0] and g.shape[1] > 1 else math.nan
    if ratio > EXPLODING_RATIO:
        return None
    depth = (f" At step {int(g.index[-1])} the gradient at the first layer's output was "
             f"{readable(ratio)} times the output layer's ({DEPTH_RATIO.symbol}): it was not "
             f"growing through depth, as exploding gradients do." if math.isfinite(ratio) else "")
    risen = (f"rose to {edge['rise_loss']:.3g}" if math.isfinite(edge["rise_loss"])
             else "stopped being finite")
    return Finding(
        "too_sharp", "warning", "Learning rate too large for this curvature",
        f"At step {edge['step']} the sharpness (top Hessian eigenvalue of the loss) was "
        f"{edge['sharpness']:.3g}, {edge['sharpness'] / edge['threshold']:.1f}× the threshold "
        f"{edge['label']} = {edge['threshold']:.3g}, above which gradient descent at this "
        f"learning rate is unstable along that direction of the loss's quadratic approximation "
        f"(Cohen et al. 2021); by step {edge['rise_step']} the training loss {risen}, above its "
        f"{edge['start_loss']:.3g} at the first step.{depth}",
        _fixes(r.config, _lower_lr(r.config)))


def _vanishing(r: RunResult, found: list[Finding]) -> Finding | None:
    g = r.layer_metric("out_grad_norm")
    if g.empty or g.shape[1] < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (g.iloc[:, 0] / g.iloc[:, -1]).replace([np.inf, -np.inf], np.nan).dropna()
    ratio = ratio[ratio > 0]
    if not len(ratio) or ratio.median() >= VANISHING_RATIO:
        return None
    cfg = r.config
    return Finding(
        "vanishing", "error", "Vanishing gradients",
        f"At initialisation the gradient back-propagated to the first layer's output, "
        f"‖∂L/∂z‖, is {r.depth_ratio(0):.1e} of the gradient at the output "
        f"({DEPTH_RATIO.label.lower()}); over training its median is {ratio.median():.1e}. "
        f"The first layers get almost no learning signal.",
        _fixes(cfg, _relu_he(cfg),
               _init_fix(cfg) if cfg.activation in RELU_LIKE else None,
               _batch_norm(cfg),
               Fix("Add residual connections", {"model": "residual_mlp"})
               if cfg.model == "mlp" else None))


def _tiny_gradients(r: RunResult, found: list[Finding]) -> Finding | None:
    gd = _init_grad_data(r)
    if gd is None or r.diverged or gd.max() >= TINY_GRAD_DATA:
        return None
    cfg = r.config
    losses = _losses(r, "val")   # none for a watched loop (core.watch): its data is its own
    return Finding(
        "tiny_gradients", "error", "Tiny gradients in every layer",
        f"At initialisation no layer's weight gradient is more than {gd.max():.1e} of its "
        f"weights (grad:data), in all {len(gd)} layers: the signal is lost in both directions, "
        f"forward and back."
        + (f" The validation loss went from {losses.iloc[0]:.2f} to {losses.iloc[-1]:.2f} in "
           f"{int(losses.index[-1])} epochs." if len(losses) else ""),
        _fixes(cfg, _init_fix(cfg), _batch_norm(cfg)))


def _saturated(r: RunResult, found: list[Finding]) -> Finding | None:
    shares = _last_shares(r, "saturation")
    if shares is None or not _flagged(shares, SATURATED_SHARE):
        return None
    cfg = r.config
    where = f"near the {cfg.activation}'s asymptotes"
    worst, layer = shares.max(), _named(shares.idxmax())
    return Finding(
        "saturated", "warning", "Saturated units",
        (f"{shares.mean():.0%} of the hidden units' outputs sit where {FLAT_WHEN}, {where} "
         f"(last record, mean over layers; {worst:.0%} in {layer})"
         if shares.mean() > SATURATED_SHARE else
         f"{worst:.0%} of {layer}'s outputs sit where {FLAT_WHEN}, {where}, at the last "
         f"record ({_under(shares.mean(), SATURATED_SHARE)} over all hidden layers)")
        + ": little gradient passes through them.",
        _fixes(cfg, _batch_norm(cfg), _init_fix(cfg), _relu_he(cfg)))


def _asymptote(r: RunResult, found: list[Finding]) -> Finding | None:
    """Glorot & Bengio (2010): a sigmoid net's top hidden layer driven towards 0 early in
    training. Its units sit near the asymptote before they count as saturated (σ′ at 0.05 is
    19% of its maximum), so the saturated share alone stays near 0 while this happens."""
    if r.config.activation != "sigmoid" or r.diverged:
        return None
    means = r.layer_metric("act_mean").drop(columns="output", errors="ignore").dropna(how="all")
    if means.empty:
        return None
    last = means.iloc[-1]
    far = last[(last < ASYMPTOTE) | (last > 1 - ASYMPTOTE)]
    if far.empty:
        return None
    layer = str((far - 0.5).abs().idxmax())
    cfg = r.config
    return Finding(
        "asymptote", "warning", "Sigmoid units pinned near an asymptote",
        f"{_named(layer)}'s mean activation is {last[layer]:.2f} at the last record "
        f"({means[layer].iloc[0]:.2f} at initialisation): its units are driven towards "
        f"{'0' if last[layer] < 0.5 else '1'}, where the sigmoid's slope σ′ = σ(1 − σ) is a "
        f"small part of its 0.25 maximum, and learning slows (Glorot & Bengio 2010 saw this in "
        f"the top hidden layer). Look at the mean activation on the Activations tab.",
        _fixes(cfg, Fix("Switch to tanh + Xavier init",
                        {"activation": "tanh", "init": "xavier_normal"}), _batch_norm(cfg)))


def _dead(r: RunResult, found: list[Finding]) -> Finding | None:
    dead = _hidden(r, "dead")
    if dead.empty or r.config.activation not in RELU_LIKE | SATURATING:
        return None
    last = _last_shares(r, "dead")
    if not _flagged(last, DEAD_SHARE):
        return None
    cfg = r.config
    # Dead from the start: the initialisation's scale did it, and a smaller step will not help.
    # Killed in training: the steps did (SGD at lr 1.0 kills 44% of a 4-layer ReLU net's units).
    # Leaky ReLU is not offered: its flat side counts here too, and at such a learning rate
    # it diverged (measured).
    first = dead[dead.step == dead.step.min()].set_index("layer")["value"]
    at_init = _flagged(first, DEAD_SHARE)
    scale = at_init or bool({"exploding", "vanishing", "tiny_gradients"}
                            & {f.id for f in found})
    when = "from initialisation on" if at_init else "at the end of training"
    word = "inactive" if cfg.activation in RELU_LIKE else "saturated"
    passes = ("no gradient" if cfg.activation == "relu" else "almost no gradient")
    unit = "ReLUs" if cfg.activation == "relu" else "units"
    worst, layer = last.max(), _named(last.idxmax())
    share = (f"{last.mean():.0%} of the hidden {unit} are dead {when} (mean over layers; "
             f"{worst:.0%} in {layer})" if last.mean() > DEAD_SHARE else
             f"{worst:.0%} of {layer}'s {unit} are dead {when} "
             f"({_under(last.mean(), DEAD_SHARE)} over all hidden layers)")
    return Finding(
        "dead", "warning", f"Dead {unit}",
        f"{share}: {word} for every one of {r.probe_set}. Such a unit passes {passes} to its "
        f"own weights, and revives only if updates elsewhere shift its input.",
        _fixes(cfg, _init_fix(cfg) if scale else _lower_lr(cfg), _batch_norm(cfg)))


def _step_size(r: RunResult, found: list[Finding]) -> Finding | None:
    upd = _median(r, "update_data_ratio")
    if upd is None or r.diverged:
        return None
    cfg = r.config
    if upd > UPDATE_RATIO_HIGH:
        return Finding(
            "steps_too_big", "warning", "Steps too large",
            f"The median {UPDATE_DATA.label} is {readable(upd)}; about "
            f"{power(UPDATE_DATA.target)} "
            f"is the usual healthy size. Training is likely unstable.",
            _fixes(cfg, _lower_lr(cfg)))
    # With vanishing or tiny gradients the small steps are a symptom: a larger learning rate
    # would blow up the last layers long before the first ones move.
    if upd < UPDATE_RATIO_LOW and not {"vanishing", "tiny_gradients"} & {f.id for f in found}:
        return Finding(
            "steps_too_small", "warning", "Steps too small",
            f"The median {UPDATE_DATA.label} is {readable(upd)}; about "
            f"{power(UPDATE_DATA.target)} "
            f"is the usual healthy size. Training crawls.",
            _fixes(cfg, _raise_lr(cfg, upd)))
    return None


def _raise_lr(cfg: RunConfig, upd: float) -> Fix | None:
    """The smallest of the Lab's learning rates (RunConfig.lr's stops) that brings the median
    update:data `upd` to UPDATE_RAISE_TO or above. The step is proportional to the learning
    rate, and so is update:data: SGD at lr 1e-5, 1e-4 and 1e-3 measured 2.3e-6, 2.3e-5 and
    2.1e-4 (a 2-layer ReLU net on digits)."""
    want = cfg.lr * UPDATE_RAISE_TO / upd
    lr = next((s for s in RunConfig.fields()["lr"].metadata["stops"] if s >= want), None)
    return None if lr is None or lr <= cfg.lr else Fix(f"Raise the learning rate to {lr:g}",
                                                       {"lr": lr})


def _instability(r: RunResult, found: list[Finding]) -> Finding | None:
    """A gradient-norm spike followed by a collapse of validation accuracy."""
    if r.diverged or len(r.steps) <= SPIKE_WINDOW // 5:
        return None
    g = r.steps.set_index("step")["grad_norm"].astype(float)
    before = g.shift(1).rolling(SPIKE_WINDOW, min_periods=SPIKE_WINDOW // 5).median()
    jump = (g / before).replace([np.inf, -np.inf], np.nan).dropna()
    spikes = jump[jump > SPIKE]
    if spikes.empty:
        return None
    acc = _curve(r, "val", "accuracy")
    for step, factor in spikes.items():
        epoch = int(r.steps.loc[r.steps.step == step, "epoch"].iloc[0])
        best_epoch = int(acc[acc.index < epoch].idxmax()) if (acc.index < epoch).any() else None
        after = acc[acc.index >= epoch]
        if best_epoch is None or after.empty:
            continue
        low_epoch = int(after.idxmin())
        if acc[best_epoch] - after.min() < COLLAPSE:
            continue
        cfg = r.config
        return Finding(
            "instability", "warning", "A gradient spike, then a collapse",
            f"At step {step} (epoch {epoch}) the total gradient norm jumped to {g[step]:.1e}, "
            f"{factor:.0f}× its median over the {SPIKE_WINDOW} steps before; validation accuracy "
            f"fell from {acc[best_epoch]:.0%} (epoch {best_epoch}) to {after.min():.0%} "
            f"(epoch {low_epoch}).",
            _fixes(cfg, _lower_lr(cfg), None if cfg.clip_norm is not None else _clip(cfg)))
    return None


def _always_clipped(r: RunResult, found: list[Finding]) -> Finding | None:
    clip_rate = float(r.steps.clipped.mean()) if len(r.steps) else 0.0
    if clip_rate <= CLIPPED_SHARE or r.diverged:
        return None
    cfg = r.config
    norm = float(np.nanmedian(r.steps.grad_norm))
    return Finding(
        "always_clipped", "info", "Clipping on almost every step",
        f"Clipping triggered on {clip_rate:.0%} of the steps; the median gradient norm before "
        f"clipping is {norm:.1e}. Clipping keeps the run alive, but the gradients' scale "
        f"problem is still there.",
        # Batch norm fixes the scale itself, so the clipping can go (the exploding lesson then
        # trains unclipped); Xavier init alone still needs clipping at the lesson's lr.
        _fixes(cfg, Fix("Enable batch norm and stop clipping",
                        {"batch_norm": True, "clip_norm": None, "clip_value": None})
               if not cfg.batch_norm else None))


def _not_learning(r: RunResult, found: list[Finding]) -> Finding | None:
    acc = r.final("val", "accuracy")
    chance, n_val = 1 / int(r.dataset.get("n_classes", 10)), int(r.dataset.get("n_val") or 0)
    # A run its user stopped had not had its epochs: slow is not "not learning".
    if r.diverged or r.stopped or not math.isfinite(acc) or not n_val:
        return None
    limit = chance + CHANCE_ERRORS * math.sqrt(chance * (1 - chance) / n_val)
    if acc >= limit:
        return None
    cfg = r.config
    # A gradient problem found above is the cause; its fixes are the ones to try (Adam does not
    # bring back a vanished gradient: the vanishing lesson stays at chance under Adam).
    cause = next((f for f in found if f.severity == "error"
                  or f.id in {"instability", "init_loss"}), None)
    return Finding(
        "not_learning", "info", "Not learning",
        f"Validation accuracy is {acc:.0%}, about chance ({chance:.0%}): under {limit:.1%}, "
        f"three standard errors above it on these {n_val:,} validation examples"
        + (f". “{cause.title}” above is the likely cause." if cause else "."),
        () if cause else _fixes(cfg, Fix("Use Adam at 1e-3", {"optimizer": "adam", "lr": 1e-3})
                                if cfg.optimizer != "adam" else None))


def _overfitting(r: RunResult, found: list[Finding]) -> Finding | None:
    """A gap in accuracy is overfitting only when the losses say so too: the training loss far
    below the validation loss, or the validation loss climbing from its best. (Training accuracy
    is averaged over the last epoch while the net still changes, so after a collapse, or with
    equal losses, a gap alone is not memorising.)"""
    if r.diverged or "instability" in {f.id for f in found}:
        return None
    gap = r.final("train", "accuracy") - r.final("val", "accuracy")
    train_loss, val = r.final("train", "loss"), _losses(r, "val")
    if not math.isfinite(gap) or gap <= 0 or val.empty or not math.isfinite(train_loss):
        return None
    # Ending above the untrained net's validation loss is a blow-up, not a fit that fails to
    # generalise: SGD at lr 0.55 threw an 8-layer ReLU net's validation loss from 2.1 to 269 in
    # its last steps while its training loss, averaged over the epoch, read 2.4 (tests). Every
    # lesson run that overfits (seeds 0-4) ends at 12% of its loss at initialisation or less.
    if 0 in val.index and val.iloc[-1] > val.loc[0]:
        return None
    rise = float(val.iloc[-1] / val.min() - 1)
    low_train = train_loss < LOSS_GAP * val.iloc[-1]
    # A wide gap with either sign in the losses, or both signs with any gap.
    if not ((gap > GAP and (low_train or rise > VAL_RISE)) or (low_train and rise > VAL_RISE)):
        return None
    cfg = r.config
    because = (f"training loss {readable(train_loss)} against validation "
               f"{readable(val.iloc[-1])}"
               + (f"; the validation loss ends {rise:.0%} above its best (epoch "
                  f"{int(val.idxmin())})" if rise > VAL_RISE else ""))
    return Finding(
        "overfitting", "info", "Overfitting",
        f"Training accuracy is {points(gap)} points above validation accuracy, and the "
        f"losses say the network fits its training examples better than new ones: {because}.",
        # The weight-decay and early-stopping lessons' settings. Dropout 0.5 is not offered: on
        # the overfitting lesson it moves the best epoch later, but the validation loss still
        # ends 14-27% above its best (seeds 0-2); weight decay on top of that dropout did not
        # clear it either, so it is offered to nets without dropout, where it was measured.
        _fixes(cfg, Fix("Add weight decay 1e-3", {"weight_decay": 1e-3})
               if cfg.weight_decay == 0 and cfg.dropout == 0 else None,
               Fix("Stop early (patience 5)", {"patience": 5}) if cfg.patience is None
               else None))


_CHECKS: tuple[Callable[[RunResult, list[Finding]], Finding | None], ...] = (
    _diverged, _exploding, _init_loss, _too_sharp, _vanishing, _tiny_gradients, _saturated,
    _asymptote, _dead, _step_size, _instability, _always_clipped, _not_learning, _overfitting)


# --- reading the tables -----------------------------------------------------------------------
def _init_grad_data(r: RunResult) -> pd.Series | None:
    """grad:data of every layer at step 0, or None when not recorded or not finite."""
    if r.layers.empty:
        return None
    gd = r.at_step("grad_data_ratio", 0) if 0 in set(r.layers.step) else None
    if gd is None or gd.isna().any() or not np.isfinite(gd).all():
        return None
    return gd


def _curve(r: RunResult, split: str, metric: str) -> pd.Series:
    e = r.epochs
    rows = e[(e.split == split) & (e.metric == metric)]
    return rows.set_index("epoch")["value"].astype(float).dropna()


def _losses(r: RunResult, split: str) -> pd.Series:
    return _curve(r, split, "loss")


def _hidden(r: RunResult, metric: str) -> pd.DataFrame:
    rows = r.layers[(r.layers.metric == metric) & (r.layers.layer != "output")]
    return rows[np.isfinite(rows.value)]


def _named(layer: str) -> str:
    """A layer as the evidence names it: a watched model's module path as it is ("encoder.fc1"),
    but an index in an nn.Sequential as "layer 19" ("78% of 19's ReLUs" reads as a number)."""
    return f"layer {layer}" if str(layer).isdigit() else str(layer)


def _under(mean: float, limit: float) -> str:
    """A mean under its warning limit as a percentage that reads under it: 24.9% of a 25% limit
    rounds to "25%", beside "the doctor warns above 25%"."""
    whole = f"{mean:.0%}"
    return f"{mean:.1%}" if float(whole[:-1]) >= 100 * limit else whole


def _last_shares(r: RunResult, metric: str) -> pd.Series | None:
    """Each hidden layer's `metric` at the last finite record, or None when it was not recorded
    (a linear net's saturation, a watched loop without a probe batch's dead units)."""
    rows = _hidden(r, metric)
    if rows.empty:
        return None
    return rows[rows.step == rows.step.max()].set_index("layer")["value"]


def _flagged(shares: pd.Series, mean_limit: float) -> bool:
    """The hidden layers' shares past their mean's limit, or one layer past LAYER_SHARE."""
    return shares.mean() > mean_limit or shares.max() > LAYER_SHARE


def _median(r: RunResult, metric: str) -> float | None:
    rows = _hidden(r, metric)
    rows = rows[rows.value > 0]
    return float(rows.value.median()) if len(rows) else None


def _max_grad(r: RunResult) -> float:
    g = r.steps.grad_norm.to_numpy()
    g = g[np.isfinite(g)]
    return float(g.max()) if g.size else math.nan
