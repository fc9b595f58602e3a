"""The memory budget (core/budget.py): each family's peak-memory estimate is an upper bound of
the peak it really reaches, measured; a request over the limit is refused, saying what to lower;
the recorded rows are capped; the budget variables refuse a value that is not a limit.

    SATLAB_OFFLINE=1 python -m pytest tests/test_memory.py
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import core.lab.runs
import core.lab.sweep
import core.lab.sweep_engines
from core import budget
from core.budget import memory_budget, refuse
from core.init.probe import probe, probe_estimate
from core.lab.config import ConfigError, RunConfig
from core.lab.runs import get_run, refuse_runs, run_estimate
from core.lab.sweep import SweepSpec, run_sweep
from core.recurrent.config import RecurrentConfig
from core.recurrent.trainer import recurrent_estimate
from core.store import RunStore
from tests.helpers import counting

REPO = Path(__file__).resolve().parents[1]
FASHION = "fashion-mnist"
MB = 2 ** 20

# --- the estimates against measured peaks ------------------------------------------------------
# Each request runs in a child process forked from a warm parent (torch imported, each dataset
# loaded, one tiny run of each kind trained: what a server holds before the request), so the
# child's VmHWM minus its VmRSS at the start is the peak the request itself adds. Forking keeps
# each measurement in a fresh process without paying torch's import for each.
# Less the file-backed pages the request maps in (RssFile, RssShmem): shared libraries' code
# (libtorch_cpu alone ~20 MB; ~45 MB in all for the Lab's default run, read from /proc's
# smaps). The kernel drops and re-reads those as it likes, so how many are mapped at the start
# depends on the machine's page cache: beside the rest of the suite the same CNN request
# measured 244 MB against 158-197 MB alone. A request's own memory is anonymous; file pages
# can be reclaimed, they cannot run a server out of memory.
MEASURE = r"""
import gc, json, os, sys, tempfile
import torch
torch.set_num_threads(1)
from core.attention.config import AttentionConfig
from core.attention.softmax import attention_estimate, get_attention
from core.data.raw import DatasetUnavailable
from core.init.probe import probe, probe_estimate
from core.lab.config import RunConfig
from core.lab.runs import get_run, run_estimate
from core.recurrent.config import RecurrentConfig
from core.recurrent.trainer import get_recurrent_run, recurrent_estimate
from core.store import RunStore

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

store = RunStore(os.path.join(tempfile.mkdtemp(), "runs.sqlite3"))
KINDS = {"lab": (RunConfig, lambda c: get_run(c, store=store), run_estimate),
         "probe": (RunConfig, probe, probe_estimate),
         "recurrent": (RecurrentConfig, lambda c: get_recurrent_run(c, store=store),
                       recurrent_estimate),
         "attention": (AttentionConfig, lambda c: get_attention(c, store=store),
                       attention_estimate)}
requests = [(kind, KINDS[kind][0].from_params(p)) for kind, p in json.loads(sys.argv[1])]
warm = {("lab", "moons", "mlp")}
for kind, cfg in requests:   # the server's own: imports, the data, a first run of each kind
    name = (kind, getattr(cfg, "dataset", ""), getattr(cfg, "model", ""))
    if name in warm:
        continue
    warm.add(name)
    try:
        if kind == "lab":
            get_run(RunConfig(dataset=cfg.dataset, model=cfg.model, depth=1, width=2, epochs=1,
                              max_train=8), store=store)
        elif kind == "probe":
            probe(RunConfig(dataset=cfg.dataset, depth=2, width=2))
        elif kind == "recurrent":
            get_recurrent_run(RecurrentConfig(dataset=cfg.dataset, hidden=2, max_train=8,
                                              epochs=1), store=store)
        else:
            get_attention(AttentionConfig(max_train=10, epochs=1), store=store)
    except DatasetUnavailable:
        pass
gc.collect()
out = []
for kind, cfg in requests:
    read, write = os.pipe()
    if os.fork() == 0:
        base, files = status("VmRSS"), status("RssFile") + status("RssShmem")
        try:
            KINDS[kind][1](cfg)
            mapped = status("RssFile") + status("RssShmem") - files
            answer = [base, status("VmHWM") - mapped]
        except DatasetUnavailable:
            answer = None
        os.write(write, json.dumps(answer).encode())
        os._exit(0)
    os.close(write)
    answer = json.loads(os.read(read, 1000))
    os.wait()
    if answer:
        out.append([kind, cfg.to_params(), answer[1] - answer[0], KINDS[kind][2](cfg).peak()])
