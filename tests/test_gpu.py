"""Every device path gives the CPU's results within float tolerance: the Lab's recorder (with
its dead-unit probe set), the stacked sweep, the recurrent per-step recording and `watch` (with
its probe batch). Each runs on a pair of devices: (cpu, cpu) here, so the comparison code itself
is exercised on every machine (and must be exact), and (cpu, cuda) where torch sees a GPU. TF32
is switched off for the CUDA side (torch allows it in cuDNN by default): fp32 against fp32.
Where there is a GPU, the benchmark's CUDA-graph and torch.compile steps also train as its eager
step does.

core/init/probe.py (the initialisation probe) has no device setting: it runs on the CPU only,
so it has no GPU path to compare.

Also: benchmarks/gpu.py runs in its quick CPU mode and prints a table of the expected shape."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.lab.config import RunConfig
from core.lab.stacked import train_batched
from core.lab.trainer import train
from core.recurrent.config import RecurrentConfig
from core.recurrent.trainer import train_recurrent
from core.watch import watch

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [pytest.param(("cpu", "cpu"), id="cpu-cpu"),
         pytest.param(("cpu", "cuda"), id="cpu-cuda", marks=pytest.mark.skipif(
             not torch.cuda.is_available(), reason="no CUDA device: torch sees no GPU here"))]
RTOL, ATOL = 1e-3, 1e-5       # a few float32 roundings, grown over a few dozen Adam steps
# Shares and accuracies count (example, unit) pairs or examples on either side of a threshold:
# a value within rounding of it may fall the other way (one unit of a 32-wide layer is 0.03).
SHARES = {"saturation", "inactive", "dead", "accuracy"}
SHARE_ATOL = 0.05


@pytest.fixture
def fp32_everywhere():
    """No TF32 on the GPU for the test's duration (matmul's is off by default; cuDNN's is on)."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def assert_frames_close(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    """Same rows and labels; numbers within tolerance: RTOL/ATOL, SHARE_ATOL for the rows (long
    tables: `metric`) or columns (wide tables) that are shares, and ±1% of a histogram's total
    for its counts."""
    assert list(a.columns) == list(b.columns), what
    assert len(a) == len(b) and len(a) > 0, f"{what}: {len(a)} rows vs {len(b)}"
    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    shares = a["metric"].isin(SHARES).to_numpy() if "metric" in a else np.zeros(len(a), bool)
    for col in a.columns:
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if not np.issubdtype(x.dtype, np.floating):
            assert (x == y).all(), f"{what}: column {col} differs"
            continue
        if col == "count":
            total = a.groupby(["epoch", "layer", "kind"])["count"].transform("sum").to_numpy()
            atol = 0.01 * total
        else:
            atol = np.where(shares | (col in SHARES), SHARE_ATOL, ATOL)
        ok = np.isclose(x, y, rtol=RTOL, atol=0) | (np.abs(x - y) <= atol) | (
            np.isnan(x) & np.isnan(y))
        assert ok.all(), (f"{what}: column {col}, {int((~ok).sum())} of {len(ok)} values differ, "
                          f"first: {a[~ok].head(3).to_dict('records')} vs "
                          f"{b[~ok].head(3).to_dict('records')}")


def lab_run(device: str, seed: int = 0):
    cfg = RunConfig(dataset="digits", depth=3, width=32, activation="tanh", epochs=2,
                    batch_size=128, max_train=640, record_every=1, seed=seed, device=device)
    return train(cfg)


def assert_lab_runs_agree(a, b) -> None:
    for table in ("epochs", "steps", "layers", "histograms"):
        assert_frames_close(getattr(a, table), getattr(b, table), table)


@pytest.mark.parametrize("devices", PAIRS)
def test_the_recorder_and_its_probe_set_agree_across_devices(devices, fp32_everywhere):
    a, b = (lab_run(d) for d in devices)
    assert b.device.startswith(devices[1]) and a.status == b.status == "completed"
    assert (b.layers["metric"] == "dead").any()     # the probe set was measured
    assert_lab_runs_agree(a, b)


def test_the_comparison_tells_runs_apart():
    """The tolerances are tight enough to see another seed: the comparison can fail."""
    with pytest.raises(AssertionError, match="differ"):
        assert_lab_runs_agree(lab_run("cpu", seed=0), lab_run("cpu", seed=1))


@pytest.mark.parametrize("devices", PAIRS)
def test_the_stacked_sweep_agrees_across_devices(devices, fp32_everywhere):
    def cells(device):
        base = RunConfig(dataset="digits", depth=3, width=32, activation="sigmoid", epochs=2,
                         batch_size=128, max_train=640, device=device)
        return train_batched([base.replace(lr=lr) for lr in (1e-3, 1e-2)])
    for a, b in zip(*(cells(d) for d in devices)):
        assert a.status == b.status == "completed"
        assert np.allclose(a.out_grad_norms, b.out_grad_norms, rtol=RTOL, atol=ATOL)
        assert np.allclose(a.flat, b.flat, atol=SHARE_ATOL)
        assert_frames_close(a.epochs, b.epochs, "stacked epochs")


@pytest.mark.parametrize("devices", PAIRS)
def test_recurrent_per_step_recording_agrees_across_devices(devices, fp32_everywhere):
    def run(device):
        return train_recurrent(RecurrentConfig(dataset="digits", cell="lstm", hidden=16,
                                               max_train=256, batch_size=64, epochs=2,
                                               record_every=1, device=device))
    a, b = (run(d) for d in devices)
    assert b.device.startswith(devices[1])
    for table in ("epochs", "steps", "time_grads"):
        assert_frames_close(getattr(a, table), getattr(b, table), table)


@pytest.mark.parametrize("devices", PAIRS)
def test_watch_and_its_probe_agree_across_devices(devices, fp32_everywhere):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 32, 20, generator=gen), torch.randint(0, 5, (8, 32), generator=gen)
    torch.manual_seed(0)
    init = nn.Sequential(nn.Linear(20, 24), nn.ReLU(), nn.Linear(24, 24), nn.Tanh(),
                         nn.Linear(24, 5)).state_dict()

    def run(device):
        model = nn.Sequential(nn.Linear(20, 24), nn.ReLU(), nn.Linear(24, 24), nn.Tanh(),
                              nn.Linear(24, 5)).to(device)
        model.load_state_dict(init)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        with watch(model, opt, every=2, probe=x[0].to(device)) as w:
            for xb, yb in zip(x.to(device), y.to(device)):
                opt.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                w.after_backward(loss)
                opt.step()
        return w.result()
    a, b = (run(d) for d in devices)
    assert b.device.startswith(devices[1]) and (b.layers["metric"] == "dead").any()
    for table in ("steps", "layers"):
        assert_frames_close(getattr(a, table), getattr(b, table), f"watch {table}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: CUDA graphs and "
                    "torch.compile's reduce-overhead mode capture CUDA work")
@pytest.mark.parametrize("mode", ["graph", "compile"])
def test_the_benchmarks_captured_steps_train_as_the_eager_step_does(mode, fp32_everywhere,
                                                                    monkeypatch):
    """A captured step that replayed the wrong work (stale gradients, a frozen batch) would time
    something else: after the same batches, its weights are the eager step's."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(512, 784, generator=gen).cuda(), torch.randint(0, 10, (512,)).cuda()
    order = torch.randperm(512, generator=gen).cuda()

    def weights(mode: str) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = gpu.bench.idiomatic_model().cuda()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=mode == "graph")
        idx = torch.arange(gpu.BATCH, device="cuda")
        run = gpu.resident_step(model, opt, x, y, idx, mode)
        for i in range(len(y) // gpu.BATCH):
            idx.copy_(order[i * gpu.BATCH:(i + 1) * gpu.BATCH])
            run()
        return [p.detach().cpu() for p in model.parameters()]
    for eager, captured in zip(weights("eager"), weights(mode)):
        assert torch.allclose(eager, captured, rtol=RTOL, atol=ATOL)


def test_the_gpu_benchmark_runs_on_the_cpu_and_prints_its_table():
    out = subprocess.run([sys.executable, "benchmarks/gpu.py", "--device", "cpu", "--quick"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    head = dict(line.split(": ", 1) for line in lines[:5])
    assert list(head) == ["date", "device", "machine", "versions", "data"]
    assert head["device"] == "cpu: CPU only" and torch.__version__ in head["versions"]
    table = lines[5:]
    assert table[0].split() == ["what", "figure", "target"]
    rows = [re.match(r"(\w+)\s+(.+?)\s{2,}(-?[\d,.]+) (s|ms|%)\s*$", line) for line in table[1:]]
    assert all(rows), table
    sections = [r[1] for r in rows]
    assert sections == ["epoch"] * 4 + ["lab", "sweep"] + ["watch"] * 3
    figures = {r[2]: float(r[3].replace(",", "")) for r in rows}
    assert all(v > 0 for k, v in figures.items() if k != "watch overhead")
    assert any("idiomatic loop (cpu)" in k for k in figures)
