"""A 64-cell sweep's wall time in this process, in N local worker processes and through Ray.

    PYTHONPATH=. python benchmarks/sweep_engines.py                 # N = the container's CPUs
    PYTHONPATH=. python benchmarks/sweep_engines.py --jobs 4 --epochs 5
    RAY_ADDRESS=10.0.0.5:6379 PYTHONPATH=. python benchmarks/sweep_engines.py   # a real cluster

The sweep: digits, depth 2, 3, 4, 6 × 16 learning rates, 5 epochs: four network shapes, so four
stacked groups of 16 (halved for more workers than groups, see core.lab.sweep_engines). Nothing
is read from or written to the store. Each engine runs the sweep twice: "cold" includes starting
its workers (local: a fresh pool, its processes forked from a server that imported torch; Ray:
the job's workers, which import torch and receive the `core` package), "warm" is a second run
(local: a new pool from the running fork server; Ray: the same workers). Without RAY_ADDRESS,
Ray is a local cluster of N CPUs started here (`ray.init`), its start-up printed apart.
Every engine's cells must equal the one-process cells; the largest difference is printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from core.cpus import container_cpus
from core.lab.config import RunConfig
from core.lab.sweep import SweepSpec, run_sweep
from core.lab.sweep_engines import make_engine

LRS = tuple(float(v) for v in np.round(np.logspace(-4, -0.5, 16), 6))


def twice(spec: SweepSpec, engine) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(2):
        t = time.perf_counter()
        result = run_sweep(spec, use_store=False, engine=engine)
        times.append(time.perf_counter() - t)
    return times[0], times[1], result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=container_cpus())
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    spec = SweepSpec(RunConfig(dataset="digits", epochs=args.epochs), x="depth",
                     x_values=(2, 3, 4, 6), y="lr", y_values=LRS)
    print(f"{platform.node()}: {os.cpu_count()} CPUs, {container_cpus()} for this container, "
          f"load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}, 1 thread per "
          f"worker; {len(spec.cells())} cells, {args.epochs} epochs")
    cold, warm, here = twice(spec, make_engine(jobs=1))
    print(f"  1 process     cold {cold:6.1f} s   warm {warm:6.1f} s   groups {here.timing['groups']}")
    rows = {"local": make_engine(jobs=args.jobs)}

    import ray

    address = os.environ.get("RAY_ADDRESS", "").strip()
    t = time.perf_counter()
    if not address:
        ray.init(num_cpus=args.jobs, include_dashboard=False, log_to_driver=False,
                 runtime_env={"py_modules": [str(Path(__file__).parents[1] / "core")]})
        address = ray.get_runtime_context().gcs_address
    rows["ray"] = make_engine("ray", address=address)
    print(f"  Ray: {rows['ray'].workers} CPUs at {address}, joined in "
          f"{time.perf_counter() - t:.1f} s")
    cols = ["val_accuracy", "train_loss", "depth_ratio"]
    for name, engine in rows.items():
        cold, warm, result = twice(spec, engine)
        diff = (result.table[cols] - here.table[cols]).abs().max().max()
        print(f"  {name:<5} × {engine.workers:<3}   cold {cold:6.1f} s   warm {warm:6.1f} s   "
              f"groups {result.timing['groups']}   max |Δ| vs 1 process {diff:.1g}")
    ray.shutdown()


if __name__ == "__main__":
    main()
