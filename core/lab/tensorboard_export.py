"""Write a run's tables as TensorBoard event files, so a run opens in the tool people already use.

    export_tensorboard(result, "tb/run1")      # then: tensorboard --logdir tb
    python -m core export-tensorboard run.json tb/run1

Tags (TensorBoard groups by the part before the first slash):
  epoch/<split>/<metric>      loss, accuracy per split; step = epoch (0 = at initialisation)
  step/<column>               loss, grad_norm, lr, clipped of each training step; step = step
  step/sharpness              the top Hessian eigenvalue, where it was measured; step = step
  layers/<metric>/<layer>     every per-layer metric of core.lab.metrics.CATALOGUE; step = step
  histograms/<kind>/<layer>   the recorded histograms; step = epoch

Missing values (a diverged run's NaN, stored as null) are left out: TensorBoard draws a line
through the values that exist. Needs the `tensorboard` package (`pip install
'saturation-lab[tensorboard]'`); torch.utils.tensorboard writes the files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from core.lab.result import RunResult


def export_tensorboard(result: RunResult, log_dir: str | os.PathLike) -> Path:
    """Write the run's scalars and histograms into a new event file in log_dir (made if
    missing; its name ends in the run's key); log_dir."""
    from torch.utils.tensorboard import SummaryWriter

    log_dir = Path(log_dir)
    with SummaryWriter(log_dir=str(log_dir), filename_suffix=f".{result.key}") as writer:
        for (split, metric), rows in result.epochs.groupby(["split", "metric"], sort=False):
            _scalars(writer, f"epoch/{split}/{metric}", rows.epoch, rows.value)
        for column in ("loss", "grad_norm", "lr", "clipped"):
            _scalars(writer, f"step/{column}", result.steps.step, result.steps[column])
        _scalars(writer, "step/sharpness", result.sharpness.step, result.sharpness.sharpness)
        for (metric, layer), rows in result.layers.groupby(["metric", "layer"], sort=False):
            _scalars(writer, f"layers/{metric}/{layer}", rows.step, rows.value)
        for (kind, layer, epoch), bins in result.histograms.groupby(
                ["kind", "layer", "epoch"], sort=False):
            _histogram(writer, f"histograms/{kind}/{layer}", int(epoch), bins.sort_values("bin"))
    return log_dir


def _scalars(writer, tag: str, steps: pd.Series, values: pd.Series) -> None:
    for step, value in zip(steps.to_numpy(), values.to_numpy(float)):
        if np.isfinite(value):
            writer.add_scalar(tag, float(value), int(step))


def _histogram(writer, tag: str, epoch: int, bins: pd.DataFrame) -> None:
    """One snapshot's equal bins [lo, hi]. TensorBoard's bucket i spans up to bucket_limit[i]
    from the limit before it, the first from `min`, so the limits are the bins' upper edges.
    The run keeps counts, not values: sum and sum of squares (which TensorBoard's histogram
    and distribution views do not draw) are taken at the bins' centres."""
    lo, hi, counts = (bins[c].to_numpy(float) for c in ("lo", "hi", "count"))
    if not (np.isfinite(lo).all() and np.isfinite(hi).all() and np.isfinite(counts).all()) \
            or counts.sum() <= 0:
        return
    centres = (lo + hi) / 2
    writer.add_histogram_raw(
        tag, min=float(lo[0]), max=float(hi[-1]), num=int(counts.sum()),
        sum=float((centres * counts).sum()), sum_squares=float((centres ** 2 * counts).sum()),
        bucket_limits=hi.tolist(), bucket_counts=counts.tolist(), global_step=epoch)
