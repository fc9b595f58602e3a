"""Lesson presets for the Recurrent page, each with claims checked against the run it produces.

    p = RECURRENT_PRESETS["rnn_forgets"]
    result = get_recurrent_run(p.config)
    [claim.check(result) for claim in p.claims]

The thresholds leave room: every claim holds on seeds 0-4 with one thread, as the app trains
(tests/test_lessons.py). Measured on Fashion-MNIST rows, 1,000 training images, 3 epochs: the
RNN's first/last ratio is 1e-8…4e-8 at initialisation and 4e-6…3e-4 in the median over
training, the LSTM's 5e-4…1e-3 and 4e-3…1e-2; the exploding run's gradient peaks at 9×…9,900×
its first value and its loss at 21…109 from 2.3; the clipped run's loss stays below 2.8 and its
validation accuracy is 38…51%.
"""

from __future__ import annotations

from core.lessons import Claim, Preset
from core.recurrent.config import RecurrentConfig
from core.recurrent.result import RecurrentResult


def _last_t(r: RecurrentResult) -> str:
    return f"h_{r.config.seq_len}"


def _per_step(r: RecurrentResult) -> float:
    """The factor by which ‖∂L/∂h_t‖ shrinks per step back through time, at initialisation."""
    return r.ratio_at_init() ** (1 / max(1, r.config.seq_len - 1))


def _loss(r: RecurrentResult, which: str) -> float:
    loss = r.steps["loss"]
    return float(loss.iloc[0] if which == "first" else loss.max()) if len(loss) else float("nan")


def _grad(r: RecurrentResult, which: str) -> float:
    g = r.steps["grad_norm"]
    return float(g.iloc[0] if which == "first" else g.max()) if len(g) else float("nan")


def _acc(r: RecurrentResult) -> float:
    return r.final("val", "accuracy")


# The same data, optimizer and budget for the RNN and the LSTM: only the cell differs.
_FORGETS = RecurrentConfig()
# A learning rate far too high for plain momentum SGD: occasional huge gradients throw it off.
_EXPLODES = RecurrentConfig(recurrent_init="orthogonal", optimizer="momentum", lr=1.0)

_PRESETS = (
    Preset(
        "rnn_forgets", "RNN forgets the first rows", ":material/trending_down:",
        "A vanilla tanh RNN reads Fashion-MNIST row by row: the first rows barely reach the "
        "gradient.",
        "Look at the heatmap of ‖∂L/∂h_t‖: each step back through time multiplies the gradient "
        "by Wᵀ·diag(1 − h²), tanh slopes of at most 1 times weights whose spectral radius is "
        "about 0.58 at PyTorch's default init. Here the product shrinks it step after step (the "
        "first claim gives the measured factor), so by the first row it is orders of magnitude "
        "smaller. The network learns from the last rows and is nearly blind to the first ones.",
        _FORGETS,
        (Claim(lambda r: f"At initialisation ‖∂L/∂h_1‖ is {r.ratio_at_init():.0e} of "
                         f"‖∂L/∂{_last_t(r)}‖: the gradient shrinks by a factor of about "
                         f"{_per_step(r):.2f} per step back through time.",
               lambda r: r.ratio_at_init() < 1e-5),
         Claim(lambda r: f"Over training the median of ‖∂L/∂h_1‖ / ‖∂L/∂{_last_t(r)}‖ is "
                         f"{r.median_ratio():.0e}: still orders of magnitude below 1.",
               lambda r: r.median_ratio() < 1e-3)),
    ),
    Preset(
        "lstm_keeps", "LSTM keeps them", ":material/memory:",
        "The same data and training with an LSTM: the gradient reaches the first rows.",
        "The LSTM's cell state is updated by addition, c_t = f_t·c_{t−1} + i_t·g_t, so the "
        "gradient flows back through the forget gates f_t rather than through a squashing "
        "matrix product; with the forget-gate bias at 1 they start mostly open. Compare the "
        "heatmap and the lines with the RNN preset's: the colour fades far less towards the "
        "first rows.",
        _FORGETS.replace(cell="lstm"),
        (Claim(lambda r: f"At initialisation ‖∂L/∂h_1‖ is {r.ratio_at_init():.0e} of "
                         f"‖∂L/∂{_last_t(r)}‖ (the vanilla RNN's: 1e-08 to 4e-08 on seeds "
                         f"0-4).",
               lambda r: r.ratio_at_init() > 1e-4),
         Claim(lambda r: f"Over training the median ratio is {r.median_ratio():.0e}, above the "
                         f"vanilla RNN's (below 1e-03).",
               lambda r: r.median_ratio() > 1e-3),
         Claim(lambda r: f"Validation accuracy: {_acc(r):.0%}.", lambda r: _acc(r) > 0.5)),
    ),
    Preset(
        "rnn_explodes", "RNN explodes without clipping", ":material/trending_up:",
        "Momentum SGD at learning rate 1 on a vanilla RNN: gradient spikes throw the weights "
        "off a cliff.",
        "Look at the gradient norm before clipping and the training loss per step: the gradient "
        "grows to many times its first size (the recurrence multiplies it step after step), "
        "the updates grow with it, and the loss jumps far above where it started. Then try the "
        "clipping preset.",
        _EXPLODES,
        (Claim(lambda r: f"The gradient norm peaks at {_grad(r, 'max'):.3g}, "
                         f"{_grad(r, 'max') / _grad(r, 'first'):.0f}× its first value.",
               # 9× to 10,000× on seeds 0-4 with one thread, as the app trains: chaotic
               # dynamics, so the peak varies by orders of magnitude between seeds.
               lambda r: _grad(r, "max") > 5 * _grad(r, "first")),
         Claim(lambda r: f"The training loss climbs to {_loss(r, 'max'):.3g} from "
                         f"{_loss(r, 'first'):.2f} at the start" + (
                             " and the run diverges." if r.diverged else "."),
               lambda r: r.diverged or _loss(r, "max") > 3 * _loss(r, "first"))),
    ),
    Preset(
        "clipping_tames", "Clipping tames it", ":material/content_cut:",
        "The exploding RNN with its gradient norm clipped to 0.25 (clip_grad_norm_).",
        "Clipping rescales any gradient longer than the threshold to that length, so no single "
        "gradient can throw the weights far. Here nearly every gradient is longer, so the "
        "optimizer receives gradients of norm 0.25; momentum SGD sums them with decay 0.9, so "
        "a step is at most lr × 0.25 / (1 − 0.9) long. Compare the loss and gradient-norm "
        "charts with the exploding preset's.",
        _EXPLODES.replace(clip_norm=0.25),
        (Claim(lambda r: f"Clipping triggers on {r.steps.clipped.mean():.0%} of the steps.",
               lambda r: r.steps.clipped.mean() > 0.5),
         Claim(lambda r: f"The training loss never climbs above {_loss(r, 'max'):.2f} (it "
                         f"starts at {_loss(r, 'first'):.2f}).",
               lambda r: not r.diverged and _loss(r, "max") < 1.5 * _loss(r, "first")),
         # 50, 40, 50, 51, 38% on seeds 0-4: above 30% on each, three times chance.
         Claim(lambda r: f"Validation accuracy: {_acc(r):.0%}.", lambda r: _acc(r) > 0.3)),
    ),
)

RECURRENT_PRESETS: dict[str, Preset[RecurrentConfig, RecurrentResult]] = {p.id: p for p in _PRESETS}
