"""Persistent, size-bounded store for training results, keyed by config hash.

A trained run is expensive and its result is a plain JSON-able ``dict``, so we
keep it on disk under the hash of the config that produced it.  Repeating a run
is then instant -- after a restart too, and for every user and process of a
shared Streamlit server, because they all read and write the same file.

Storage: one SQLite database (standard library ``sqlite3``), one row per run::

    runs(key TEXT PRIMARY KEY, payload BLOB, bytes INTEGER, created REAL,
         last_access REAL, tick INTEGER, meta TEXT)

Why SQLite rather than a directory of atomically-renamed files
(write ``tmp`` + ``os.replace``)?

* Atomic renames make a *single entry* crash-safe, but a bounded LRU cache also
  needs *shared bookkeeping*: total size and per-entry access times.  With files
  that means either walking and ``stat``-ing the directory on every put, or an
  index file that itself needs cross-process locking -- and file locking is not
  portable (``fcntl`` vs ``msvcrt``), while ``atime`` is unreliable
  (``noatime``/``relatime`` mounts).  Two processes evicting at once would race.
* In SQLite "insert this entry and evict until under budget" is one
  transaction: it happens entirely or not at all, even if the process is
  SIGKILLed half-way.  WAL mode lets readers run alongside the single writer,
  and ``busy_timeout`` makes concurrent writers queue instead of failing.
* It is in the standard library, and one file is easy to move aside when it
  is damaged.

Caveat: WAL needs shared memory, so every process must run on the same host.
Do not put the store on a network filesystem (NFS/SMB).

Payloads are ``json.dumps(envelope, allow_nan=True)`` compressed with zlib --
never pickle, so a tampered cache file cannot execute code when it is read.
The envelope ``{"v": 1, "key": key, "record": record}`` repeats the key, so a
payload that ended up in the wrong row is detected.  JSON round-trips NaN and
+/-inf (as the non-standard ``NaN``/``Infinity`` tokens); tuples come back as
lists, and dict keys must be strings.

Failure policy: this is a cache, so damage means "missing", never a crash.
A row whose payload does not decode (bad zlib, bad JSON, not a dict, wrong key)
is deleted and ``get`` returns ``None``.  If the database *file* is damaged
(a bad page, a truncated file, garbage written over it), the rows that can
still be read and decoded are copied into a fresh file that replaces it; the
damaged file is kept as ``<name>.corrupt`` (one backup, the newest).  Any other
SQLite failure (the path is a folder, the lock stays busy past the timeout, the
disk is full) is logged in one line and the call degrades to a miss: ``get`` and
``__contains__`` say absent, listings are empty, ``put`` returns False.

Writes are checked rather than trusted: ``put`` evicts before it inserts (so a
store at its size cap, or on a full disk, makes room instead of failing), retries
once after evicting more if SQLite reports the disk full, and returns True only
after a fresh connection reads the new row back.  That read-back, not
``synchronous = FULL``, is what catches a commit that never reached the file
(a ``-wal`` deleted under a live store loses commits that fsync would not
save); a power loss may still drop the last commits, which a cache can afford.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import pathlib
import re
import sqlite3
import threading
import time
import uuid
import zlib
from contextlib import closing
from typing import Any, Callable, TypeVar

from core.salvage import readable_rows, remove_quietly

__all__ = ["DEFAULT_MAX_BYTES", "RunStore", "default_store_path"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 256 * 2**20

# Keys come from config hashes; restricting the alphabet keeps logs readable and
# makes it obvious that a key can never be smuggled in as a path or SQL.
_KEY_RE = re.compile(r"[0-9A-Za-z_-]{1,128}")

# meta is listed for every entry without decompressing payloads, so it must stay
# small; a larger limit would turn entries() into a payload scan after all.
_MAX_META_BYTES = 64 * 2**10

# Writers wait for each other this long before giving up.  Training runs are
# slow, so a long wait beats dropping a result.
_BUSY_TIMEOUT_S = 30.0

_ENVELOPE_VERSION = 1

# SQLite primary result codes that mean "this file is damaged", as opposed to
# "busy", "read-only", "cannot open" and friends, which salvaging the file
# would not fix; and the one for a full disk (or max_page_count reached).
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key         TEXT PRIMARY KEY,
    payload     BLOB NOT NULL,
    bytes       INTEGER NOT NULL,
    created     REAL NOT NULL,
    last_access REAL NOT NULL,
    tick        INTEGER NOT NULL,
    meta        TEXT
);
CREATE INDEX IF NOT EXISTS runs_tick ON runs (tick);
"""

