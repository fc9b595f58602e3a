"""Steps to a loss criterion (`RunConfig.target_loss`), as Saxe et al. 2013 time deep linear
networks: how many updates until the training loss first reaches the target.

The measure is the per-step training loss (each batch's mean, the `steps` table's `loss`)
averaged over a trailing window of CRITERION_WINDOW steps: one lucky batch does not meet the
criterion, and a step's value needs no extra pass over the data.

    steps_to_target(result.steps, 0.05)   # the first such step, or None
"""

from __future__ import annotations

import pandas as pd

from core.lab.config import CRITERION_WINDOW


def steps_to_target(steps: pd.DataFrame, target: float,
                    window: int = CRITERION_WINDOW) -> int | None:
    """The first step s whose loss averaged over steps s − window + 1 … s is ≤ target (None if
    none is, or fewer than `window` steps were trained)."""
    smoothed = steps["loss"].astype(float).rolling(window, min_periods=window).mean()
    reached = (smoothed <= target).to_numpy().nonzero()[0]
    return int(steps["step"].iloc[reached[0]]) if len(reached) else None
