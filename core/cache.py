"""One run cache for every kind of run: `obtain(kind, cfg)` trains a config once, then serves it.

    from core.cache import obtain
    from core.lab.runs import LAB_RUN
    result = obtain(LAB_RUN, RunConfig(depth=10))   # trains once, then instant

A `RunKind` says how one family's runs are stored, trained and costed: the Lab's runs
(core/lab/runs.py), the recurrent lesson's (core/recurrent/trainer.py), attention's classifiers
(core/attention/softmax.py) and a sweep's cell summaries (core/lab/sweep.py). The path is the same for all:

    lock on the store key → the recent results in memory → the run store
        → else the compute budget (core.budget) → train → store → remember

Concurrent callers in one process asking for the same config wait for the first one's training
instead of training it again; other processes share the results through the store's file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from core.budget import Estimate, refuse
from core.store import RunStore

log = logging.getLogger(__name__)

# The last few results as objects, of every kind together: a page rerun (a button, a scrubber)
# asks again for the run it just drew, and re-reading it from SQLite would decompress and
# rebuild its tables each time.
RECENT_RUNS = 8
_recent: OrderedDict[tuple[str, str], Any] = OrderedDict()   # (store path, store key) -> result
_recent_guard = threading.Lock()
_default_store: RunStore | None = None


@dataclass(frozen=True)
class RunKind:
    """How one family's runs go through the cache. Its results are dataclasses with `config`,
    `to_dict()` and a `from_store` flag; its configs have `key()`."""

    name: str                                   # in log lines: "run", "recurrent run", ...
    prefix: str                                 # of the store key; "" for the Lab's runs
    result_from_dict: Callable[[dict], Any]     # a stored record back to a result
    estimate: Callable[[Any], Estimate]         # the config's cost, checked before it trains
    meta: Callable[[Any], dict]                 # small listable facts kept beside the payload
    # train(cfg, on_epoch): None for a kind whose caller trains it (a sweep stacks its cells).
    train: Callable[[Any, Callable | None], Any] | None = None

    def store_key(self, cfg: Any) -> str:
        return self.prefix + cfg.key()


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


def default_store() -> RunStore:
    """The process-wide store (path from SATLAB_STORE, else the user cache directory)."""
    global _default_store
    if _default_store is None:
        _default_store = RunStore()
    return _default_store


def load(kind: RunKind, cfg: Any, store: RunStore) -> Any | None:
    """The stored result of cfg, read from the store alone (not remembered), marked from_store;
    None if absent. An unreadable entry is dropped and counts as missing."""
    key = kind.store_key(cfg)
    record = store.get(key)
    if record is None:
        return None
    try:
        result = kind.result_from_dict(record)
    except (KeyError, TypeError, ValueError) as err:
        log.warning("dropping unreadable stored %s %s: %s", kind.name, key, err)
        store.delete(key)
        return None
    if result.config != cfg:  # a hash collision or a stale schema: never serve another run
        return None
    result.from_store = True
    return result


def cached(kind: RunKind, cfg: Any, store: RunStore | None = None) -> Any | None:
    """The result of cfg from memory or the store, or None; nothing trains."""
    store = default_store() if store is None else store
    recent_key = (str(store.path), kind.store_key(cfg))
    with _recent_guard:
        if recent_key in _recent:
            _recent.move_to_end(recent_key)
            return _recent[recent_key]
    result = load(kind, cfg, store)
    if result is not None:
        _remember(recent_key, result)
    return result


def put(kind: RunKind, result: Any, store: RunStore) -> None:
    """Store a result under its config's key, with the kind's meta beside it."""
    store.put(kind.store_key(result.config), result.to_dict(), meta=kind.meta(result))


def obtain(kind: RunKind, cfg: Any, store: RunStore | None = None,
           on_epoch: Callable | None = None) -> Any:
    """The result of cfg: from memory or the store if there, else trained now and stored.

    `on_epoch` goes to the kind's train. A config over the compute budget (core.budget) is
    refused with a ConfigError, saying what to lower, before anything trains; a stored result
    is served whatever it cost.
    """
    store = default_store() if store is None else store
    with training_lock(kind.store_key(cfg)):
        result = cached(kind, cfg, store)
        if result is not None:
            return result
        refuse(kind.estimate(cfg))
        result = kind.train(cfg, on_epoch)
        put(kind, result, store)
        # Later calls get it from memory, marked as a stored result (the tables are shared).
        _remember((str(store.path), kind.store_key(cfg)),
                  dataclasses.replace(result, from_store=True))
        return result


def forget_recent() -> None:
    """Drop the in-memory results (as a new process would start)."""
    with _recent_guard:
        _recent.clear()


def _remember(recent_key: tuple[str, str], result: Any) -> None:
    with _recent_guard:
        _recent[recent_key] = result
        _recent.move_to_end(recent_key)
        while len(_recent) > RECENT_RUNS:
            _recent.popitem(last=False)
