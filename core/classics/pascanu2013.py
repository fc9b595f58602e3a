"""Pascanu, Mikolov & Bengio 2013: in a vanilla RNN the gradient vanishes back through time,
and clipping the gradient norm tames one that explodes.

The runs are the Recurrent page's lessons (core.recurrent.presets), and the verdict is every
claim of those lessons on these runs, so the tests that hold each lesson's claims on seeds 0-4
(tests/test_lessons.py) hold this classic's too.
"""

from __future__ import annotations

from typing import Mapping

import altair as alt
import pandas as pd

from core import chart_parts
from core.classics.record import Classic, Paper, Verdict
from core.recurrent.config import RecurrentConfig
from core.recurrent.presets import RECURRENT_PRESETS
from core.recurrent.result import RecurrentResult

# Each run's name → the lesson whose config and claims it takes.
LESSONS = {"vanilla RNN": "rnn_forgets", "no clipping": "rnn_explodes",
           "clipped at 0.25": "clipping_tames"}


def configs(seed: int = 0) -> dict[str, RecurrentConfig]:
    return {name: RECURRENT_PRESETS[pid].config.replace(seed=seed)
            for name, pid in LESSONS.items()}


def verdict(runs: Mapping[str, RecurrentResult]) -> Verdict:
    failed = [text for name, pid in LESSONS.items()
              for text, holds in (c.check(runs[name]) for c in RECURRENT_PRESETS[pid].claims)
              if not holds]
    vanilla, wild, clipped = (runs[name] for name in LESSONS)
    seq_len = vanilla.config.seq_len
    wild_loss, wild_grad = wild.steps["loss"], wild.steps["grad_norm"]
    sentence = (
        f"At initialisation the vanilla RNN's ‖∂L/∂h_1‖ is {vanilla.ratio_at_init():.0e} of "
        f"‖∂L/∂h_{seq_len}‖; without clipping, the gradient norm peaked at "
        f"{wild_grad.max() / wild_grad.iloc[0]:.0f}× its first value and the training loss "
        f"rose to {wild_loss.max():.3g} from {wild_loss.iloc[0]:.2f}"
        + (" (the run diverged)" if wild.diverged else "")
        + f"; clipped at 0.25, the loss stayed at or below {clipped.steps['loss'].max():.2f} "
        f"and validation accuracy reached {clipped.final('val', 'accuracy'):.0%}.")
    if failed:
        sentence += " Not as the lessons claim: " + " ".join(failed)
    return Verdict(not failed, sentence)


def figure(runs: Mapping[str, RecurrentResult]) -> alt.HConcatChart:
    """Left: ‖∂L/∂h_t‖ against t at initialisation (log), the vanilla RNN. Right: the training
    loss per step with and without clipping (log)."""
    vanilla = runs["vanilla RNN"]
    tg = vanilla.time_grads
    first = chart_parts.finite(tg[tg.step == tg.step.min()], ["value"], positive=True)
    decay = alt.Chart(first).mark_line(point=True, color=chart_parts.SPLITS["train"]).encode(
        x=alt.X("t:Q", title="Time step t", axis=chart_parts.COUNT_AXIS),
        y=alt.Y("value:Q", title="‖∂L/∂h_t‖ at initialisation (log)",
                scale=alt.Scale(type="log"), axis=chart_parts.LOG_AXIS),
        tooltip=chart_parts.tips("t:Q", alt.Tooltip("value:Q", format=".2e")),
    ).properties(title="Vanilla RNN: the gradient back through time",
                 width=chart_parts.PANEL_W, height=chart_parts.PANEL_H)
    losses = pd.concat([chart_parts.finite(runs[name].steps[["step", "loss"]], ["loss"],
                                           positive=True).assign(run=name)
                        for name in ("no clipping", "clipped at 0.25")])
    loss = alt.Chart(chart_parts.source(losses)).mark_line(strokeWidth=1.2).encode(
        x=alt.X("step:Q", title="Training step", axis=chart_parts.COUNT_AXIS),
        y=alt.Y("loss:Q", title="Training loss (batch, log)", scale=alt.Scale(type="log"),
                axis=chart_parts.LOG_AXIS),
        # The legend below: beside it, the pair ran 136 px past a laptop's page column.
        color=alt.Color("run:N", title="Momentum SGD, lr 1",
                        legend=alt.Legend(**chart_parts.LEGEND_BELOW), scale=alt.Scale(
            domain=["no clipping", "clipped at 0.25"],
            range=[chart_parts.ALERT, chart_parts.SPLITS["train"]])),
        tooltip=chart_parts.tips("run:N", "step:Q", alt.Tooltip("loss:Q", format=".4g")),
    ).properties(title="Exploding gradients, with and without clipping",
                 width=chart_parts.PANEL_W, height=chart_parts.PANEL_H)
    return alt.hconcat(decay, loss)


_FORGETS, _EXPLODES = (RECURRENT_PRESETS[p].config for p in ("rnn_forgets", "rnn_explodes"))
PASCANU2013 = Classic(
    id="pascanu2013",
    title="Pascanu et al. 2013: vanishing and exploding gradients in RNNs",
    paper=Paper("Razvan Pascanu, Tomas Mikolov, Yoshua Bengio", 2013,
                "On the difficulty of training recurrent neural networks",
                "In a recurrent network the long-term components of the gradient can go "
                "exponentially fast to norm 0 (vanishing) or grow exponentially (exploding); "
                "rescaling the gradient whenever its norm exceeds a threshold deals with the "
                "exploding gradients."),
    setup=f"Three vanilla tanh RNNs of {_FORGETS.hidden} units reading Fashion-MNIST row by "
          f"row ({_FORGETS.max_train:,} training images, {_FORGETS.epochs} epochs; the "
          "Recurrent page's lessons). One with PyTorch's default init and Adam: we measure "
          "‖∂L/∂h_t‖, the gradient reaching each time step, at initialisation. Two with "
          f"orthogonal recurrent weights and momentum SGD at lr {_EXPLODES.lr:g}, one of them "
          "with the gradient norm clipped at 0.25 (torch's clip_grad_norm_).",
    differs=("They study synthetic long-term-memory tasks (e.g. the temporal order, addition "
             "and multiplication problems, up to hundreds of steps) and music and text "
             "prediction; we read 28-row images, so the sequences are 28 steps long.",
             "Their remedy for vanishing gradients, a regulariser that keeps the gradient's "
             "norm through time, is not tried here; the LSTM lesson on the Recurrent page "
             "shows another remedy.",
             "They measure clipping by how often the synthetic tasks are solved (and by the "
             "error on the natural ones); we compare the training loss of one run with and "
             "without it, at a learning rate chosen to explode."),
    configs=configs, verdict=verdict, figure=figure,
    figure_caption="Left: ‖∂L/∂h_t‖ at the first training step, for each time step t (log "
                   "scale). Right: the training loss of each step, without and with "
                   "clipping (log scale).",
)
