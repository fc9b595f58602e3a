"""Validation every N steps (`RunConfig.eval_every`): loss and accuracy on a fixed validation
subset between epochs' ends, recorded on the device and copied to the host once an epoch.

    trace = ValidationTrace(cfg.eval_every, measure, device)   # measure() -> (loss, accuracy)
    trace.start_epoch(n_steps); ... trace.after_update(updates_done) ...; trace.end_epoch()
    trace.table()      # step, val_loss, val_accuracy

Step t is the network after t updates (t = 0 is the initial network), the `steps` table's
meaning: a trace point at step t sits beside the training loss of the batch step t saw.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch

COLUMNS = ["step", "val_loss", "val_accuracy"]


class ValidationTrace:
    def __init__(self, every: int | None, measure: Callable[[], torch.Tensor],
                 device: torch.device):
        """`measure()` returns the device tensor [mean loss, accuracy] of the network now."""
        self.every = every
        self._measure = measure
        self._device = device
        self._rows: list[pd.DataFrame] = []
        self._steps: list[int] = []
        self._buffer: torch.Tensor | None = None

    def start_epoch(self, n_steps: int) -> None:
        if self.every:
            # Room for every point an epoch can hold, plus the initial one.
            self._buffer = torch.full((n_steps // self.every + 2, 2), float("nan"),
                                      device=self._device)
            self._steps = []

    def after_update(self, updates: int) -> None:
        """Measure if `updates` (updates done so far, 0 before the first) is on the grid."""
        if not self.every or updates % self.every:
            return
        self._buffer[len(self._steps)] = self._measure()
        self._steps.append(updates)

    def end_epoch(self) -> None:
        """The epoch's one host copy."""
        if not self._steps:
            return
        values = self._buffer[:len(self._steps)].cpu().numpy().astype(np.float64)
        self._rows.append(pd.DataFrame({"step": self._steps, "val_loss": values[:, 0],
                                        "val_accuracy": values[:, 1]}))
        self._steps = []

    def table(self) -> pd.DataFrame:
        if not self._rows:
            return pd.DataFrame(columns=COLUMNS)
        return pd.concat(self._rows, ignore_index=True)
