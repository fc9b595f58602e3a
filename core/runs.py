"""`get_run(config)`: the cached result of a config, training it only when the store lacks it.

This is the one way the app, the CLI and notebooks obtain a run:

    from core.runs import get_run
    result = get_run(RunConfig(depth=10, activation="sigmoid"))   # trains once, then instant

Concurrent callers asking for the same config in one process wait for the first one's training
instead of training it again (`training_lock`, which the recurrent, attention and sweep caches
share).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import threading
from collections import OrderedDict
from typing import Callable, Iterator

import torch

from core.budget import check_run
from core.config import RunConfig
from core.cpus import container_cpus
from core.result import RunResult
from core.store import RunStore
from core.trainer import train

log = logging.getLogger(__name__)

_default_store: RunStore | None = None
# The last few results as objects: a page rerun (a button, a scrubber) asks again for the run it
# just drew, and re-reading it from SQLite would decompress and rebuild its tables each time.
RECENT_RUNS = 8
_recent: OrderedDict[tuple[str, str], RunResult] = OrderedDict()
_recent_guard = threading.Lock()
_RUN_KEY = re.compile(r"[0-9a-f]{20}")   # RunConfig.key(); other entries (sweep cells) differ


class KeyLocks:
    """One lock per key, kept only while someone holds it or waits for it.

    Keys are the configs people ask for, so a lock per key kept forever (a defaultdict of
    locks) grows for the life of a server: one entry per config anyone ever tried. Here each
    entry counts its users and goes when the last one leaves. (A WeakValueDictionary would do
    the same, but `threading.Lock` objects cannot be weakly referenced.)
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, list] = {}   # key -> [lock, holders and waiters]

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[key]

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)


_key_locks = KeyLocks()


def training_lock(key: str) -> contextlib.AbstractContextManager[None]:
    """`with training_lock(store_key):` the one session in this process that may train it;
    the others wait, then find it in the store. Not re-entrant."""
    return _key_locks.hold(key)


def configure_for_server(threads: int = 1) -> None:
    """Settings for a process that serves many sessions (the Streamlit app).

    One intra-op thread per run: the app's networks are small, so splitting each op over cores
    gains little, while extra OpenMP threads spin against the web server's own thread and
    against other sessions' runs (measured here on 2 cores under load: the default run took
    3.1 s with 2 threads and 0.8 s with 1). Parallelism comes from the sessions instead.

    The inter-op pool (idle unless something forks work, e.g. `torch.jit.fork`) defaults to the
    host's core count; on a shared cloud host that is far more than the container's CPU quota,
    so it is sized to the container (core/cpus.py). Torch allows that once per process.
    """
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(container_cpus())
    except RuntimeError:  # set before, or inter-op work already started: keep what it has
        pass


def default_store() -> RunStore:
    """The process-wide store (path from SATLAB_STORE, else the user cache directory)."""
    global _default_store
    if _default_store is None:
        _default_store = RunStore()
    return _default_store


def cached_run(cfg: RunConfig, store: RunStore | None = None) -> RunResult | None:
    """The stored result for this config, or None. An unreadable entry counts as missing."""
    store = default_store() if store is None else store
    recent_key = (str(store.path), cfg.key())
    with _recent_guard:
        if recent_key in _recent:
            _recent.move_to_end(recent_key)
            return _recent[recent_key]
    record = store.get(cfg.key())
    if record is None:
        return None
    try:
        result = RunResult.from_dict(record)
    except (KeyError, TypeError, ValueError) as err:
        log.warning("dropping unreadable stored run %s: %s", cfg.key(), err)
        store.delete(cfg.key())
        return None
    if result.config != cfg:  # a hash collision or a stale schema: never serve another run
        return None
    result.from_store = True
    _remember(recent_key, result)
    return result


def stored_runs(store: RunStore | None = None) -> list[dict]:
    """The full runs in the store, most recently used first: [{key, meta}] (meta as `run_meta`)."""
    store = default_store() if store is None else store
    return [{"key": e["key"], "meta": e["meta"]} for e in store.entries()
            if _RUN_KEY.fullmatch(e["key"])]


def load_run(key: str, store: RunStore | None = None) -> RunResult | None:
    """A stored run by its key (a config hash); None if absent, unreadable or not a run."""
    store = default_store() if store is None else store
    if not _RUN_KEY.fullmatch(key or ""):
        return None
    record = store.get(key)
    if record is None:
        return None
    try:
        cfg = RunConfig.from_dict(record["config"])
    except (KeyError, TypeError, ValueError):
        return None
    return cached_run(cfg, store) if cfg.key() == key else None


def forget_recent() -> None:
    """Drop the in-memory results (as a new process would start)."""
    with _recent_guard:
        _recent.clear()


def _remember(recent_key: tuple[str, str], result: RunResult) -> None:
    with _recent_guard:
        _recent[recent_key] = result
        _recent.move_to_end(recent_key)
        while len(_recent) > RECENT_RUNS:
            _recent.popitem(last=False)


def get_run(cfg: RunConfig, *, store: RunStore | None = None,
            on_epoch: Callable[[RunResult], None] | None = None) -> RunResult:
    """The result for `cfg`: from the store if present, else trained now and stored.

    A run over the compute budget (core.budget) is refused with a ConfigError before it trains.
    """
    store = default_store() if store is None else store
    with training_lock(cfg.key()):
        result = cached_run(cfg, store)
        if result is not None:
            return result
        check_run(cfg)  # ConfigError, saying what to lower, if it is too big to train here
        result = train(cfg, on_epoch=on_epoch)
        store.put(cfg.key(), result.to_dict(), meta=run_meta(result))
        # Later calls get it from memory, marked as a cached result (the tables are shared).
        _remember((str(store.path), cfg.key()), dataclasses.replace(result, from_store=True))
        return result


def run_meta(result: RunResult) -> dict:
    """Small, listable facts about a run (kept beside the payload in the store)."""
    return {
        "changed": {k: v for k, v in result.config.changed().items()},
        "status": result.status,
        "val_accuracy": result.final("val", "accuracy"),
        "seconds": round(result.timing["seconds"], 3),
        "device": result.device,
    }
