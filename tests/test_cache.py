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
    assert (store.location, "sq-" + Cfg(0).key()) not in cache._recent   # the oldest went
    assert (store.location, "other-" + Cfg(0).key()) in cache._recent


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


# --- admission ---------------------------------------------------------------------------------
def places(messages: list[str]) -> list[int]:
    """The queue places told to one caller, from "Queued: 2 runs ahead of yours ..."."""
    return [int(m.split()[1]) for m in messages if m.startswith("Queued:")]


def test_one_slot_trains_one_real_run_at_a_time_in_arrival_order(store, monkeypatch):
    from core.lab.runs import LAB_RUN
    monkeypatch.setattr(cache, "_admission", cache.Admission(1))
    guard, running, peak, started = threading.Lock(), [0], [0], []

    def train(cfg, on_epoch=None):   # the real trainer, with a count of those inside it
        with guard:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            started.append(cfg.seed)
        try:
            time.sleep(0.3)   # every session asks while the first still trains
            return LAB_RUN.train(cfg, on_epoch)
        finally:
            with guard:
                running[0] -= 1
    kind = dataclasses.replace(LAB_RUN, train=train)
    base = RunConfig(dataset="moons", depth=1, width=4, epochs=1)
    heard: dict[int, list[str]] = {seed: [] for seed in range(4)}
    start = threading.Barrier(4)

    def ask(seed: int) -> None:
        start.wait()
        cache.obtain(kind, base.replace(seed=seed), store, on_wait=heard[seed].append)
    threads = [threading.Thread(target=ask, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert peak[0] == 1 and sorted(started) == [0, 1, 2, 3]
    assert len(store) == 4
    first_place = {seed: places(m)[0] for seed, m in heard.items() if places(m)}
    assert sorted(first_place.values()) == [1, 2, 3]      # each waiter heard its own place
    assert all(places(m) == sorted(places(m), reverse=True) for m in heard.values())
    # First in, first out: the order they trained is the order of their places.
    assert started[1:] == sorted(first_place, key=first_place.get)
    assert cache._admission.running == 0 and cache._admission.waiting() == 0


def test_a_wait_past_the_limit_is_told_the_server_is_busy(store, monkeypatch):
    admission = cache.Admission(1, max_wait=1.0)
    monkeypatch.setattr(cache, "_admission", admission)
    kind = make_kind([])
    with admission.slot():          # a long training holds the only slot
        t0 = time.monotonic()
        with pytest.raises(cache.Busy, match="the server is busy: still 1 run ahead of yours "
                                             "after a 1 s wait"):
            cache.obtain(kind, Cfg(7), store)
        assert 1.0 <= time.monotonic() - t0 < 3.0
        assert admission.waiting() == 0 and len(store) == 0
    assert cache.obtain(kind, Cfg(7), store).value == 49   # free again: it trains at once


class Stop(BaseException):
    """As Streamlit's StopException: raised in a closed tab's script thread at its next call."""


def test_a_waiter_whose_page_stops_leaves_the_queue(monkeypatch):
    monkeypatch.setattr(cache, "WAIT_TICK", 0.05)
    admission = cache.Admission(1)
    released, tab_closed, got_slot = threading.Event(), threading.Event(), threading.Event()
    stopped: list[BaseException] = []
    behind: list[str] = []

    def hold() -> None:   # a training in progress
        with admission.slot():
            released.wait(10)

    def page(message: str) -> None:   # the first waiter's page: fine until its tab closes
        if tab_closed.is_set():
            raise Stop

    def first_waiter() -> None:
        try:
            with admission.slot(page):
                pass
        except Stop as stop:
            stopped.append(stop)

    def second_waiter() -> None:
        with admission.slot(behind.append):
            got_slot.set()
    threads = [threading.Thread(target=f) for f in (hold, first_waiter, second_waiter)]
    for t in threads:
        t.start()
        time.sleep(0.1)                                    # they arrive in this order
    assert places(behind)[-1] == 2                         # the training and the first waiter
    tab_closed.set()
    threads[1].join(10)
    assert len(stopped) == 1 and admission.waiting() == 1  # it left; the second still waits
    time.sleep(0.2)
    assert places(behind)[-1] == 1 and not got_slot.is_set()
    released.set()
    for t in threads:
        t.join(10)
    assert got_slot.is_set() and admission.running == 0 and admission.waiting() == 0


def test_the_number_of_slots_is_the_containers_cpus_or_the_variable(monkeypatch):
    from core.cpus import container_cpus
    monkeypatch.delenv("SATLAB_MAX_TRAININGS", raising=False)
    assert cache.max_trainings() == container_cpus()
    monkeypatch.setenv("SATLAB_MAX_TRAININGS", "3")
    assert cache.max_trainings() == 3
    for bad in ("0", "abc", "1.5", "inf", "-2"):
        monkeypatch.setenv("SATLAB_MAX_TRAININGS", bad)
        with pytest.raises(ConfigError, match="SATLAB_MAX_TRAININGS: must be a whole number"):
            cache.max_trainings()
        # …and refused where a process starts (the router, the CLI), before any request.
        with pytest.raises(ConfigError, match="SATLAB_MAX_TRAININGS"):
            cache.check_limits()


def test_a_second_session_asking_for_the_same_run_waits_for_it_without_queueing(store,
                                                                             monkeypatch):
    monkeypatch.setattr(cache, "WAIT_TICK", 0.05)
    monkeypatch.setattr(cache, "_admission", cache.Admission(1))
    calls: list = []
    kind = make_kind(calls, pause=0.4)
    heard: list[str] = []
    first = threading.Thread(target=lambda: cache.obtain(kind, Cfg(4), store))
    first.start()
    time.sleep(0.1)
    assert cache.obtain(kind, Cfg(4), store, on_wait=heard.append).from_store
    first.join(10)
    assert calls == [Cfg(4)]
    assert heard and all(m.startswith("Another session asked for this same run first")
                         for m in heard)
