"""What does one sharpness estimate cost? Timed on the Lab's default MLP, against a training step.

    PYTHONPATH=. python benchmarks/sharpness_cost.py                  # CPU, 1 thread
    PYTHONPATH=. python benchmarks/sharpness_cost.py --device cuda --repeats 30

The Lab's default network (digits, 4 hidden ReLU layers of 64, 17,290 parameters) and its fixed
sharpness batch (the first 1,024 training examples): one estimate is core.lab.sharpness's 20
Hessian-vector products, warm-started, plus the one host copy. For scale, the median time of one
Adam step on a batch of 64, the Lab's default. Medians over the repeats.

Measured (CPU, 1 thread, on a 2-core machine under a load average of 7-8 from other jobs; three
runs): 168-190 ms an estimate, 0.83-1.03 ms a training step: one estimate costs about 200 steps,
so sharpness_every=200 about doubles a run's training time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from core.data.datasets import load_splits
from core.lab.config import RunConfig
from core.lab.models import build_model
from core.lab.sharpness import SHARPNESS_EXAMPLES, Sharpness
from core.training import DeviceData


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    cfg = RunConfig()
    splits = load_splits(cfg.dataset, seed=0, max_train=None, noise=cfg.noise)
    data = DeviceData(splits, device)
    model = build_model(cfg, splits.info.input_shape, splits.info.n_classes).to(device)
    x = data.prepare(data.x_train[:SHARPNESS_EXAMPLES])
    y = data.y_train[:SHARPNESS_EXAMPLES]
    estimator = Sharpness(model, every=1)

    def estimate() -> None:
        estimator.measure(0, lambda: F.cross_entropy(model(x), y))
        estimator.take()   # the host copy: waits for the device

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    def step() -> None:
        optimizer.zero_grad()
        F.cross_entropy(model(x[:cfg.batch_size]), y[:cfg.batch_size]).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    def median_seconds(work) -> float:
        work()   # warm-up
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            work()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    per_estimate, per_step = median_seconds(estimate), median_seconds(step)
    n = sum(p.numel() for p in model.parameters())
    print(f"{n:,} parameters, {len(y):,} examples, {device}: {per_estimate * 1e3:.1f} ms an "
          f"estimate, {per_step * 1e3:.2f} ms a training step (batch {cfg.batch_size}): one "
          f"estimate costs {per_estimate / per_step:.0f} steps")


if __name__ == "__main__":
    main()
