"""`RecurrentResult`: one recurrent run as tidy tables, and the questions its lessons ask of it
(‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ at init and over training)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.recurrent.config import RecurrentConfig
from core.tables import TrainedRun, table_from_dict, table_to_dict

RECURRENT_TABLES = ("epochs", "steps", "time_grads")


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
