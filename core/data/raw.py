"""A dataset as loaded, before it is split: its read-only arrays and where they came from.

`core.data.datasets` builds every split from a `Raw`; `core.data.mnist` and the digits and toy
loaders produce one, and raise `DatasetUnavailable` when the data cannot be had here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DatasetUnavailable", "Raw", "freeze"]


class DatasetUnavailable(RuntimeError):
    """The dataset cannot be loaded here; the message says what to install or do."""


@dataclass(frozen=True)
class Raw:
    x_train: np.ndarray  # uint8 [N, 1, H, W] images or float32 [N, 2] points
    y_train: np.ndarray  # int64 [N]
    x_test: np.ndarray | None  # official test set; None when we must carve one ourselves
    y_test: np.ndarray | None
    source: str
    notice: str | None = None


def freeze(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.flags.writeable = False
