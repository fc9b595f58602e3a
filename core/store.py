"""Persistent, size-bounded store for training results, keyed by config hash.

A trained run is expensive and its result is a plain JSON-able ``dict``, so we keep it under the
hash of the config that produced it.  Repeating a run is then instant -- after a restart too, and
for every user, process and replica of a server, because they all read and write one store.

Where it lives (``SATLAB_STORE``, or the ``location`` given):

* a path: one SQLite file (core/store_sqlite.py), the default
  ``~/.cache/saturation-lab/runs.sqlite3``; every process must be on the same host;
* a ``postgresql://`` URL: a PostgreSQL database (core/store_postgres.py), shared by replicas on
  several hosts and kept when an app's container restarts.

Both hold one row per run::

    runs(key PRIMARY KEY, payload, bytes, created, last_access, tick, meta)

and this module holds the contract, written once for both: the codec, the keys, the LRU policy,
damage handling, and the leases that keep two processes from training one key twice.  A backend
supplies connections, its write transaction, its placeholders and its error classes.

Payloads are ``json.dumps(envelope, allow_nan=True)`` compressed with zlib -- never pickle, so a
tampered store cannot execute code when it is read.  The envelope ``{"v": 1, "key": key,
"record": record}`` repeats the key, so a payload that ended up in the wrong row is detected.
JSON round-trips NaN and +/-inf (as the non-standard ``NaN``/``Infinity`` tokens); tuples come
back as lists, and dict keys must be strings.

Failure policy: this is a cache, so damage means "missing", never a crash.  A row whose payload
does not decode (bad zlib, bad JSON, not a dict, wrong key) is deleted and ``get`` returns
``None``.  Any other storage failure (the path is a folder, the lock stays busy past the
timeout, the disk is full, the server does not answer) is logged in one line and the call
degrades to a miss: ``get`` and ``__contains__`` say absent, listings are empty, ``put`` returns
False.

Writes are checked rather than trusted: ``put`` evicts before it inserts (so a store at its size
cap, or on a full disk, makes room instead of failing), retries once after evicting more if the
disk is full, and returns True only after a fresh connection reads the new row back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import re
import socket
import threading
import time
import uuid
import zlib
from typing import Any, Callable, Iterator, TypeVar

from core.store_postgres import PostgresBackend, is_database_url
from core.store_sqlite import SQLiteBackend

__all__ = ["LEASE_TTL_S", "DEFAULT_MAX_BYTES", "RunStore", "default_store_location"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 256 * 2**20

# Keys come from config hashes; restricting the alphabet keeps logs readable and makes it
# obvious that a key can never be smuggled in as a path or SQL.
_KEY_RE = re.compile(r"[0-9A-Za-z_-]{1,128}")

# meta is listed for every entry without decompressing payloads, so it must stay small; a larger
# limit would turn entries() into a payload scan after all.
_MAX_META_BYTES = 64 * 2**10

_ENVELOPE_VERSION = 1

# A lease lasts this long past its holder's last renewal (every third of it, while training):
# a killed process blocks the others' training of its key for at most this long.  Expiry is
# checked against each process's clock, so replicas' clocks should agree to well within it.
LEASE_TTL_S = 60.0
_LEASE_POLL_S = 0.5

# Recency is ordered by `tick`, a counter bumped inside the write transaction, not by wall-clock
# time: several touches within one clock tick (or clocks that differ between processes) would
# otherwise make LRU order ambiguous.  Writers are serialised by the backend's write
# transaction, so MAX(tick)+1 is strictly increasing.
_NEXT_TICK = "(SELECT COALESCE(MAX(tick), 0) + 1 FROM runs)"

_T = TypeVar("_T")


def default_store_location() -> str:
    """``$SATLAB_STORE`` if set, else ``~/.cache/saturation-lab/runs.sqlite3``."""
    env = os.environ.get("SATLAB_STORE", "").strip()
    if env:
        return env
    return str(pathlib.Path.home() / ".cache" / "saturation-lab" / "runs.sqlite3")


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError(
            f"invalid store key {key!r}: expected 1-128 characters from [0-9A-Za-z_-]"
        )
    return key


def _encode(key: str, record: dict) -> bytes:
    text = json.dumps(
        {"v": _ENVELOPE_VERSION, "key": key, "record": record},
        allow_nan=True,
        separators=(",", ":"),
    )
    # Level 1: ~4× faster than the default for ~10% more bytes; a new run's page waits for it.
    return zlib.compress(text.encode("utf-8"), 1)


def _decode(key: str, payload: object) -> dict | None:
    """The record in ``payload``, or None if the payload is damaged in any way."""
    try:
        # SQLite's column types are only advisory: a damaged row may hold TEXT, a number or
        # NULL instead of a BLOB.
        if not isinstance(payload, bytes):
            return None
        env = json.loads(zlib.decompress(payload).decode("utf-8"))
    except (zlib.error, ValueError, TypeError, RecursionError, MemoryError):
        return None
    if (
        not isinstance(env, dict)
        or env.get("v") != _ENVELOPE_VERSION
        or env.get("key") != key
        or not isinstance(env.get("record"), dict)
    ):
        return None
    return env["record"]


def _intact(key: str, payload: object) -> bool:
    """Whether a row read from a damaged file is worth keeping."""
    return bool(_KEY_RE.fullmatch(key)) and _decode(key, payload) is not None


def _load_meta(text: object) -> dict:
    if not isinstance(text, str):
        return {}
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return meta if isinstance(meta, dict) else {}


def backend_for(location: str | os.PathLike[str] | None = None) -> PostgresBackend | SQLiteBackend:
    """The backend for a location (default: SATLAB_STORE), opening nothing: a malformed
    postgresql:// URL, or one without psycopg, is refused here (ConfigError)."""
    named = default_store_location() if location is None else os.fspath(location)
    if is_database_url(named):
        return PostgresBackend(named)
    return SQLiteBackend(pathlib.Path(named).expanduser())


