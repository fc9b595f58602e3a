"""How long does a run at the compute budget take? (core/budget.py)

    PYTHONPATH=. python benchmarks/budget_runs.py                 # every kind, 1 thread
    PYTHONPATH=. python benchmarks/budget_runs.py cnn lstm

For each kind of run, the most epochs its estimate allows within MAX_COMPUTE, trained with one
thread as the app trains (configure_for_server), the data already loaded (a server loads it once
per process). Prints the estimate and the wall time; the budget is meant to keep every line
within a minute or two on the machine the app is served from.
"""

from __future__ import annotations

import sys
import time

import torch

from core.budget import _largest, budget
from core.data.datasets import load_splits
from core.lab.config import RunConfig
from core.lab.runs import run_work
from core.lab.trainer import train
from core.recurrent.config import RecurrentConfig
from core.recurrent.trainer import recurrent_work, train_recurrent

F = "fashion-mnist"
KINDS = {
    "mlp": (RunConfig(dataset=F), run_work, 200, train),
    "cnn": (RunConfig(dataset=F, model="cnn", depth=2, width=16), run_work, 200, train),
    "deep_b1": (RunConfig(depth=100, width=16, batch_size=1, max_train=200), run_work, 200,
                train),
    "wide": (RunConfig(dataset=F, depth=3, width=1024, max_train=20000), run_work, 200, train),
    "lstm": (RecurrentConfig(cell="lstm", hidden=128, layers=2, max_train=5000), recurrent_work,
             50, train_recurrent),
}


def main(kinds: list[str]) -> None:
    torch.set_num_threads(1)
    load_splits(F)
    print(f"budget {budget():.2e} multiply-adds")
    for name in kinds or KINDS:
        base, work, most, fn = KINDS[name]
        epochs = _largest(1, most, lambda e: work({**base.to_dict(), "epochs": e}) <= budget())
        cfg = base.replace(epochs=epochs)
        start = time.perf_counter()
        result = fn(cfg)
        print(f"{name:8s} epochs={epochs:3d} estimate={work(cfg.to_dict()):.2e} "
              f"took {time.perf_counter() - start:6.1f} s ({result.status})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
