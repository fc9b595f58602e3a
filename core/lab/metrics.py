"""The metric catalogue: every series the recorder writes, named once with what it means.

    CATALOGUE["update_data_ratio"].title     # "update:data ratio ‖ΔW‖/‖W‖"
    CATALOGUE["update_data_ratio"].healthy   # (1e-4, 1e-2), around the 1e-3 rule of thumb
    LAYER_METRICS, STEP_METRICS              # the names the recorder writes, in its order

Like a TensorBoard tag, a metric's name is the key every view finds it by: the recorder writes
the names, the charts take their titles, axis labels and scales from here, the doctor and the
pages their words, so "update:data" means and reads the same everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from core.activations import FLAT_FRACTION

FLAT_WHEN = f"|f′(z)| < {FLAT_FRACTION:.0%} of max |f′|"
PROBE_EXAMPLES = 1024   # the fixed probe set "dead" is measured on (the whole training set if smaller)


def dead_symbol(examples: int | None) -> str:
    """The dead share's formula in a title, for a probe of `examples` examples (a Lab run's
    fixed probe set, a watched loop's own probe batch; 0: no probe was run; None: a watched
    run's file that does not say how large its probe batch was)."""
    if examples is None:
        return "(flat for every example of the probe batch)"
    return (f"(flat for all {examples:,} probe examples)" if examples else
            "(not measured: no probe batch)")


@dataclass(frozen=True)
class Metric:
    label: str                  # short name: legends, tooltips, headline numbers
    symbol: str                 # the formula, written after the label in titles ("" if none)
    help: str                   # one sentence: what is measured, and when
    fmt: str = ".3g"            # format spec of one value
    log: bool = True            # spans orders of magnitude: drawn on a log axis
    share: bool = False         # a fraction in [0, 1], drawn as 0–100 %
    healthy: tuple[float, float] | None = None   # the usual healthy range, where one is known
    target: float | None = None                  # the rule-of-thumb value inside that range

    @property
    def title(self) -> str:
        return f"{self.label} {self.symbol}".strip()

    @property
    def axis(self) -> str:
        """The value axis' title: the label with its unit or scale."""
        return f"{self.label} (%)" if self.share else f"{self.label} (log)" if self.log \
            else self.label


_NORM = dict(fmt=".2e")
_SHARE = dict(fmt=".0%", log=False, share=True)

CATALOGUE: dict[str, Metric] = {
    # --- per layer, at every recorded step ---
    "weight_grad_norm": Metric("Weight-gradient norm", "‖∇W‖",
                               "Norm of the layer's weight gradient, before clipping.", **_NORM),
    "weight_grad_mean_abs": Metric("Mean |∇W|", "", "Mean absolute entry of the layer's weight "
                                   "gradient, before clipping.", **_NORM),
    "weight_grad_max_abs": Metric("Max |∇W|", "", "Largest absolute entry of the layer's weight "
                                  "gradient, before clipping.", **_NORM),
    "out_grad_norm": Metric("Gradient norm at the layer's output", "‖∂L/∂z‖",
                            "Norm of the gradient back-propagated to the layer's output "
                            "z = Wx + b.", **_NORM),
    "preact_mean": Metric("Pre-activation mean", "", "Mean of the activation's input z (after "
                          "batch norm when that is on).", log=False),
    "preact_std": Metric("Pre-activation std", "", "Standard deviation of the activation's "
                         "input z (after batch norm when that is on)."),
    "act_mean": Metric("Activation mean", "", "Mean of the activation's output f(z).", log=False),
    "act_std": Metric("Activation std", "", "Standard deviation of the activation's output f(z)."),
    # The flat region has one name per kind of activation (core.activations.flat_region); a
    # layer records the one that applies to it.
    "saturation": Metric("Saturated", f"({FLAT_WHEN})",
                         f"Sigmoid and tanh layers: share of (example, unit) pairs of the training "
                         f"batch where {FLAT_WHEN}, near an asymptote: little gradient passes "
                         "through them.", **_SHARE),
    "inactive": Metric("Inactive", f"({FLAT_WHEN})",
                       f"ReLU-family layers: share of (example, unit) pairs of the training batch "
                       f"where {FLAT_WHEN}: ReLU's zero region (z ≤ 0), or the flat negative side "
                       "of its smooth and leaky variants. About half is normal.", **_SHARE),
    "dead": Metric("Dead", dead_symbol(PROBE_EXAMPLES),
                   f"Share of units saturated or inactive ({FLAT_WHEN}) for every example (and "
                   f"position) of a fixed probe set: the first {PROBE_EXAMPLES:,} training "
                   "examples (all of them when fewer), run through the network as it predicts "
                   "(dropout off, batch norm on its running statistics) at initialisation and "
                   "after each epoch. Such a unit passes no gradient to its own weights.",
                   **_SHARE),
    "grad_data_ratio": Metric("grad:data ratio", "‖∇W‖/‖W‖",
                              "The weight gradient's norm over the weights' norm.", **_NORM),
    "update_data_ratio": Metric("update:data ratio", "‖ΔW‖/‖W‖",
                                "How far the optimizer step just taken moved the weights, "
                                "relative to their size; about 1e-3 is Karpathy's rule of thumb.",
                                healthy=(1e-4, 1e-2), target=1e-3, **_NORM),
    "drift": Metric("Weight drift", "‖W − W₀‖/‖W₀‖",
                    "How far the weights have moved from their initial values, relative to "
                    "those.", **_NORM),
    # --- per step ---
    "loss": Metric("Loss", "", "The training batch's mean loss: cross-entropy, or squared "
                   "error with loss=mse.",
                   fmt=".4g", log=False),
    "grad_norm": Metric("Total gradient norm before clipping", "‖∇‖",
                        "Norm of the whole gradient (every parameter), before clipping.", **_NORM),
    "clipped": Metric("Clipped", "", "Whether clipping changed the step's gradient (0/1).",
                      fmt=".0f", log=False),
    "lr": Metric("Learning rate", "", "The learning rate of the step, after any schedule.",
                 fmt=".3g"),
}

