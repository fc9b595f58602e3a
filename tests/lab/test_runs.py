"""get_run: trains once, then serves the stored result; damaged entries are retrained."""

import dataclasses
import threading

import pytest

import pandas as pd

from core.cache import forget_recent
from core.lab.config import RunConfig
from core.lab.runs import cached_run, get_run, run_label
from core.store import RunStore

CFG = RunConfig(depth=2, width=16, epochs=2)


def test_second_call_comes_from_the_store_and_is_identical(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite3")
    first = get_run(CFG, store=store)
    assert not first.from_store
    assert get_run(CFG, store=store).from_store      # from memory now
    forget_recent()                                   # a "restart": from SQLite
    again = get_run(CFG, store=RunStore(tmp_path / "runs.sqlite3"))
    assert again.from_store
    for table in ("epochs", "steps", "layers", "histograms"):
        pd.testing.assert_frame_equal(getattr(first, table), getattr(again, table),
                                      check_dtype=False)
    assert again.config == CFG and again.divergence == first.divergence
    assert again.timing == first.timing  # the original run's timing, not a fake new one


def test_diverged_runs_round_trip_with_their_nans(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite3")
    cfg = RunConfig(depth=10, activation="linear", init="normal_large", optimizer="sgd", lr=0.1,
                    epochs=2)
    first = get_run(cfg, store=store)
    again = get_run(cfg, store=store)
    assert first.diverged and again.diverged and again.from_store
    assert again.divergence == first.divergence
    pd.testing.assert_frame_equal(first.steps, again.steps, check_dtype=False)


def test_damaged_entry_is_retrained(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite3")
    get_run(CFG, store=store)
    store.put(CFG.key(), {"config": {"depth": "garbage"}})
    forget_recent()  # a new process finds the damaged entry on disk
    assert cached_run(CFG, store) is None
    assert not get_run(CFG, store=store).from_store
    assert get_run(CFG, store=store).from_store


def test_threads_asking_for_the_same_config_train_it_once(tmp_path, monkeypatch):
    import core.lab.runs

    store = RunStore(tmp_path / "runs.sqlite3")
    calls = []
    kind = core.lab.runs.LAB_RUN
    monkeypatch.setattr(core.lab.runs, "LAB_RUN", dataclasses.replace(
        kind, train=lambda cfg, on_epoch=None: calls.append(cfg) or kind.train(cfg, on_epoch)))
    cfg = CFG.replace(seed=7)
    results = []
    threads = [threading.Thread(target=lambda: results.append(get_run(cfg, store=store)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 4
    assert sum(not r.from_store for r in results) == 1


def test_server_mode_runs_training_on_one_thread():
    import torch

    from core.cpus import configure_for_server

    before = torch.get_num_threads()
    try:
        configure_for_server()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_repeat_is_served_from_memory_without_reading_the_store(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite3")
    cfg = CFG.replace(seed=11)
    get_run(cfg, store=store)
    first = cached_run(cfg, store)          # read from disk once
    monkeypatch.setattr(store, "get", lambda key: pytest.fail("store read again"))
    assert cached_run(cfg, store) is first  # then from memory


def test_a_stored_run_reads_as_what_it_is():
    cfg = RunConfig(depth=5, activation="sigmoid", optimizer="sgd", lr=0.1, init="xavier_normal",
                    momentum=0.5)   # momentum: no effect with plain SGD, so not named
    entry = {"key": cfg.key(), "created": 0.0,
             "meta": {"changed": cfg.changed(), "status": "diverged", "val_accuracy": 0.93125}}
    label = run_label(entry)
    assert label.startswith("digits · MLP 5×64 sigmoid · SGD lr 0.1 · 10 epochs · seed 0 · "
                            "init=xavier_normal — 93.1% val, diverged, trained "), label
    old = {"key": "a" * 20, "meta": {"changed": {"gone_setting": 1}}}
    assert run_label(old) == f"run {'a' * 20} (settings of an older version)"
