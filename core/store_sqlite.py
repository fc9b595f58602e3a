"""The run store's SQLite backend (core/store.py): one file on one host, the default.

Why SQLite rather than a directory of atomically-renamed files (write ``tmp`` + ``os.replace``)?

* Atomic renames make a *single entry* crash-safe, but a bounded LRU cache also needs *shared
  bookkeeping*: total size and per-entry access times.  With files that means either walking and
  ``stat``-ing the directory on every put, or an index file that itself needs cross-process
  locking -- and file locking is not portable (``fcntl`` vs ``msvcrt``), while ``atime`` is
  unreliable (``noatime``/``relatime`` mounts).  Two processes evicting at once would race.
* In SQLite "insert this entry and evict until under budget" is one transaction: it happens
  entirely or not at all, even if the process is SIGKILLed half-way.  WAL mode lets readers run
  alongside the single writer, and ``busy_timeout`` makes concurrent writers queue instead of
  failing.
* It is in the standard library, and one file is easy to move aside when it is damaged.

Caveat: WAL needs shared memory, so every process must run on the same host.  Do not put the
store on a network filesystem (NFS/SMB); replicas on several hosts share a PostgreSQL store
(core/store_postgres.py).

If the database *file* is damaged (a bad page, a truncated file, garbage written over it), the
rows that can still be read and decoded are copied into a fresh file that replaces it; the
damaged file is kept as ``<name>.corrupt`` (one backup, the newest).
"""

from __future__ import annotations

import glob
import logging
import os
import pathlib
import sqlite3
import threading
import uuid
from contextlib import closing
from typing import Callable, TypeVar

from core.salvage import readable_rows, remove_quietly

log = logging.getLogger("core.store")

# Writers wait for each other this long before giving up.  Training runs are slow, so a long
# wait beats dropping a result.
_BUSY_TIMEOUT_S = 30.0

# SQLite primary result codes that mean "this file is damaged", as opposed to "busy",
# "read-only", "cannot open" and friends, which salvaging the file would not fix; and the one
# for a full disk (or max_page_count reached).
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26

SCHEMA = """
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
CREATE TABLE IF NOT EXISTS leases (
    key         TEXT PRIMARY KEY,
    holder    TEXT NOT NULL,
    expires_at  REAL NOT NULL
);
"""

_T = TypeVar("_T")


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    # Python 3.10 has no error code on the exception; match SQLite's messages.
    msg = str(exc).lower()
    return "file is not a database" in msg or "malformed" in msg


class SQLiteBackend:
    """Connections, transactions and repair for a store in one SQLite file.

    Every operation opens its own short-lived connection, so the backend holds none and may be
    shared freely between threads; SQLite does the cross-thread and cross-process locking.  The
    only in-process state is a lock that keeps two threads from salvaging a damaged file twice.
    """

    errors = (sqlite3.Error,)

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.location = str(path)
        self._recover_lock = threading.Lock()

    def prepare(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def sql(text: str) -> str:
        return text   # the shared SQL is written with SQLite's `?` placeholders

    @staticmethod
    def is_full(exc: BaseException) -> bool:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return (code & 0xFF) == _SQLITE_FULL
        return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower()

    @staticmethod
    def write(conn: sqlite3.Connection) -> "_Write":
        """``with backend.write(conn):`` an IMMEDIATE transaction: its write lock is taken up
        front and waits on busy_timeout instead of failing on upgrade."""
        return _Write(conn)

    def reclaim(self, conn: sqlite3.Connection) -> None:
        """Give deleted pages back to the filesystem: they are only reused, never returned,
        without a VACUUM. An optimisation only, so a busy database just skips it."""
        try:
            conn.execute("VACUUM")
        except sqlite3.OperationalError as exc:
            log.info("run store %s: VACUUM skipped: %s", self.location, exc)

    def connect(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit; write transactions are explicit (BEGIN IMMEDIATE).
        conn = sqlite3.connect(str(self.path), timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            # WAL + NORMAL is still atomic and consistent after a process crash; only an OS
            # crash/power loss can drop the last commits, which is acceptable for a cache (put
            # reads its row back).
            conn.execute("PRAGMA synchronous = NORMAL")
            # journal_mode is persistent in the file; switching needs an exclusive lock, so
            # only ask when it is not WAL yet (new file).
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            # Per connection, because another process may have replaced a damaged file with a
            # salvaged one since our last call.
            conn.executescript(SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def run(self, fn: Callable[[sqlite3.Connection], _T],
            valid: Callable[[str, object], bool]) -> _T:
        """``fn`` on a fresh connection; salvage a damaged file (keeping the rows for which
        ``valid(key, payload)``) and retry once."""
        for attempt in range(2):
            ident = self._file_identity()
            try:
                with closing(self.connect()) as conn:
                    return fn(conn)
            except sqlite3.DatabaseError as exc:
                if attempt == 0 and _is_corruption(exc):
                    self._salvage(ident, exc, valid)
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _salvage(self, ident: tuple[int, int] | None, exc: BaseException,
                 valid: Callable[[str, object], bool]) -> None:
        """Replace the damaged file by a fresh one holding every row still readable.

        The damaged file is kept as ``<name>.corrupt`` (replacing an older backup), and backups
        named by an earlier scheme (``.corrupt-<time>-...``) are removed.
        """
        with self._recover_lock:
            # Another thread or process may already have replaced the file we saw fail;
            # salvaging the fresh one would be wasted work.
            if self._file_identity() != ident:
                return
            rows, checked = readable_rows(self.path, valid)
            fresh = self.path.with_name(
                f"{self.path.name}.salvage-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            try:
                with closing(sqlite3.connect(str(fresh), isolation_level=None)) as conn:
                    conn.executescript(SCHEMA)
                    with _Write(conn):
                        conn.executemany(
                            "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                    conn.execute("PRAGMA journal_mode = WAL")
            except sqlite3.Error as err:
                log.warning("run store %s: could not write the salvaged rows: %s",
                            self.location, err)
                rows = []
                remove_quietly(fresh)
            backup = self.path.with_name(self.path.name + ".corrupt")
            log.warning("run store %s is damaged (%s; check: %s); kept %d readable runs, "
                        "the damaged file is %s", self.location, exc, checked, len(rows),
                        backup.name)
            # The WAL and shared-memory files belong to the damaged database: a stale WAL
            # replayed into the fresh file would corrupt it again.
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


class _Write:
    """``with _Write(conn):`` -- an IMMEDIATE transaction, committed or rolled back."""

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
