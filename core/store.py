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
(e.g. garbage written over it), it is moved aside to
``<name>.corrupt-<time>-<pid>-<id>`` with a warning and a fresh one is created.
Any other SQLite failure in ``get``/``put`` (say the lock stays busy past the
timeout) is logged and the call degrades to a miss / a dropped write.
"""

from __future__ import annotations

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
# "busy", "read-only", "cannot open" and friends, which moving the file aside
# would not fix.
_SQLITE_CORRUPT = 11
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
    lock that keeps two threads from moving a damaged file aside twice.
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Create the schema (and repair a damaged file) up front so the first
        # get() is not slower than the rest.  A failure here is not fatal: the
        # store then behaves as empty, as get/put do on errors.
        try:
            self._run(lambda conn: None)
        except sqlite3.Error as exc:
            log.warning("run store %s is not usable right now: %s", self.path, exc)

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r}, max_bytes={self.max_bytes})"

    # -- public API -------------------------------------------------------

    def get(self, key: str) -> dict | None:
        """The record stored under ``key``, or None; marks it most recently used."""
        _check_key(key)
        try:
            return self._run(lambda conn: self._get(conn, key))
        except sqlite3.Error as exc:
            log.warning("run store %s: get(%s) failed, treating as missing: %s",
                        self.path, key, exc)
            return None

    def put(self, key: str, record: dict, meta: dict | None = None) -> None:
        """Store ``record`` under ``key``, replacing any previous entry atomically.

        ``meta`` is a small JSON-able dict (e.g. a config summary) kept in its
        own column so listing runs never decompresses payloads.  Then evict the
        least recently used entries until the total payload is within
        ``max_bytes``.  A record that alone exceeds ``max_bytes`` is not kept
        (and any older entry under ``key`` is dropped, being stale).

        Raises TypeError/ValueError for a bad key, a non-dict or non-JSON
        record or meta -- those are caller bugs -- but never for storage
        trouble, which is logged.
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
        try:
            self._run(lambda conn: self._put(conn, key, payload, meta_text))
        except sqlite3.Error as exc:
            log.warning("run store %s: put(%s) failed, result not cached: %s",
                        self.path, key, exc)

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        _check_key(key)

        def op(conn: sqlite3.Connection) -> None:
            with _write(conn):
                conn.execute("DELETE FROM runs WHERE key = ?", (key,))

        self._run(op)

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

        self._run(op)

    def keys(self) -> list[str]:
        """All keys, most recently used first."""
        rows = self._run(
            lambda conn: conn.execute("SELECT key FROM runs ORDER BY tick DESC").fetchall()
        )
        return [k for (k,) in rows]

    def __contains__(self, key: object) -> bool:
        # Membership is a peek: it does not count as a use for LRU.  A key
        # that could never be stored is simply not contained (no ValueError),
        # like `"x" in {}` for any string.
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            return False
        row = self._run(
            lambda conn: conn.execute("SELECT 1 FROM runs WHERE key = ?", (key,)).fetchall()
        )
        return bool(row)

    def __len__(self) -> int:
        return int(self._run(lambda conn: conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]))

    def size_bytes(self) -> int:
        """Total size of the stored (compressed) payloads."""
        return int(
            self._run(
                lambda conn: conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM runs").fetchone()[0]
            )
        )

    def entries(self) -> list[dict[str, Any]]:
        """``[{key, bytes, created, last_access, meta}]``, most recently used first.

        Times are Unix timestamps (seconds).  ``meta`` is the dict given to
        ``put`` (``{}`` if none).  Payloads are not read.
        """
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT key, bytes, created, last_access, meta FROM runs ORDER BY tick DESC"
            ).fetchall()
        )
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

    def _put(self, conn: sqlite3.Connection, key: str, payload: bytes,
             meta_text: str | None) -> None:
        size = len(payload)
        with _write(conn):
            if size > self.max_bytes:
                conn.execute("DELETE FROM runs WHERE key = ?", (key,))
                log.info("run store %s: %s (%d bytes) exceeds max_bytes=%d; not kept",
                         self.path, key, size, self.max_bytes)
                return
            now = time.time()
            conn.execute(
                "INSERT OR REPLACE INTO runs "
                "(key, payload, bytes, created, last_access, tick, meta) "
                f"VALUES (?, ?, ?, ?, ?, {_NEXT_TICK}, ?)",
                (key, payload, size, now, now, meta_text),
            )
            # Evict in the same transaction as the insert, so no process ever
            # sees the store over budget and a crash cannot leave it there.
            total = conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM runs").fetchone()[0]
            if total <= self.max_bytes:
                return
            victims = []
            for victim, nbytes in conn.execute(
                "SELECT key, bytes FROM runs WHERE key != ? ORDER BY tick ASC", (key,)
            ).fetchall():
                if total <= self.max_bytes:
                    break
                victims.append((victim,))
                total -= nbytes
            conn.executemany("DELETE FROM runs WHERE key = ?", victims)

    # -- connection handling and recovery ------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit; write transactions are explicit
        # (BEGIN IMMEDIATE in _write) so their lock is taken up front and
        # waits on busy_timeout instead of failing on upgrade.
        conn = sqlite3.connect(str(self.path), timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            # WAL + NORMAL is still atomic and consistent after a process
            # crash; only an OS crash/power loss can drop the last commits,
            # which is acceptable for a cache.
            conn.execute("PRAGMA synchronous = NORMAL")
            # journal_mode is persistent in the file; switching needs an
            # exclusive lock, so only ask when it is not WAL yet (new file).
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            # Per connection, because another process may have replaced a
            # damaged file with an empty one since our last call.
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` on a fresh connection; repair a damaged file and retry once."""
        for attempt in range(2):
            ident = self._file_identity()
            try:
                with closing(self._connect()) as conn:
                    return fn(conn)
            except sqlite3.DatabaseError as exc:
                if attempt == 0 and _is_corruption(exc):
                    self._move_aside(ident, exc)
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _move_aside(self, ident: tuple[int, int] | None, exc: BaseException) -> None:
        with self._recover_lock:
            # Another thread or process may already have replaced the file we
            # saw fail; moving the fresh one aside would throw away good work.
            # (Across processes a tiny window remains; the cost is an emptied
            # cache, never a crash.)
            if self._file_identity() != ident:
                return
            aside = self.path.with_name(
                f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
                f"-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            )
            log.warning("run store %s is damaged (%s); moving it to %s and starting empty",
                        self.path, exc, aside.name)
            # The WAL and shared-memory files belong to the damaged database: a
            # stale WAL replayed into a fresh file would corrupt it again.
            for suffix in ("", "-wal", "-shm", "-journal"):
                src = pathlib.Path(str(self.path) + suffix)
                try:
                    os.replace(src, pathlib.Path(str(aside) + suffix))
                except FileNotFoundError:
                    pass
                except OSError:
                    try:
                        src.unlink()
                    except FileNotFoundError:
                        pass
                    except OSError as err:
                        log.warning("run store: could not remove %s: %s", src, err)


class _write:
    """``with _write(conn):`` -- an IMMEDIATE transaction, committed or rolled back."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the original exception matters more