# Recency is ordered by `tick`, a counter bumped inside the write transaction,
# not by wall-clock time: several touches within one clock tick (or clocks that
# differ between processes) would otherwise make LRU order ambiguous.  Writers
# are serialised by SQLite, so MAX(tick)+1 is strictly increasing.
_NEXT_TICK = "(SELECT COALESCE(MAX(tick), 0) + 1 FROM runs)"

_T = TypeVar("_T")


def default_store_path() -> pathlib.Path:
    """``$SATLAB_STORE`` if set, else ``~/.cache/saturation-lab/runs.sqlite3``."""
    env = os.environ.get("SATLAB_STORE")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path.home() / ".cache" / "saturation-lab" / "runs.sqlite3"


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError(
            f"invalid store key {key!r}: expected 1-128 characters from [0-9A-Za-z_-]"
        )
    return key


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    # Python 3.10 has no error code on the exception; match SQLite's messages.
    msg = str(exc).lower()
    return "file is not a database" in msg or "malformed" in msg


def _is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) == _SQLITE_FULL
    return "full" in str(exc).lower()


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
        # SQLite's column types are only advisory: a damaged row may hold
        # TEXT, a number or NULL instead of a BLOB.
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


def _load_meta(text: object) -> dict:
    if not isinstance(text, str):
        return {}
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return meta if isinstance(meta, dict) else {}


