"""The Stop click's hand-off, with its interleavings forced (issue 15): the script run a click
starts (the successor) asks for the run while the stopped one still trains in the old script
run's thread. Whatever the order, the successor is handed exactly the run the store keeps, which
is what the same link reopens, and nothing is stored twice. (The page's side, a click heard
through Streamlit, is tests/app/test_stop_browser.py's.)"""

from __future__ import annotations

import threading

import pytest

from core import cache
from core.lab.runs import cached_run, get_run
from core.store import RunStore
from core.training import StopTraining
from tests.lab.test_stop import CFG

STOP_AT = 2   # the epoch the click is heard after; the run ends after the next one


class Replaced(Exception):
    """A script run Streamlit stopped for a newer one (StopException's part here)."""


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "WAIT_TICK", 0.05)   # a waiter hears its place every 50 ms
    cache.forget_recent()
    store = RunStore(tmp_path / "runs.sqlite3")
    puts: list[str] = []
    put = store.put
    monkeypatch.setattr(store, "put", lambda key, *a, **k: puts.append(key) or put(key, *a, **k))
    store.puts = puts
    yield store
    cache.forget_recent()


def _in_thread(target) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = target()
        except BaseException as err:  # noqa: BLE001 - the test asserts on it
            out["error"] = err
    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def _successor(store, queued: threading.Event, *, replaced_after: int | None = None):
    """A successor script run's request (the page asks with stopped=True), which must not train:
    `queued` is set once it waits on the training's lock; with `replaced_after`, it is stopped
    for a newer run (a second rerun) at its wait's that many-th tick."""
    ticks = []

    def on_wait(message: str) -> None:
        ticks.append(message)
        queued.set()
        if replaced_after is not None and len(ticks) >= replaced_after:
            raise Replaced

    def on_epoch(partial) -> None:
        raise AssertionError("the successor trained a run of its own")
    return lambda: get_run(CFG, store=store, on_epoch=on_epoch, on_wait=on_wait, stopped=True)


@pytest.mark.parametrize("second_rerun", [False, True], ids=["one successor", "a second rerun"])
def test_the_successor_is_handed_the_stopped_run_the_store_keeps(store, second_rerun):
    clicked, at_stop, queued = threading.Event(), threading.Event(), threading.Event()

    def on_epoch(partial) -> None:   # the page's: a click is heard at an epoch boundary
        if partial.epochs_done == STOP_AT:
            at_stop.set()
            assert queued.wait(30)   # hold the training until the successor waits on it
            clicked.set()
        if clicked.is_set():
            raise StopTraining

    training, trained = _in_thread(
        lambda: get_run(CFG, store=store, on_epoch=on_epoch, stopped=True))
    assert at_stop.wait(60)
    waiters = []
    if second_rerun:   # the first successor leaves the queue; the next one is handed the run
        first_queued = threading.Event()
        waiters.append(_in_thread(_successor(store, first_queued, replaced_after=2)))
        assert first_queued.wait(30)
        waiters[0][0].join(30)
        assert isinstance(waiters[0][1].get("error"), Replaced)
    waiters.append(_in_thread(_successor(store, queued)))
    training.join(60)
    waiters[-1][0].join(60)
    shown = waiters[-1][1]["result"]
    assert "error" not in trained and "error" not in waiters[-1][1]
    assert shown.stopped and shown.epochs_done == trained["result"].epochs_done == STOP_AT + 1
    assert store.puts == [CFG.key()]                 # stored once, by the stopped training
    cache.forget_recent()                            # the same link in a new process
    reopened = cached_run(CFG, RunStore(store.path), stopped=True)
    assert reopened.stopped and reopened.epochs_done == shown.epochs_done


def test_a_training_abandoned_before_the_click_is_heard_leaves_the_successor_its_own_run(store):
    """The old script run ends without the click (another widget's rerun, or its wait for the
    next run ran out: app_pages.kit.runs.NEXT_RUN_WAIT): nothing of it is stored, and the
    successor trains the run itself; what it shows is what is stored."""
    at_epoch, queued = threading.Event(), threading.Event()

    def on_epoch(partial) -> None:
        if partial.epochs_done == STOP_AT:
            at_epoch.set()
            assert queued.wait(30)
            raise Replaced

    training, abandoned = _in_thread(
        lambda: get_run(CFG, store=store, on_epoch=on_epoch, stopped=True))
    assert at_epoch.wait(60)
    heard = []
    waiter, out = _in_thread(lambda: get_run(
        CFG, store=store, on_wait=lambda m: queued.set(),
        on_epoch=lambda partial: heard.append(partial.epochs_done), stopped=True))
    training.join(60)
    waiter.join(60)
    assert isinstance(abandoned.get("error"), Replaced)
    shown = out["result"]
    assert shown.status == "completed" and heard[0] == 0 and heard[-1] == CFG.epochs
    assert store.puts == [CFG.key()]
    cache.forget_recent()
    assert cached_run(CFG, RunStore(store.path), stopped=True).epochs_done == CFG.epochs
