"""How much faster is a stacked sweep than its cells trained one after another?

    PYTHONPATH=. python benchmarks/sweep_speed.py                  # 1 thread, as the app runs
    PYTHONPATH=. python benchmarks/sweep_speed.py --threads 1 2 --epochs 5 --repeats 3

Two 16-cell digits sweeps at the default depth/width, nothing read from or written to the store:
  lr × init          one network shape: all 16 cells in one stacked model (4 optimizer blocks)
  depth × activation four shapes: four stacked models of 4 cells each (mixed batching)
Each is timed three ways, interleaved and repeated (the median is reported, so a burst of load
from other processes on the machine hits all three alike):
  batched      run_sweep(spec): the stacked engine, core/lab/stacked.py
  sequential   run_sweep(spec, batched=False): train() per cell, what the Lab does per run
  lean alone   train_batched([cfg]) per cell: the stacked engine with one member, i.e. the same
               lean recording without stacking, to separate the gain of stacking from the gain
               of recording less than the Lab's full per-layer recorder
It also prints the largest difference in final validation accuracy between batched and
sequential cells, as a check that the speed is not bought with different results.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from core.lab.config import RunConfig
from core.lab.stacked import train_batched
from core.lab.sweep import SweepSpec, run_sweep


def sweeps(epochs: int) -> dict[str, SweepSpec]:
    base = RunConfig(dataset="digits", epochs=epochs)
    return {
        "lr × init": SweepSpec(base, x="lr", x_values=(1e-4, 1e-3, 1e-2, 1e-1),
                               y="init", y_values=("he_normal", "xavier_normal",
                                                   "normal_small", "normal_large")),
        "depth × activation": SweepSpec(base, x="depth", x_values=(2, 4, 8, 16),
                                        y="activation",
                                        y_values=("relu", "tanh", "sigmoid", "gelu")),
    }


def timed(fn) -> tuple[tuple[float, float], object]:
    """(wall seconds, this process's CPU seconds), result. On a shared machine the CPU time is
    the steadier figure: other processes' load stretches the wall time, not the CPU time."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - t, time.process_time() - c), out


def bench(spec: SweepSpec, repeats: int) -> dict:
    times: dict[str, list[tuple[float, float]]] = {"batched": [], "sequential": [],
                                                   "lean alone": []}
    batched = sequential = None
    for _ in range(repeats):
        t, batched = timed(lambda: run_sweep(spec, use_store=False))
        times["batched"].append(t)
        t, sequential = timed(lambda: run_sweep(spec, batched=False, use_store=False))
        times["sequential"].append(t)
        t, _ = timed(lambda: [train_batched([cfg]) for cfg in spec.cells()])
        times["lean alone"].append(t)
    diff = (batched.table.val_accuracy - sequential.table.val_accuracy).abs().max()
    return {"wall": {k: statistics.median(t[0] for t in v) for k, v in times.items()},
            "cpu": {k: statistics.median(t[1] for t in v) for k, v in times.items()},
            "all": times,
            "groups": batched.timing["groups"], "max_acc_diff": float(diff)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    specs = sweeps(args.epochs)
    for threads in args.threads:
        torch.set_num_threads(threads)
        # Warm up: imports, the dataset, first-call allocations, for every path.
        warm = SweepSpec(RunConfig(epochs=1), x="seed", x_values=(0, 1), y="lr",
                         y_values=(1e-3,))
        run_sweep(warm, use_store=False)
        run_sweep(warm, batched=False, use_store=False)
        print(f"\n== {threads} thread(s), torch {torch.__version__}, {args.epochs} epochs, "
              f"median of {args.repeats}")
        for name, spec in specs.items():
            r = bench(spec, args.repeats)
            print(f"{name}: stacked groups {r['groups']}, max |Δ val acc| batched vs "
                  f"sequential {r['max_acc_diff']:.4f}")
            for clock in ("wall", "cpu"):
                m = r[clock]
                print(f"  {clock:<4} batched {m['batched']:6.2f} s   sequential "
                      f"{m['sequential']:6.2f} s   lean alone {m['lean alone']:6.2f} s   "
                      f"→ {m['sequential'] / m['batched']:.1f}× vs sequential, "
                      f"{m['lean alone'] / m['batched']:.1f}× vs lean alone")
            print("  all (wall/cpu): " + "; ".join(
                f"{k} " + ", ".join(f"{w:.2f}/{c:.2f}" for w, c in v)
                for k, v in r["all"].items()))


if __name__ == "__main__":
    main()
