"""The run store's PostgreSQL backend (core/store.py): one database shared by every replica.

    SATLAB_STORE=postgresql://user:password@host:5432/dbname   (psycopg 3: the `postgres` extra)

Same tables as the SQLite file (core/store_sqlite.py), in the database's default schema, with
PostgreSQL's types. Writers are serialised by a table lock taken at the start of each write
transaction (as SQLite's BEGIN IMMEDIATE does), so "evict, then insert" and the recency counter
stay one ordered history; readers are never blocked. Damage and disk-full recovery is the
server's business: a failed statement is a miss, like any storage failure.
"""

from __future__ import annotations

import contextlib
import logging
from urllib.parse import urlencode
from typing import Callable, Iterator, TypeVar

from core.settings import ConfigError

log = logging.getLogger("core.store")

# A server that does not answer is given up on quickly: each store call is one connection, and a
# page waiting on a dead database should fall back to training, not hang.
_CONNECT_TIMEOUT_S = 5

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key         TEXT PRIMARY KEY,
    payload     BYTEA NOT NULL,
    bytes       BIGINT NOT NULL,
    created     DOUBLE PRECISION NOT NULL,
    last_access DOUBLE PRECISION NOT NULL,
    tick        BIGINT NOT NULL,
    meta        TEXT
);
CREATE INDEX IF NOT EXISTS runs_tick ON runs (tick);
CREATE TABLE IF NOT EXISTS leases (
    key         TEXT PRIMARY KEY,
    holder    TEXT NOT NULL,
    expires_at  DOUBLE PRECISION NOT NULL
)
"""

# Two replicas creating the tables at once race inside CREATE ... IF NOT EXISTS (a unique
# violation on the catalogue); this advisory lock id ("satl" in ASCII) serialises them.
_SCHEMA_LOCK = 0x7361746C

_T = TypeVar("_T")


def is_database_url(location: str) -> bool:
    return location.startswith(("postgresql://", "postgres://"))


class PostgresBackend:
    """Connections and transactions for a store in a PostgreSQL database (psycopg 3).

    Each operation opens its own connection (about 3 ms on localhost), so the backend holds none
    and may be shared between threads; the server does the locking."""

    path = None

    def __init__(self, url: str) -> None:
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict
        except ImportError:
            raise ConfigError("SATLAB_STORE", "a postgresql:// URL needs psycopg: "
                              "pip install 'saturation-lab[postgres]'") from None
        try:
            parts = conninfo_to_dict(url)
            problem = None
        except psycopg.Error as exc:   # the driver quotes the URL: its password must not show
            problem = " ".join(str(exc).replace(url, "the URL").split())
        else:
            port = str(parts.get("port", "5432"))
            if not (port.isdigit() and 0 < int(port) < 65536):
                problem = f"the port must be a number from 1 to 65535, got {port!r}"
        if problem:
            raise ConfigError("SATLAB_STORE", "not a valid PostgreSQL URL "
                              f"(postgresql://user:password@host:port/dbname): {problem}")
        self._psycopg = psycopg
        self.errors = (psycopg.Error,)
        self._url = url
        # Logs and the in-memory cache name the store without its password.
        shown = {k: v for k, v in parts.items() if k not in ("user", "password", "host",
                                                              "port", "dbname")}
        self.location = "postgresql://{}@{}:{}/{}{}".format(
            parts.get("user", ""), parts.get("host", ""), parts.get("port", "5432"),
            parts.get("dbname", ""), "?" + urlencode(shown) if shown else "")
        self._has_schema = False

    def prepare(self) -> None:
        pass   # the tables are made on the first connection that works

    @staticmethod
    def sql(text: str) -> str:
        return text.replace("?", "%s")   # the shared SQL's placeholders, psycopg's way

    def is_full(self, exc: BaseException) -> bool:
        return isinstance(exc, self._psycopg.errors.DiskFull)

    @contextlib.contextmanager
    def write(self, conn) -> Iterator[None]:
        """A transaction that holds the write lock on the runs table from its start."""
        with conn.transaction():
            conn.execute("LOCK TABLE runs IN SHARE ROW EXCLUSIVE MODE")
            yield

    def reclaim(self, conn) -> None:
        pass   # autovacuum gives deleted rows' space back to the database

    def connect(self):
        conn = self._psycopg.connect(self._url, autocommit=True,
                                     connect_timeout=_CONNECT_TIMEOUT_S)
        if not self._has_schema:
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                    conn.execute(SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._has_schema = True
        return conn

    def run(self, fn: Callable[..., _T], valid: Callable[[str, object], bool]) -> _T:
        """``fn`` on a fresh connection."""
        with contextlib.closing(self.connect()) as conn:
            return fn(conn)