print(json.dumps(out))
"""

# Chosen to stress each term of the estimates, each a second or less here: parameters and
# optimizer state, the recorder's stacked statistics, evaluation chunks and convolution
# workspaces, recorded rows, sequences' gates.
GRID = [
    ("lab", {"epochs": "2"}),
    ("lab", {"width": "1024", "max_train": "200", "epochs": "1"}),
    ("lab", {"depth": "30", "width": "256", "batch_size": "256", "max_train": "512",
             "epochs": "1"}),
    ("lab", {"model": "residual_mlp", "depth": "10", "width": "512", "batch_size": "512",
             "epochs": "1", "optimizer": "sgd"}),
    ("lab", {"dataset": FASHION, "width": "256", "batch_size": "1024", "max_train": "2048",
             "epochs": "1"}),
    ("lab", {"dataset": FASHION, "model": "cnn", "depth": "1", "width": "8", "max_train": "200",
             "epochs": "1"}),
    ("lab", {"model": "cnn", "depth": "2", "width": "64", "batch_size": "512", "epochs": "1",
             "batch_norm": "true"}),
    ("lab", {"depth": "20", "width": "8", "batch_size": "16", "epochs": "2",
             "record_every": "1"}),
    ("lab", {"dataset": FASHION, "depth": "2", "width": "512", "batch_size": "2048",
             "max_train": "4096", "epochs": "1", "dropout": "0.2"}),
    ("lab", {"depth": "30", "width": "256", "max_train": "1024", "epochs": "1",
             "batch_norm": "true", "sharpness_every": "20"}),   # the double-backward graph
    ("probe", {"depth": "100", "width": "256", "activation": "tanh"}),
    ("probe", {"depth": "20", "width": "1024"}),
    ("recurrent", {"cell": "lstm", "sequence": "chunks", "chunk": "16", "hidden": "128",
                   "batch_size": "256", "max_train": "256", "epochs": "1"}),
    ("recurrent", {"dataset": "digits", "cell": "gru", "layers": "2", "hidden": "256",
                   "batch_size": "512", "max_train": "512", "epochs": "1"}),
    ("attention", {"d": "512", "tokens": "patch2", "epochs": "1", "batch_size": "512",
                   "max_train": "512"}),
]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_the_memory_estimates_bound_the_measured_peaks():
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "SATLAB_MAX_MEMORY": "100G"}   # measure the estimate, not the refusal
    done = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(GRID)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    assert len(rows) >= 9, rows   # Fashion-MNIST may be missing offline; the rest may not
    report = "\n".join(f"{kind} {params}: measured {measured / MB:.0f} MB, estimated "
                       f"{estimate / MB:.0f} MB" for kind, params, measured, estimate in rows)
    for kind, params, measured, estimate in rows:
        # An upper bound, and not so loose that the limit would refuse what fits (the base:
        # what any request adds, which the small ones measure within a few MB of).
        assert measured <= estimate <= 3 * measured + budget.REQUEST_BASE, report


# --- refusals ----------------------------------------------------------------------------------
def suggestion(message: str, name: str) -> int:
    match = re.search(rf"\b{name} to ([\d,]+)", message)
    assert match, (name, message)
    return int(match.group(1).replace(",", ""))


def over_memory(estimate) -> str:
    with pytest.raises(ConfigError, match="of memory at its peak, over the limit of 800 MB "
                                          r"a request \(SATLAB_MAX_MEMORY\)") as err:
        refuse(estimate)
    return str(err.value)


def test_the_issues_heavy_requests_are_refused_with_what_to_lower(tmp_path, monkeypatch):
    # Issue 14's links, measured there at 7.1 GB, 3.0 GB and 1.9 GB of peak memory.
    calls: list = []
    counting(core.lab.runs, "LAB_RUN", calls, monkeypatch, pause=0.0)
    cnn = RunConfig(model="cnn", depth=1, width=128, batch_size=2048, max_train=2000, epochs=1,
                    dataset=FASHION)
    with pytest.raises(ConfigError, match="of memory at its peak") as err:
        get_run(cnn, store=RunStore(tmp_path / "runs.sqlite3"))
    assert calls == []
    refuse(run_estimate(cnn.replace(width=suggestion(str(err.value), "width"))))
    deep = RunConfig(depth=100, width=1024, max_train=100, epochs=1)
    message = over_memory(run_estimate(deep))
    for name in ("width", "depth"):
        refuse(run_estimate(deep.replace(**{name: suggestion(message, name)})))
    rows = RunConfig(depth=100, width=2, record_every=1, batch_size=8, epochs=17)
    message = over_memory(run_estimate(rows))
    assert "record_every to" in message, message
    refuse(run_estimate(rows.replace(record_every=suggestion(message, "record_every"))))
    # The probe at depth 100, width 1024 (1.6 GB there) is refused before it draws a weight.
    with pytest.raises(ConfigError, match="this probe .* of memory") as err:
        probe(RunConfig(depth=100, width=1024, init="orthogonal"))
    refuse(probe_estimate(RunConfig(depth=100, width=suggestion(str(err.value), "width"),
                                    init="orthogonal")))
    # An LSTM over 196 chunks of MNIST at batch 1024 (1.5 GB there).
    lstm = RecurrentConfig(dataset="mnist", cell="lstm", sequence="chunks", chunk=4,
                           batch_size=1024, epochs=1)
    message = over_memory(recurrent_estimate(lstm))
    refuse(recurrent_estimate(lstm.replace(batch_size=suggestion(message, "batch_size"))))


def test_a_sweep_is_refused_for_its_stacked_members_memory(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("trained")
    monkeypatch.setattr(core.lab.sweep_engines, "train_batched", fail)
    monkeypatch.setattr(core.lab.sweep_engines, "train", fail)
    # Issue 14's 64-cell grid at depth 4, width 1024 (4.9 GB there): each cell fits alone.
    spec = SweepSpec(RunConfig(depth=4, width=1024, max_train=100, epochs=1), x="seed",
                     x_values=tuple(range(8)), y="lr",
                     y_values=tuple(k / 1000 for k in range(1, 9)))
    for cell in spec.cells():
        refuse(run_estimate(cell))
    with pytest.raises(ConfigError, match=r"cells: this sweep's 64 cells to train need about "
                                          r".* of memory together, over the limit of 800 MB"):
        run_sweep(spec, use_store=False)


def test_two_runs_of_one_request_are_counted_together(tmp_path, monkeypatch):
    monkeypatch.setenv("SATLAB_MAX_MEMORY", "200M")   # a small server: runs that train fast
    store = RunStore(tmp_path / "runs.sqlite3")
    a = RunConfig(width=1024, max_train=200, epochs=1)
    b = a.replace(seed=1)
    alone = run_estimate(a).peak()
    assert alone < memory_budget() < 2 * alone - budget.REQUEST_BASE
    with pytest.raises(ConfigError, match="runs: the 2 runs to train need about .* of memory "
                                          "together, over the limit of 200 MB"):
        refuse_runs([a, b], store)
    refuse_runs([a, a], store)   # the same run twice trains once
    get_run(a, store=store)
    refuse_runs([a, b], store)   # a stored run costs nothing


# --- recorded rows ------------------------------------------------------------------------------
def test_recorded_rows_stay_under_the_cap(monkeypatch):
    import core.lab.trainer
    from core.lab.trainer import train

    cap = 2000
    monkeypatch.setattr(core.lab.trainer, "MAX_LAYER_ROWS", cap)
    monkeypatch.setattr(budget, "MAX_LAYER_ROWS", cap)
    cfg = RunConfig(depth=2, width=4, epochs=3)   # every step of 17 would be 2,394 rows
    estimate = run_estimate(cfg)
    assert estimate.rows(dict(estimate.values)) <= cap
    result = train(cfg)
    assert len(result.layers) <= cap
    assert result.steps["step"].nunique() > len(result.layers["step"].unique())  # not every step
    with pytest.raises(ConfigError, match="record_every: .* layer-table rows, over the cap of "
                                          "2,000") as err:
        refuse(run_estimate(cfg.replace(record_every=1)))
    refuse(run_estimate(cfg.replace(record_every=suggestion(str(err.value), "record_every"))))


# --- the budget variables ---------------------------------------------------------------------
@pytest.mark.parametrize("variable,read", [("SATLAB_MAX_COMPUTE", budget.budget),
                                           ("SATLAB_MAX_MEMORY", budget.memory_budget)])
@pytest.mark.parametrize("value", ["inf", "1e999", "nan", "abc", "-5", "0", "2X"])
def test_a_budget_variable_that_is_not_a_limit_is_refused(variable, read, value, monkeypatch):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=rf"^{variable}: '{re.escape(value)}' is not a limit: "
                                          "set a finite positive number"):
        read()
    with pytest.raises(ConfigError, match=variable):   # and so is every request
        refuse(run_estimate(RunConfig()))


def test_budget_variables_take_numbers_and_sizes(monkeypatch):
    monkeypatch.setenv("SATLAB_MAX_MEMORY", "2G")
    assert memory_budget() == 2 * 2 ** 30
    monkeypatch.setenv("SATLAB_MAX_MEMORY", "1500000000")
    assert memory_budget() == 1.5e9
    monkeypatch.setenv("SATLAB_MAX_COMPUTE", "1e12")
    assert budget.budget() == 1e12
    monkeypatch.delenv("SATLAB_MAX_MEMORY")
    assert memory_budget() == budget.MAX_MEMORY == 800 * MB


# --- the pages ----------------------------------------------------------------------------------
PAGES = [   # page, link, SATLAB_MAX_MEMORY (None: the default), what the error says
    ("lab", {"model": "cnn", "depth": "1", "width": "128", "batch_size": "2048",
             "max_train": "2000", "epochs": "1", "dataset": FASHION}, None,
     "This run could not start: width: this run"),
    ("compare", {"depth": "20", "width": "1024", "max_train": "200", "epochs": "1"}, None,
     "These runs could not start: runs: the 2 runs to train need about"),
    ("playground", {"compare": "true", "width": "256", "depth": "8"}, "playground",
     "These runs could not start: runs: the 2 runs to train need about"),
    ("sweep", {"x": "seed", "xv": "0,1,2,3,4,5,6,7", "y": "lr",
               "yv": "0.001,0.002,0.003,0.004,0.005,0.006,0.007,0.008", "depth": "4",
               "width": "1024", "max_train": "100", "epochs": "1"}, None,
     "This sweep cannot run: cells: this sweep's 64 cells to train need about"),
    ("initialization", {"depth": "100", "width": "1024", "init": "orthogonal"}, None,
     "This network could not be probed: width: this probe"),
    ("recurrent", {"dataset": "mnist", "cell": "lstm", "sequence": "chunks", "chunk": "4",
                   "batch_size": "1024", "epochs": "1"}, None,
     "This run could not start: batch_size: this run"),
    ("attention", {"d": "512", "tokens": "patch2", "batch_size": "1024"}, "200M",
     "The classifier could not be trained: d: training both classifiers"),
    ("optimizers", {"iterations": "2000"}, "65M",   # a race's rows: ~3 MB over the base
     "This race could not start: iterations: this race"),
]


@pytest.mark.parametrize("page,link,limit,says", PAGES, ids=[p[0] for p in PAGES])
def test_each_page_shows_a_memory_refusal_and_trains_nothing(page, link, limit, says,
                                                            monkeypatch):
    from streamlit.testing.v1 import AppTest

    import core.attention.softmax
    import core.init.probe
    import core.optimizers.race
    import core.recurrent.trainer

    def fail(*args, **kwargs):
        raise AssertionError("trained")
    for module, kind in ((core.lab.runs, "LAB_RUN"), (core.lab.sweep, "SWEEP_CELL"),
                         (core.recurrent.trainer, "RECURRENT_RUN"),
                         (core.attention.softmax, "ATTENTION_RUN")):
        monkeypatch.setattr(module, kind, dataclasses.replace(getattr(module, kind), train=fail))
    monkeypatch.setattr(core.lab.sweep_engines, "train_batched", fail)
    monkeypatch.setattr(core.init.probe, "build_model", fail)
    monkeypatch.setattr(core.optimizers.race, "racer", fail)
    if limit == "playground":   # between one of the pair's runs and both
        from core.lab.config import RunConfig as Config
        one = run_estimate(Config(dataset="moons", depth=8, width=256, lr=0.05, batch_size=128,
                                  epochs=30)).peak()
        limit = str(int(one + (one - budget.REQUEST_BASE) / 2))
    if limit:
        monkeypatch.setenv("SATLAB_MAX_MEMORY", limit)
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
    for name, value in link.items():
        at.query_params[name] = value
    at.switch_page(f"app_pages/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert any(e.startswith(says) and "memory" in e for e in errors), errors
    assert "Traceback" not in " ".join(errors)


def test_a_bad_budget_variable_stops_the_cli_and_the_app_at_start(monkeypatch, capsys):
    from streamlit.testing.v1 import AppTest

    from core.tools.cli import main

    monkeypatch.setenv("SATLAB_MAX_COMPUTE", "1e999")
    with pytest.raises(SystemExit) as stop:   # even a run the store would serve: at start
        main(["train", "--dataset", "moons", "--depth", "1", "--width", "4", "--epochs", "1"])
    assert stop.value.code == 2
    assert "SATLAB_MAX_COMPUTE: '1e999' is not a limit" in capsys.readouterr().err
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error] == [
        "This server is misconfigured: SATLAB_MAX_COMPUTE: '1e999' is not a limit: "
        "set a finite positive number (multiply-adds; the default is 6e11), or unset it"]
