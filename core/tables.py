"""Tidy result tables: to and from the run store's JSON columns, and the questions every
family's result answers the same way from them (its last value of a metric, its key)."""

from __future__ import annotations

import math
import time
from typing import Any

import pandas as pd

TEXT_COLUMNS = ("split", "metric", "layer", "kind")
STOPPED = "stopped"   # the status of a run its user stopped (early stopping completes a run)
REACHED_TARGET = "reached target"


def status_word(status: str, steps_to_target: int | None = None) -> str:
    """A run's status as people read it, on every page and in the terminal: 'done' for a run
    that used every epoch, 'reached target' for one its loss criterion (target_loss) ended, given
    the step it was met at ("completed" stays the stored value and the JSON's, with that step as
    steps_to_target)."""
    if status == "completed" and steps_to_target is not None:
        return REACHED_TARGET
    return {"completed": "done"}.get(status, status)


def stored_label(what: str, figure: str, entry: dict[str, Any], when: str) -> str:
    """A stored run's one-line description, for picking it from the run store: what it is — its
    headline figure ("" when it has none), its status unless it completed, and `when` ("trained",
    "stored") with the entry's date."""
    status = entry.get("meta", {}).get("status", "completed")
    outcome = [figure, "" if status == "completed" else str(status)]
    if "created" in entry:
        outcome.append(f"{when} " + time.strftime("%Y-%m-%d %H:%M",
                                                 time.localtime(entry["created"])))
    return what + " — " + ", ".join(part for part in outcome if part)


def table_to_dict(df: pd.DataFrame) -> dict[str, list]:
    """A tidy table as JSON-ready columns (the run store's payload)."""
    return {col: df[col].tolist() for col in df.columns}


def table_from_dict(columns: dict[str, list]) -> pd.DataFrame:
    """Stored columns back to a table; JSON's null (a NaN when stored) is NaN again."""
    df = pd.DataFrame(columns)
    for col in df.columns:
        if df[col].dtype == object and col not in TEXT_COLUMNS:
            df[col] = pd.to_numeric(df[col], errors="coerce")  # null -> NaN
    return df


class EpochRecords:
    """A result with an `epochs` table (epoch, split, metric, value): the Lab's runs, a sweep's
    cells, the recurrent lesson's runs."""

    epochs: pd.DataFrame

    def final(self, split: str, metric: str) -> float:
        """The last recorded value of e.g. ('val', 'accuracy'); NaN if none."""
        rows = self.epochs[(self.epochs.split == split) & (self.epochs.metric == metric)]
        return float(rows.sort_values("epoch").value.iloc[-1]) if len(rows) else math.nan

    def at_epoch(self, split: str, metric: str, epoch: int) -> float:
        """The value of e.g. ('val', 'accuracy') after `epoch` epochs; NaN if not recorded."""
        rows = self.epochs[(self.epochs.split == split) & (self.epochs.metric == metric)
                           & (self.epochs.epoch == epoch)]
        return float(rows.value.iloc[-1]) if len(rows) else math.nan


class TrainedRun(EpochRecords):
    """A whole trained run: its config (whose key is the store's) and its status."""

    config: Any
    status: str                     # "completed" | "diverged" | "stopped" (by its user)

    @property
    def key(self) -> str:
        return self.config.key()

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"

    @property
    def stopped(self) -> bool:
        """Stopped by its user before its last epoch (a Stop button), not by early stopping."""
        return self.status == STOPPED

    @property
    def epochs_done(self) -> int:
        """The epochs it trained: the last one its `epochs` table records."""
        return int(self.epochs.epoch.max()) if len(self.epochs) else 0