class RunStore:
    """A bounded, LRU-evicting, multi-process-safe ``key -> dict`` store.

    Every operation opens its own short-lived SQLite connection, so an instance
    holds no connection and may be shared freely between threads; SQLite does
    the cross-thread and cross-process locking.  The only in-process state is a
    lock that keeps two threads from salvaging a damaged file twice.
    """

    path: pathlib.Path
    max_bytes: int

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a non-negative int, got {max_bytes!r}")
        self.path = (
            pathlib.Path(path).expanduser() if path is not None else default_store_path()
        )
        self.max_bytes = max_bytes
        self._recover_lock = threading.Lock()
        # Create the schema (and repair a damaged file) up front so the first
        # get() is not slower than the rest.  A failure here is not fatal: the
        # store then behaves as empty, as every method does on errors.
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._run(lambda conn: None)
        except (OSError, sqlite3.Error) as exc:
            log.warning("run store %s is not usable right now: %s", self.path, exc)

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r}, max_bytes={self.max_bytes})"

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
                     self.path, key, len(payload), self.max_bytes)
            return False

        def write(conn: sqlite3.Connection) -> int:
            try:
                return self._put(conn, key, payload, meta_text, free=0)
            except sqlite3.OperationalError as exc:
                if not _is_full(exc):
                    raise
                # The disk (not our cap) is full: drop older runs worth the new
                # one's size, in the same transaction as the insert, once.
                log.info("run store %s: disk full; evicting %d bytes and retrying",
                         self.path, len(payload))
                return self._put(conn, key, payload, meta_text, free=len(payload))

        tick = self._guarded(f"put({key})", None, write)
        if tick is None:
            return False
        # Read back through a new connection: a commit that did not reach the
        # file (its WAL deleted under us) would otherwise pass for a success.
        stored = self._guarded(f"put({key})", [], lambda conn: conn.execute(
            "SELECT 1 FROM runs WHERE key = ? AND tick >= ?", (key, tick)).fetchall())
        if not stored:
            log.warning("run store %s: put(%s) was committed but is not in the file; "
                        "result not cached", self.path, key)
        return bool(stored)

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        _check_key(key)
        self._guarded(f"delete({key})", None, lambda conn: self._delete(conn, key))

    def clear(self) -> None:
        """Remove every entry and give the space back to the filesystem."""

        def op(conn: sqlite3.Connection) -> None:
            with _write(conn):
                conn.execute("DELETE FROM runs")
            # Deleted pages are only reused, never returned, without a VACUUM;
            # a user pressing "clear cache" expects the disk space back.  It is
            # an optimisation only, so a busy database just skips it.
            try:
                conn.execute("VACUUM")
            except sqlite3.OperationalError as exc:
                log.info("run store %s: VACUUM skipped: %s", self.path, exc)

        self._guarded("clear()", None, op)

    def keys(self) -> list[str]:
        """All keys, most recently used first."""
        rows = self._guarded("keys()", [], lambda conn: conn.execute(
            "SELECT key FROM runs ORDER BY tick DESC").fetchall())
        return [k for (k,) in rows]

    def __contains__(self, key: object) -> bool:
        # Membership is a peek: it does not count as a use for LRU.  A key
        # that could never be stored is simply not contained (no ValueError),
        # like `"x" in {}` for any string.
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            return False
        return bool(self._guarded("contains", [], lambda conn: conn.execute(
            "SELECT 1 FROM runs WHERE key = ?", (key,)).fetchall()))

    def __len__(self) -> int:
        return int(self._guarded("len()", 0, lambda conn: conn.execute(
            "SELECT COUNT(*) FROM runs").fetchone()[0]))

    def size_bytes(self) -> int:
        """Total size of the stored (compressed) payloads."""
        return int(self._guarded("size_bytes()", 0, lambda conn: conn.execute(
            "SELECT COALESCE(SUM(bytes), 0) FROM runs").fetchone()[0]))

    def entries(self) -> list[dict[str, Any]]:
        """``[{key, bytes, created, last_access, meta}]``, most recently used first.

        Times are Unix timestamps (seconds).  ``meta`` is the dict given to
        ``put`` (``{}`` if none).  Payloads are not read.
        """
        rows = self._guarded("entries()", [], lambda conn: conn.execute(
            "SELECT key, bytes, created, last_access, meta FROM runs ORDER BY tick DESC"
        ).fetchall())
        return [
            {"key": k, "bytes": int(b), "created": float(c), "last_access": float(a),
             "meta": _load_meta(m)}
            for k, b, c, a, m in rows
        ]

    # -- operations (run inside _run with a fresh connection) ----------------

    def _get(self, conn: sqlite3.Connection, key: str) -> dict | None:
        # fetchall() (not fetchone) so the implicit read transaction ends before
        # we write; upgrading a stale WAL read snapshot to a write fails with
        # SQLITE_BUSY without waiting on busy_timeout.
        rows = conn.execute("SELECT payload, tick FROM runs WHERE key = ?", (key,)).fetchall()
        if not rows:
            return None
        payload, tick = rows[0]
        record = _decode(key, payload)  # outside any lock: decompression may be slow
        if record is None:
            log.warning("run store %s: entry %s is damaged; dropping it", self.path, key)
            with _write(conn):
                # Match on tick so that an entry another process rewrote in the
                # meantime is not thrown away along with the damaged one.
                conn.execute("DELETE FROM runs WHERE key = ? AND tick = ?", (key, tick))
            return None
        try:
            with _write(conn):
                conn.execute(
                    f"UPDATE runs SET tick = {_NEXT_TICK}, last_access = ? WHERE key = ?",
                    (time.time(), key),
                )
        except sqlite3.OperationalError as exc:
            # Only the LRU bookkeeping is lost; the caller still gets the result.
            log.info("run store %s: could not mark %s as used: %s", self.path, key, exc)
        return record

    @staticmethod
    def _delete(conn: sqlite3.Connection, key: str) -> None:
        with _write(conn):
            conn.execute("DELETE FROM runs WHERE key = ?", (key,))

    def _put(self, conn: sqlite3.Connection, key: str, payload: bytes,
             meta_text: str | None, free: int) -> int:
        """Evict, then insert, in one transaction; the new row's tick.

        Eviction comes first so the freed pages take the new row: on a full disk
        an insert before eviction fails and nothing is ever cached again.
        ``free`` asks for that many bytes of older runs to go beyond the cap.
        """
        size = len(payload)
        with _write(conn):
            others = conn.execute(
                "SELECT COALESCE(SUM(bytes), 0) FROM runs WHERE key != ?", (key,)).fetchone()[0]
            excess = max(others + size - self.max_bytes, free)
            victims = []
            if excess > 0:
                for victim, nbytes in conn.execute(
                    "SELECT key, bytes FROM runs WHERE key != ? ORDER BY tick ASC", (key,)
                ).fetchall():
                    if excess <= 0:
                        break
                    victims.append((victim,))
                    excess -= nbytes
            conn.executemany("DELETE FROM runs WHERE key = ?", victims)
            now = time.time()
            conn.execute(
                "INSERT OR REPLACE INTO runs "
                "(key, payload, bytes, created, last_access, tick, meta) "
                f"VALUES (?, ?, ?, ?, ?, {_NEXT_TICK}, ?)",
                (key, payload, size, now, now, meta_text),
            )
            return int(conn.execute("SELECT tick FROM runs WHERE key = ?", (key,)).fetchone()[0])

    # -- connection handling and recovery ------------------------------------

    def _guarded(self, what: str, default: _T, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """``fn`` on a fresh connection, or ``default`` with one log line if SQLite fails."""
        try:
            return self._run(fn)
        except sqlite3.Error as exc:
            log.warning("run store %s: %s failed, treated as a miss: %s", self.path, what, exc)
            return default

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit; write transactions are explicit
        # (BEGIN IMMEDIATE in _write) so their lock is taken up front and
        # waits on busy_timeout instead of failing on upgrade.
        conn = sqlite3.connect(str(self.path), timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            # WAL + NORMAL is still atomic and consistent after a process
            # crash; only an OS crash/power loss can drop the last commits,
            # which is acceptable for a cache (put reads its row back).
            conn.execute("PRAGMA synchronous = NORMAL")
            # journal_mode is persistent in the file; switching needs an
            # exclusive lock, so only ask when it is not WAL yet (new file).
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            # Per connection, because another process may have replaced a
            # damaged file with a salvaged one since our last call.
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` on a fresh connection; salvage a damaged file and retry once."""
        for attempt in range(2):
            ident = self._file_identity()
            try:
                with closing(self._connect()) as conn:
                    return fn(conn)
            except sqlite3.DatabaseError as exc:
                if attempt == 0 and _is_corruption(exc):
                    self._salvage(ident, exc)
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _salvage(self, ident: tuple[int, int] | None, exc: BaseException) -> None:
        """Replace the damaged file by a fresh one holding every row still readable.

        The damaged file is kept as ``<name>.corrupt`` (replacing an older backup),
        and backups named by an earlier scheme (``.corrupt-<time>-...``) are removed.
        """
        with self._recover_lock:
            # Another thread or process may already have replaced the file we
            # saw fail; salvaging the fresh one would be wasted work.
            if self._file_identity() != ident:
                return
            rows, checked = readable_rows(
                self.path, lambda key, payload: bool(_KEY_RE.fullmatch(key))
                and _decode(key, payload) is not None)
            fresh = self.path.with_name(
                f"{self.path.name}.salvage-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            try:
                with closing(sqlite3.connect(str(fresh), isolation_level=None)) as conn:
                    conn.executescript(_SCHEMA)
                    with _write(conn):
                        conn.executemany(
                            "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                    conn.execute("PRAGMA journal_mode = WAL")
            except sqlite3.Error as err:
                log.warning("run store %s: could not write the salvaged rows: %s", self.path, err)
                rows = []
                remove_quietly(fresh)
            backup = self.path.with_name(self.path.name + ".corrupt")
            log.warning("run store %s is damaged (%s; check: %s); kept %d readable runs, "
                        "the damaged file is %s", self.path, exc, checked, len(rows), backup.name)
            # The WAL and shared-memory files belong to the damaged database: a
            # stale WAL replayed into the fresh file would corrupt it again.
            for suffix in ("", "-wal", "-shm", "-journal"):
                src = pathlib.Path(str(self.path) + suffix)
                try:
                    os.replace(src, pathlib.Path(str(backup) + suffix))
                except FileNotFoundError:
                    pass
                except OSError:
                    remove_quietly(src)
            for old in self.path.parent.glob(f"{glob.escape(self.path.name)}.corrupt-*"):
                remove_quietly(old)
            for suffix in ("", "-wal", "-shm"):
                src = pathlib.Path(str(fresh) + suffix)
                if src.exists():
                    try:
                        os.replace(src, pathlib.Path(str(self.path) + suffix))
                    except OSError as err:
                        log.warning("run store: could not install %s: %s", src, err)


class _write:
    """``with _write(conn):`` -- an IMMEDIATE transaction, committed or rolled back."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.Error:
                # A COMMIT that fails (a full disk) leaves the transaction open; end it so the
                # connection can try again, and report the failure.
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the original exception matters more
