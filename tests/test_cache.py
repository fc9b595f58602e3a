"""The run cache (core/cache.py) on a kind defined here, with a trivial train: what every family's
runs get from it, without training a network."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from dataclasses import dataclass

import pytest

from core import cache
from core.budget import Estimate
from core.lab.config import ConfigError, RunConfig
from core.store import RunStore

FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}   # epochs: 1 to a few hundred


@dataclass(frozen=True)
class Cfg:
    n: int
    epochs: int = 1

    def key(self) -> str:
        return hashlib.sha256(f"{self.n}/{self.epochs}".encode()).hexdigest()[:20]


@dataclass
class Result:
    config: Cfg
    value: int
    from_store: bool = dataclasses.field(default=False, compare=False)

    def to_dict(self) -> dict:
        return {"n": self.config.n, "epochs": self.config.epochs, "value": self.value}

    @classmethod
    def from_dict(cls, d: dict) -> "Result":
        return cls(Cfg(int(d["n"]), int(d["epochs"])), int(d["value"]))


def make_kind(calls: list, pause: float = 0.0) -> cache.RunKind:
    def train(cfg: Cfg, on_epoch=None) -> Result:
        calls.append(cfg)
        time.sleep(pause)
        if on_epoch:
            on_epoch(cfg.epochs)
        return Result(cfg, cfg.n * cfg.n)

    def estimate(cfg: Cfg) -> Estimate:   # one unit of work an epoch
        return Estimate(f"squaring {cfg.n}", {"epochs": cfg.epochs}, lambda v: v["epochs"],
                        (("epochs", "lower"),), FIELDS)
    return cache.RunKind("square", "sq-", Result.from_dict, estimate,
                         lambda r: {"value": r.value}, train)


@pytest.fixture
def store(tmp_path):
    cache.forget_recent()
    yield RunStore(tmp_path / "runs.sqlite3")
    cache.forget_recent()


def test_a_result_is_trained_once_then_served_from_memory_and_the_store(store):
    calls: list = []
    kind = make_kind(calls)
    epochs: list = []
    first = cache.obtain(kind, Cfg(3), store, on_epoch=epochs.append)
    assert first.value == 9 and not first.from_store and epochs == [1]
    assert store.keys() == ["sq-" + Cfg(3).key()]
    assert store.entries()[0]["meta"] == {"value": 9}
    assert cache.obtain(kind, Cfg(3), store).from_store
    cache.forget_recent()                               # a new process: from the file
    again = cache.cached(kind, Cfg(3), store)
    assert again == first and again.from_store and calls == [Cfg(3)]


def test_concurrent_callers_train_one_config_once(store):
    calls: list = []
    kind = make_kind(calls, pause=0.2)
    start = threading.Barrier(6)
    results: list = []

    def ask() -> None:
        start.wait()
        results.append(cache.obtain(kind, Cfg(5), store))
    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert calls == [Cfg(5)] and len(results) == 6
    assert sorted(r.from_store for r in results) == [False] + [True] * 5
    assert len(cache._key_locks) == 0                   # no lock outlives its callers


def test_the_recent_results_are_bounded_and_shared_by_every_kind(store):
    calls: list = []
    squares, others = make_kind(calls), dataclasses.replace(make_kind(calls), prefix="other-")
    for n in range(cache.RECENT_RUNS):
        cache.obtain(squares, Cfg(n), store)
    cache.obtain(others, Cfg(0), store)                 # same config, another kind: its own
    assert len(cache._recent) == cache.RECENT_RUNS and len(calls) == cache.RECENT_RUNS + 1
    assert (str(store.path), "sq-" + Cfg(0).key()) not in cache._recent   # the oldest went
    assert (str(store.path), "other-" + Cfg(0).key()) in cache._recent


def test_an_unreadable_entry_is_dropped_and_trained_again(store):
    calls: list = []
    kind = make_kind(calls)
    cache.obtain(kind, Cfg(4), store)
    store.put("sq-" + Cfg(4).key(), {"n": "four"})      # damaged: from_dict raises ValueError
    cache.forget_recent()
    assert cache.load(kind, Cfg(4), store) is None
    assert "sq-" + Cfg(4).key() not in store
    assert not cache.obtain(kind, Cfg(4), store).from_store and calls == [Cfg(4), Cfg(4)]


def test_another_configs_entry_under_the_key_is_never_served(store):
    kind = make_kind([])
    store.put("sq-" + Cfg(6).key(), Result(Cfg(7), 49).to_dict())   # a collision, say
    assert cache.cached(kind, Cfg(6), store) is None


def test_a_request_over_the_budget_is_refused_before_it_trains(store, monkeypatch):
    calls: list = []
    kind = make_kind(calls)
    monkeypatch.setenv("SATLAB_MAX_COMPUTE", "5")       # five epochs' work
    with pytest.raises(ConfigError, match="epochs: squaring 2 needs about 8e0 .* lower "
                                          "epochs to 5"):
        cache.obtain(kind, Cfg(2, epochs=8), store)
    assert calls == [] and len(store) == 0
    cache.obtain(kind, Cfg(2, epochs=5), store)
    monkeypatch.setenv("SATLAB_MAX_COMPUTE", "1")       # stored: served whatever it cost
    assert cache.obtain(kind, Cfg(2, epochs=5), store).from_store
