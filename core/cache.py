"""One run cache for every kind of run: `obtain(kind, cfg)` trains a config once, then serves it.

    from core.cache import obtain
    from core.lab.runs import LAB_RUN
    result = obtain(LAB_RUN, RunConfig(depth=10))   # trains once, then instant

A `RunKind` says how one family's runs are stored, trained and costed: the Lab's runs
(core/lab/runs.py), the recurrent lesson's (core/recurrent/trainer.py), attention's classifiers
(core/attention/softmax.py) and a sweep's cell summaries (core/lab/sweep.py). The path is the same for all:

    lock on the store key → the recent results in memory → the run store
        → else the compute budget (core.budget) → the store's lease on the key → the store again
        → a training slot → train → store → remember

A run its user stopped (core.training.StopTraining) is stored like any, with status "stopped";
only a caller that asks for it (`stopped=True`: the page that offers Stop) is served it, and for
every other a stopped run counts as missing, so it trains in full and replaces the stopped one.
Compare, the Playground or the CLI never take a stopped run for a complete one.

Concurrent callers asking for the same config wait for the first one's training instead of
training it again: in one process on a lock per key, across processes and replicas on the store's
lease for the key (RunStore.lease), then read its result from the store.

Admission: at most `max_trainings()` trainings run at once in a process (the container's CPUs,
or SATLAB_MAX_TRAININGS), because each runs on one thread: more at once only makes each slower
and adds its memory. The rest wait in arrival order, told their place every second through
`on_wait`, and are refused as busy after MAX_WAIT seconds. A caller's `on_wait` may raise (a
Streamlit page whose tab was closed raises StopException from its next call): it then leaves the
queue. After each training the memory it freed goes back to the system (`_return_freed_memory`).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from core import budget
from core.budget import Estimate, refuse
from core.cpus import container_cpus
from core.settings import ConfigError
from core.store import RunStore, backend_for

log = logging.getLogger(__name__)

# The last few results as objects, of every kind together: a page rerun (a button, a scrubber)
# asks again for the run it just drew, and re-reading it from SQLite would decompress and
# rebuild its tables each time.
RECENT_RUNS = 8
_recent: OrderedDict[tuple[str, str], Any] = OrderedDict()   # (store location, key) -> result
_recent_guard = threading.Lock()
_default_store: RunStore | None = None
_ANOTHER_FIRST = "Another session asked for this same run first; its result will show here."
MAX_WAIT = 60.0      # seconds a request waits for a training slot before it is told "busy"
WAIT_TICK = 1.0      # how often a waiting caller hears its place (and may leave)


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
    def hold(self, key: str, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold key's lock; while another holds it, `on_wait(message)` every WAIT_TICK."""
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            while not entry[0].acquire(timeout=WAIT_TICK):
                if on_wait:
                    on_wait(_ANOTHER_FIRST)
            try:
                yield
            finally:
                entry[0].release()
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[key]

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)


_key_locks = KeyLocks()


def training_lock(key: str, on_wait: Callable[[str], None] | None = None
                  ) -> contextlib.AbstractContextManager[None]:
    """`with training_lock(store_key):` the one session in this process that may train it;
    the others wait (hearing `on_wait(message)` every second), then find it in the store.
    Not re-entrant."""
    return _key_locks.hold(key, on_wait)


class Busy(RuntimeError):
    """No training slot came free within the longest wait."""