LAYER_METRICS = ("weight_grad_norm", "weight_grad_mean_abs", "weight_grad_max_abs",
                 "out_grad_norm", "preact_mean", "preact_std", "act_mean", "act_std", "saturation",
                 "inactive", "dead", "grad_data_ratio", "update_data_ratio", "drift")
STEP_METRICS = ("loss", "grad_norm", "clipped", "lr")

# Headline numbers, one per run, the same on every page that shows them (Lab, Compare, Sweep).
# The per-layer chart beside each ends at its value in its highest line, or starts at it.
MOST_FLAT = {
    "saturation": Metric(
        "Max saturated (end)", f"({FLAT_WHEN})",
        f"Sigmoid and tanh networks: the largest share of saturated (example, unit) pairs "
        f"({FLAT_WHEN}) of any hidden layer at the last recorded step; none when the run "
        "diverged.", **_SHARE),
    "inactive": Metric(
        "Max inactive (end)", f"({FLAT_WHEN})",
        f"ReLU-family networks: the largest share of inactive (example, unit) pairs "
        f"({FLAT_WHEN}) of any hidden layer at the last recorded step; none when the run "
        "diverged. About half is normal for ReLU.", **_SHARE),
}
DEPTH_RATIO = Metric(
    "Depth ratio at init", "‖∂L/∂z‖ first/last",
    "The gradient back-propagated to the first hidden layer's output over the gradient at the "
    "output layer (the logits), at the first step: far below 1, it vanished on its way down; "
    "far above 1, it exploded. Unlike a ratio of weight-gradient norms it is not masked by "
    "activations that grow as the gradient shrinks.", fmt=".1e")


def readable(x: float, digits: int = 2) -> str:
    """`digits` significant digits as a decimal where one reads (0.85, 0.0012, 4,912), a power
    of ten outside 1e-3 … 1e4 (1.2e-7, 3.4e+5): never "8.5e-01"."""
    if not math.isfinite(x) or x == 0:
        return "–" if not math.isfinite(x) else "0"
    magnitude = math.floor(math.log10(abs(x)))
    if -3 <= magnitude < 4:
        return f"{x:,.{max(0, digits - 1 - magnitude)}f}"
    return f"{x:.{digits - 1}e}".replace("e-0", "e-").replace("e+0", "e+")


def points(share: float) -> str:
    """A difference of two shares in percentage points, as the Lab's headline and the doctor
    write it: one decimal under 10 ("5.6", "0.3"; whole points read "0" for a 0.3-point gap),
    whole points from 10 on ("16": "16.3 pts" was cut short on a laptop)."""
    return f"{share * 100:.{1 if abs(share) < 0.1 else 0}f}"


def power(x: float) -> str:
    """A power of ten as the app writes one: 1e-3, not 1e-03 or 0.001."""
    return f"{x:.0e}".replace("e-0", "e-").replace("e+0", "e+")


def most_flat(end_shares: Sequence[float]) -> float:
    """A MOST_FLAT headline from each hidden layer's saturated or inactive share at the end (NaN
    when none is finite, as for a diverged run)."""
    finite = [v for v in end_shares if math.isfinite(v)]
    return max(finite) if finite else math.nan
