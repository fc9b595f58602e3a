"""Lesson presets: a configuration, what to look at, and claims checked against the real run.

Every claim a preset makes is a function of the run it produces, so the app can show ✓ or ✗ next
to it, and the tests assert that each preset's claims hold:

    p = PRESETS["vanishing"]
    result = get_run(p.config)
    [(claim.text(result), claim.holds(result)) for claim in p.claims]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from core.config import RunConfig
from core.result import RunResult


@dataclass(frozen=True)
class Claim:
    text: Callable[[RunResult], str]     # the sentence, with the run's own numbers in it
    holds: Callable[[RunResult], bool]


@dataclass(frozen=True)
class Preset:
    id: str
    title: str
    icon: str
    summary: str         # one line for the card on the home page
    look_at: str         # what to look at, shown above the charts
    config: RunConfig
    claims: tuple[Claim, ...]


def _ratio(r: RunResult) -> float:
    return r.grad_ratio(0)


def _spread(r: RunResult, metric: str = "weight_grad_norm", step: int = 0) -> float:
    """Largest over smallest per-layer value at a step: 1 means every layer alike."""
    v = r.at_step(metric, step)
    return float(v.max() / v.min())


def _median_update_spread(r: RunResult) -> float:
    u = r.layer_metric("update_data_ratio").median()
    return float(u.max() / u.min())


def _level() -> Claim:
    return Claim(lambda r: f"At initialisation the layers' gradient norms are within a factor of "
                           f"{_spread(r):.1f} of each other.",
                 lambda r: _spread(r) < 10)


def _reaches(accuracy: float) -> Claim:
    return Claim(lambda r: f"Validation accuracy reaches {_acc(r):.0%}.",
                 lambda r: _acc(r) > accuracy)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _acc(r: RunResult) -> float:
    return r.final("val", "accuracy")


# lr 0.05, not 0.1: at 0.1 the ReLU fix oscillates between epochs (0.94 → 0.47), so its
# outcome would hang on float summation order (thread count); at 0.05 it is stable.
_VANISHING = RunConfig(depth=10, activation="sigmoid", init="xavier_normal", optimizer="sgd",
                       lr=0.05, epochs=10)
_EXPLODING = RunConfig(depth=20, activation="linear", init="mean_field", sigma_w2=4.0,
                       optimizer="sgd", lr=0.1, epochs=5)

_PRESETS = (
    Preset(
        "vanishing", "Vanishing gradients", ":material/trending_down:",
        "A 10-layer sigmoid network: the first layers barely get any gradient.",
        "Look at the gradient-norm heatmap and the gradient-flow bars: each sigmoid layer "
        "multiplies the back-propagated gradient by at most 0.25, so the first layer's gradient "
        "is orders of magnitude below the last layer's, and the first layers hardly learn.",
        _VANISHING,
        (Claim(lambda r: f"At initialisation the first layer's gradient norm is "
                         f"{_ratio(r):.1e} of the last layer's.",
               lambda r: _ratio(r) < 1e-4),
         Claim(lambda r: f"Validation accuracy stays near chance: {_acc(r):.0%} after "
                         f"{r.config.epochs} epochs.",
               lambda r: _acc(r) < 0.2)),
    ),
    Preset(
        "exploding", "Exploding gradients", ":material/trending_up:",
        "A 20-layer linear network with large weights and a high learning rate blows up.",
        "Each layer doubles the signal (σ_w² = 4), so the output and the gradients are about a "
        "million times too large; the first SGD step overshoots and the loss becomes NaN. The "
        "run stops there and keeps everything recorded up to that step.",
        _EXPLODING,
        (Claim(lambda r: _sentence((r.divergence or {}).get("message", "the run did not diverge")),
               lambda r: r.diverged and r.divergence["epoch"] == 1),),
    ),
    Preset(
        "relu_he", "Fix: ReLU + He init", ":material/bolt:",
        "Same depth, ReLU units and He initialisation: gradients reach every layer.",
        "ReLU passes the gradient unchanged where a unit is active, and He initialisation "
        "(variance 2/fan_in) keeps the signal's scale from layer to layer. Compare the heatmap "
        "with the vanishing preset's.",
        _VANISHING.replace(activation="relu", init="he_normal"),
        (_level(), _reaches(0.85)),
    ),
    Preset(
        "batch_norm", "Fix: batch norm", ":material/tune:",
        "The vanishing network with batch normalisation before each sigmoid.",
        "Batch norm re-centres and re-scales every layer's pre-activations, so the sigmoids "
        "work in their steep middle part. Look at the batch-norm chart (before vs after) and "
        "the gradient heatmap.",
        _VANISHING.replace(batch_norm=True),
        (_level(), _reaches(0.9)),
    ),
    Preset(
        "clipping", "Fix: gradient clipping", ":material/content_cut:",
        "The exploding network with its gradient norm clipped to 1.",
        "Clipping caps every step's length, so the huge first gradients can no longer throw "
        "the weights to infinity. Look at the clipping chart: the norm before clipping, the "
        "threshold, and how often it triggers.",
        _EXPLODING.replace(clip_norm=1.0),
        (Claim(lambda r: f"The run {'diverges' if r.diverged else 'completes'}, and clipping "
                         f"triggers on {r.steps.clipped.mean():.0%} of the steps.",
               lambda r: not r.diverged and r.steps.clipped.mean() > 0.5),
         _reaches(0.7)),
    ),
    Preset(
        "residual", "Fix: residual connections", ":material/alt_route:",
        "The vanishing network with skip connections (x + f(x)) around each layer.",
        "A skip connection adds an identity path, so the gradient reaches the first layer "
        "without passing through every sigmoid.",
        _VANISHING.replace(model="residual_mlp"),
        (Claim(lambda r: f"At initialisation the first layer's gradient norm is {_ratio(r):.1e} "
                         f"of the last layer's (about 1e-6 without skips).",
               lambda r: _ratio(r) > 1e-3),
         _reaches(0.3)),  # about 45%, against 10% for the same net without skips
    ),
    Preset(
        "adam", "Adam evens out the steps", ":material/speed:",
        "The vanishing network trained with Adam instead of SGD.",
        "Adam divides each weight's step by its own gradient's running size, so the first "
        "layer moves about as fast as the last even though its gradient is still tiny. Look at "
        "the update:data ratios: nearly level across layers. It does not bring back the signal "
        "lost in the sigmoids: accuracy stays low.",
        _VANISHING.replace(optimizer="adam", lr=1e-3),
        (Claim(lambda r: f"Gradient norms still span a factor of {_spread(r):.0e} across layers "
                         f"at initialisation…",
               lambda r: _spread(r) > 1e4),
         Claim(lambda r: f"…but the typical update:data ratios differ by only a factor of "
                         f"{_median_update_spread(r):.1f} between layers.",
               lambda r: _median_update_spread(r) < 10),
         Claim(lambda r: f"Validation accuracy: {_acc(r):.0%}.", lambda r: _acc(r) < 0.5)),
    ),
)

PRESETS: dict[str, Preset] = {p.id: p for p in _PRESETS}