class Admission:
    """At most `slots` trainings at once; the others wait in arrival order (FIFO)."""

    def __init__(self, slots: int, max_wait: float = MAX_WAIT):
        self.slots, self.max_wait = slots, max_wait
        self._changed = threading.Condition()
        self._queue: deque[object] = deque()   # one ticket per waiting caller, oldest first
        self.running = 0

    def _may_start(self, ticket: object) -> bool:
        return self._queue[0] is ticket and self.running < self.slots

    @contextlib.contextmanager
    def slot(self, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold a training slot. While waiting, `on_wait(message)` hears the caller's place
        every WAIT_TICK; if it raises, or the wait passes max_wait (Busy), the caller leaves
        the queue. On release, the memory the training freed goes back to the system."""
        ticket = object()
        deadline = time.monotonic() + self.max_wait
        with self._changed:
            self._queue.append(ticket)
        try:
            while True:
                with self._changed:
                    if self._may_start(ticket):
                        self._queue.popleft()
                        self.running += 1
                        break
                    ahead = self.running + self._queue.index(ticket)
                    left = deadline - time.monotonic()
                    runs = f"{ahead} run{'s' if ahead != 1 else ''} ahead of yours"
                    if left <= 0:
                        raise Busy(f"the server is busy: still {runs} after a "
                                   f"{self.max_wait:.0f} s wait; please try again in a minute")
                if on_wait:  # outside the lock: it draws, and it may raise
                    on_wait(f"Queued: {runs} (this server trains {self.slots} at a time).")
                with self._changed:
                    if not self._may_start(ticket):
                        self._changed.wait(min(WAIT_TICK, left))
        except BaseException:
            with self._changed:
                if ticket in self._queue:
                    self._queue.remove(ticket)
                    self._changed.notify_all()   # the next one may now be first
            raise
        try:
            yield
        finally:
            with self._changed:
                self.running -= 1
                self._changed.notify_all()
            _return_freed_memory()

    def waiting(self) -> int:
        with self._changed:
            return len(self._queue)


def max_trainings() -> int:
    """SATLAB_MAX_TRAININGS, else one training per CPU of the container (core.cpus)."""
    text = os.environ.get("SATLAB_MAX_TRAININGS", "").strip()
    if not text:
        return container_cpus()
    if not text.isdigit() or int(text) < 1:
        raise ConfigError("SATLAB_MAX_TRAININGS",
                          f"must be a whole number of trainings at once, 1 or more; got {text!r}")
    return int(text)


def check_limits() -> None:
    """Every limit a server reads from its environment, the budgets' and admission's, refusing
    a bad value (ConfigError) where a process starts (the app's router, the CLI)."""
    budget.check_limits()
    max_trainings()
    # SATLAB_STORE: a malformed URL is refused here, opening nothing (`train --no-store` never
    # touches the store); a server that does not answer is logged where the store is first used.
    backend_for()


_admission: Admission | None = None
_admission_guard = threading.Lock()


def admission() -> Admission:
    """The process-wide admission queue, sized on first use."""
    global _admission
    with _admission_guard:
        if _admission is None:
            _admission = Admission(max_trainings())
        return _admission


def default_store() -> RunStore:
    """The process-wide store (SATLAB_STORE: a path or a postgresql:// URL, else the user cache
    directory)."""
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


def cached(kind: RunKind, cfg: Any, store: RunStore | None = None, *,
           stopped: bool = False) -> Any | None:
    """The result of cfg from memory or the store, or None; nothing trains. A run its user
    stopped counts only with `stopped=True`."""
    store = default_store() if store is None else store
    recent_key = (store.location, kind.store_key(cfg))
    with _recent_guard:
        result = _recent.get(recent_key)
        if result is not None:
            _recent.move_to_end(recent_key)
    if result is None:
        result = load(kind, cfg, store)
        if result is not None:
            _remember(recent_key, result)
    # Only trained runs (core.tables.TrainedRun) can be stopped; a sweep's cells cannot.
    if result is not None and not stopped and getattr(result, "stopped", False):
        return None
    return result


def put(kind: RunKind, result: Any, store: RunStore) -> None:
    """Store a result under its config's key, with the kind's meta beside it."""
    store.put(kind.store_key(result.config), result.to_dict(), meta=kind.meta(result))


def obtain(kind: RunKind, cfg: Any, store: RunStore | None = None,
           on_epoch: Callable | None = None, on_wait: Callable[[str], None] | None = None, *,
           stopped: bool = False) -> Any:
    """The result of cfg: from memory or the store if there, else trained now and stored.

    `on_epoch` goes to the kind's train; if it raises core.training.StopTraining the run ends
    after the next epoch and is stored as stopped. A stored stopped run is served only with
    `stopped=True`; otherwise the config trains in full, replacing it. A config over the
    compute budget (core.budget) is refused with a ConfigError, saying what to lower, before
    anything trains; a stored result is served whatever it cost. While it waits (for a training
    slot, or for another session training the same config), `on_wait(message)` hears why every
    second; a wait for a slot past MAX_WAIT raises Busy.
    """
    store = default_store() if store is None else store
    key = kind.store_key(cfg)
    with training_lock(key, on_wait):
        result = cached(kind, cfg, store, stopped=stopped)
        if result is not None:
            return result
        refuse(kind.estimate(cfg))
        with store.lease(key, (lambda: on_wait(_ANOTHER_FIRST)) if on_wait else None):
            # Another process or replica may have trained it while this one waited.
            result = cached(kind, cfg, store, stopped=stopped)
            if result is not None:
                return result
            with admission().slot(on_wait):
                result = kind.train(cfg, on_epoch)
            put(kind, result, store)
        # Later calls get it from memory, marked as a stored result (the tables are shared).
        _remember((store.location, key),
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


try:
    _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc: its allocator does its own returning
    _malloc_trim = None


def _return_freed_memory() -> None:
    """Hand the memory a finished training freed back to the system. glibc keeps freed heap
    for reuse, so a server's RSS would stay at its largest run's peak (measured: ten runs of a
    depth-10, width-1,024 net left 800 MB resident, 465 MB after a trim); a trim costs
    a few milliseconds to ~50 ms."""
    if _malloc_trim is not None:
        _malloc_trim(0)