class RunStore:
    """A bounded, LRU-evicting, multi-process-safe ``key -> dict`` store.

    ``location`` is a path (SQLite) or a ``postgresql://`` URL; None reads ``SATLAB_STORE``.  A
    malformed URL, or one without psycopg installed, raises ConfigError naming SATLAB_STORE; a
    store that cannot be reached is logged once here and then behaves as empty.  An instance
    holds no connection and may be shared freely between threads.  ``location`` (the URL
    without its password) names the store; ``path`` is the SQLite file, None on a server.
    """

    location: str
    path: pathlib.Path | None
    max_bytes: int

    def __init__(
        self,
        location: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a non-negative int, got {max_bytes!r}")
        self._backend = backend_for(location)
        self.location, self.path = self._backend.location, self._backend.path
        self.max_bytes = max_bytes
        # Who holds a lease: host and process (a process of this host that ended holds none),
        # and which store instance in it.
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Create the schema (and repair a damaged file) up front so the first get() is not
        # slower than the rest.  A failure here is not fatal: the store then behaves as empty,
        # as every method does on errors.
        try:
            self._backend.prepare()
            self._run(lambda conn: None)
        except (OSError, *self._backend.errors) as exc:
            origin = " (SATLAB_STORE)" if location is None else ""
            log.warning("run store %s%s is not usable right now, runs are not kept: %s",
                        self.location, origin, _one_line(exc))

    def __repr__(self) -> str:
        return f"RunStore({self.location!r}, max_bytes={self.max_bytes})"

    # -- public API -------------------------------------------------------

    def get(self, key: str) -> dict | None:
        """The record stored under ``key``, or None; marks it most recently used."""
        _check_key(key)
        return self._guarded(f"get({key})", None, lambda conn: self._get(conn, key))

    def put(self, key: str, record: dict, meta: dict | None = None) -> bool:
        """Store ``record`` under ``key``, replacing any previous entry atomically.

        ``meta`` is a small JSON-able dict (e.g. a config summary) kept in its
        own column so listing runs never decompresses payloads.  The least
        recently used entries are evicted first, until the new one fits within
        ``max_bytes``.  A record that alone exceeds ``max_bytes`` is not kept
        (and any older entry under ``key`` is dropped, being stale).

        Returns True once the entry is stored and read back; False (with one
        log line) when it was not kept.  Raises TypeError/ValueError for a bad
        key, a non-dict or non-JSON record or meta -- those are caller bugs --
        but never for storage trouble.
        """
        _check_key(key)
        if not isinstance(record, dict):
            raise TypeError(f"record must be a dict, got {type(record).__name__}")
        if meta is not None and not isinstance(meta, dict):
            raise TypeError(f"meta must be a dict or None, got {type(meta).__name__}")
        # Serialise before touching the database so that the write lock is held
        # only for the SQL itself, and JSON errors surface to the caller.
        payload = _encode(key, record)
        meta_text = None
        if meta is not None:
            meta_text = json.dumps(meta, allow_nan=True, separators=(",", ":"))
            if len(meta_text.encode("utf-8")) > _MAX_META_BYTES:
                raise ValueError(f"meta is larger than {_MAX_META_BYTES} bytes")
        if len(payload) > self.max_bytes:
            self._guarded(f"delete({key})", None, lambda conn: self._delete(conn, key))
            log.info("run store %s: %s (%d bytes) exceeds max_bytes=%d; not kept",
                     self.location, key, len(payload), self.max_bytes)
            return False

        def write(conn: Any) -> int:
            try:
                return self._put(conn, key, payload, meta_text, free=0)
            except self._backend.errors as exc:
                if not self._backend.is_full(exc):
                    raise
                # The disk (not our cap) is full: drop older runs worth the new
                # one's size, in the same transaction as the insert, once.
                log.info("run store %s: disk full; evicting %d bytes and retrying",
                         self.location, len(payload))
                return self._put(conn, key, payload, meta_text, free=len(payload))

        tick = self._guarded(f"put({key})", None, write)
        if tick is None:
            return False
        # Read back through a new connection: a commit that did not reach the
        # file (its WAL deleted under us) would otherwise pass for a success.
        stored = self._guarded(f"put({key})", [], lambda conn: self._sql(
            conn, "SELECT 1 FROM runs WHERE key = ? AND tick >= ?", (key, tick)).fetchall())
        if not stored:
            log.warning("run store %s: put(%s) was committed but is not in the file; "
                        "result not cached", self.location, key)
        return bool(stored)

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        _check_key(key)
        self._guarded(f"delete({key})", None, lambda conn: self._delete(conn, key))

    def clear(self) -> None:
        """Remove every entry and give the space back to the filesystem."""

        def op(conn: Any) -> None:
            with self._backend.write(conn):
                conn.execute("DELETE FROM runs")
            # A user pressing "clear cache" expects the disk space back.
            self._backend.reclaim(conn)

        self._guarded("clear()", None, op)

    def keys(self) -> list[str]:
        """All keys, most recently used first."""
        rows = self._guarded("keys()", [], lambda conn: self._sql(
            conn, "SELECT key FROM runs ORDER BY tick DESC").fetchall())
        return [k for (k,) in rows]

    def __contains__(self, key: object) -> bool:
        # Membership is a peek: it does not count as a use for LRU.  A key
        # that could never be stored is simply not contained (no ValueError),
        # like `"x" in {}` for any string.
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            return False
        return bool(self._guarded("contains", [], lambda conn: self._sql(
            conn, "SELECT 1 FROM runs WHERE key = ?", (key,)).fetchall()))

    def __len__(self) -> int:
        return int(self._guarded("len()", 0, lambda conn: self._sql(
            conn, "SELECT COUNT(*) FROM runs").fetchone()[0]))

    def size_bytes(self) -> int:
        """Total size of the stored (compressed) payloads."""
        return int(self._guarded("size_bytes()", 0, lambda conn: self._sql(
            conn, "SELECT COALESCE(SUM(bytes), 0) FROM runs").fetchone()[0]))

    def entries(self) -> list[dict[str, Any]]:
        """``[{key, bytes, created, last_access, meta}]``, most recently used first.

        Times are Unix timestamps (seconds).  ``meta`` is the dict given to
        ``put`` (``{}`` if none).  Payloads are not read.
        """
        rows = self._guarded("entries()", [], lambda conn: self._sql(
            conn, "SELECT key, bytes, created, last_access, meta FROM runs ORDER BY tick DESC"
        ).fetchall())
        return [
            {"key": k, "bytes": int(b), "created": float(c), "last_access": float(a),
             "meta": _load_meta(m)}
            for k, b, c, a, m in rows
        ]

    # -- leases: one process trains a key, the others wait for its result --------------

    @contextlib.contextmanager
    def lease(self, key: str, on_wait: Callable[[], None] | None = None,
              ttl: float = LEASE_TTL_S) -> Iterator[None]:
        """``with store.lease(key):`` the only holder of ``key`` among every process and
        replica sharing this store, so that a new config trains once; the caller then checks the
        store again, since the one it waited for has usually just stored the result.

        While another holds the lease, ``on_wait()`` is called about every half second.  The
        holder renews it every ``ttl / 3`` seconds; a lease its holder stopped renewing (the
        process was killed) lapses ``ttl`` seconds later and is taken over -- at once if the
        holder was a process of this host that has ended.  If the store
        fails, the lease is skipped with one log line: a cache never blocks training.
        """
        _check_key(key)
        while not self._guarded(f"lease({key})", True, lambda conn: self._take(conn, key, ttl)):
            if on_wait:
                on_wait()
            time.sleep(_LEASE_POLL_S)
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(key, ttl, stop), daemon=True,
                                   name=f"lease-{key[:12]}")
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            self._guarded(f"release({key})", None, lambda conn: self._write_sql(
                conn, "DELETE FROM leases WHERE key = ? AND holder = ?", (key, self._holder)))

    def _take(self, conn: Any, key: str, ttl: float) -> bool:
        """Whether this instance now holds key's lease (taking it if free, lapsed, or held by
        a process of this host that has ended)."""
        now = time.time()
        with self._backend.write(conn):
            self._sql(conn, "DELETE FROM leases WHERE key = ? AND expires_at < ?", (key, now))
            held = self._sql(conn, "SELECT holder FROM leases WHERE key = ?", (key,)).fetchall()
            if held and held[0][0] != self._holder and _ended_here(held[0][0]):
                self._sql(conn, "DELETE FROM leases WHERE key = ? AND holder = ?",
                          (key, held[0][0]))
                held = []
            if not held:
                self._sql(conn, "INSERT INTO leases (key, holder, expires_at) VALUES (?, ?, ?)",
                          (key, self._holder, now + ttl))
        return not held or held[0][0] == self._holder

    def _renew(self, key: str, ttl: float, stop: threading.Event) -> None:
        while not stop.wait(ttl / 3):
            self._guarded(f"renew({key})", None, lambda conn: self._write_sql(
                conn, "UPDATE leases SET expires_at = ? WHERE key = ? AND holder = ?",
                (time.time() + ttl, key, self._holder)))

    # -- operations (run inside _run with a fresh connection) ----------------

    def _sql(self, conn: Any, text: str, params: tuple = ()) -> Any:
        """One statement of the shared SQL (SQLite's `?` placeholders) on either backend."""
        return conn.execute(self._backend.sql(text), params)

    def _write_sql(self, conn: Any, text: str, params: tuple = ()) -> None:
        with self._backend.write(conn):
            self._sql(conn, text, params)

    def _get(self, conn: Any, key: str) -> dict | None:
        # fetchall() (not fetchone) so the implicit read transaction ends before we write;
        # upgrading a stale SQLite WAL read snapshot to a write fails with SQLITE_BUSY without
        # waiting on busy_timeout.
        rows = self._sql(conn, "SELECT payload, tick FROM runs WHERE key = ?", (key,)).fetchall()
        if not rows:
            return None
        payload, tick = rows[0]
        record = _decode(key, payload)  # outside any lock: decompression may be slow
        if record is None:
            log.warning("run store %s: entry %s is damaged; dropping it", self.location, key)
            # Match on tick so that an entry another process rewrote in the meantime is not
            # thrown away along with the damaged one.
            self._write_sql(conn, "DELETE FROM runs WHERE key = ? AND tick = ?", (key, tick))
            return None
        try:
            self._write_sql(conn, f"UPDATE runs SET tick = {_NEXT_TICK}, last_access = ? "
                            "WHERE key = ?", (time.time(), key))
        except self._backend.errors as exc:
            # Only the LRU bookkeeping is lost; the caller still gets the result.
            log.info("run store %s: could not mark %s as used: %s", self.location, key,
                     _one_line(exc))
        return record

    def _delete(self, conn: Any, key: str) -> None:
        self._write_sql(conn, "DELETE FROM runs WHERE key = ?", (key,))

    def _put(self, conn: Any, key: str, payload: bytes, meta_text: str | None,
             free: int) -> int:
        """Evict, then insert, in one transaction; the new row's tick.

        Eviction comes first so the freed pages take the new row: on a full disk an insert
        before eviction fails and nothing is ever cached again.  ``free`` asks for that many
        bytes of older runs to go beyond the cap.
        """
        size = len(payload)
        with self._backend.write(conn):
            others = self._sql(conn, "SELECT COALESCE(SUM(bytes), 0) FROM runs WHERE key != ?",
                               (key,)).fetchone()[0]
            excess = max(others + size - self.max_bytes, free)
            victims = []
            if excess > 0:
                for victim, nbytes in self._sql(
                    conn, "SELECT key, bytes FROM runs WHERE key != ? ORDER BY tick ASC", (key,)
                ).fetchall():
                    if excess <= 0:
                        break
                    victims.append((victim,))
                    excess -= nbytes
            if victims:
                conn.cursor().executemany(
                    self._backend.sql("DELETE FROM runs WHERE key = ?"), victims)
            now = time.time()
            self._sql(
                conn,
                "INSERT INTO runs (key, payload, bytes, created, last_access, tick, meta) "
                f"VALUES (?, ?, ?, ?, ?, {_NEXT_TICK}, ?) ON CONFLICT (key) DO UPDATE SET "
                "payload = excluded.payload, bytes = excluded.bytes, created = excluded.created, "
                "last_access = excluded.last_access, tick = excluded.tick, meta = excluded.meta",
                (key, payload, size, now, now, meta_text),
            )
            return int(self._sql(conn, "SELECT tick FROM runs WHERE key = ?",
                                 (key,)).fetchone()[0])

    def _guarded(self, what: str, default: _T, fn: Callable[[Any], _T]) -> _T:
        """``fn`` on a fresh connection, or ``default`` with one log line if storage fails."""
        try:
            return self._run(fn)
        except (OSError, *self._backend.errors) as exc:
            log.warning("run store %s: %s failed, treated as a miss: %s", self.location, what,
                        _one_line(exc))
            return default

    def _run(self, fn: Callable[[Any], _T]) -> _T:
        return self._backend.run(fn, _intact)


def _ended_here(holder: str) -> bool:
    """Whether a lease's holder ("host:pid:nonce") was a process of this host that is gone: a
    killed replica beside this one (SQLite's replicas share a host) blocks nobody until its
    lease lapses."""
    host, pid, _ = holder.rsplit(":", 2)
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:   # alive, under another user
        return False
    return False


def _one_line(exc: BaseException) -> str:
    """A driver's message on one log line (PostgreSQL's span several)."""
    return " ".join(str(exc).split())
