"""A damaged run store (core/store.py, core/salvage.py): a damaged row reads as missing (on SQLite
and PostgreSQL), a junk file is replaced, a corrupt page or a cut-off end loses only the runs on
it."""

from __future__ import annotations

import json
import logging
import sqlite3
import zlib

import pytest

from core.store import RunStore
from tests.test_store import record_for, same


@pytest.fixture
def store(new_store) -> RunStore:
    return new_store()


def _raw_update(store: RunStore, sql, params=()):
    """Write into the store's table behind its back: sqlite3 on a file, psycopg on a server."""
    if store.path is None:
        import psycopg
        with psycopg.connect(store.location, autocommit=True) as conn:
            conn.execute(sql.replace("?", "%s"), params)
        return
    conn = sqlite3.connect(store.path)
    with conn:
        conn.execute(sql, params)
    conn.close()


def _good_payload_for_other_key() -> bytes:
    return zlib.compress(json.dumps({"v": 1, "key": "other", "record": {"x": 1}}).encode())


@pytest.mark.parametrize(
    "payload",
    [
        b"\xde\xad\xbe\xef garbage",                        # not zlib
        zlib.compress(b"{not json"),                        # not JSON
        zlib.compress(b"\xff\xfe\xfa"),                     # not UTF-8
        zlib.compress(b"[1, 2, 3]"),                        # JSON, not a dict
        zlib.compress(b'{"v": 1, "key": "victim", "record": [1]}'),  # record not a dict
        _good_payload_for_other_key(),                      # wrong key
        zlib.compress(b"{}")[:-3],                          # truncated (half-written)
        "text, not a blob",
        None,
    ],
)
def test_damaged_row_is_missing_and_deleted(store, payload, caplog):
    if store.path is None and not isinstance(payload, bytes):
        pytest.skip("PostgreSQL's bytea column holds bytes only")
    store.put("victim", {"x": 1})
    store.put("bystander", {"y": 2})
    if payload is None:
        # payload is NOT NULL; a row can still be damaged into a number.
        _raw_update(store, "UPDATE runs SET payload = 42 WHERE key = 'victim'")
    else:
        _raw_update(store, "UPDATE runs SET payload = ? WHERE key = 'victim'", (payload,))
    with caplog.at_level(logging.WARNING, logger="core.store"):
        assert store.get("victim") is None
    assert "victim" not in store and "victim" not in store.keys()
    assert store.get("bystander") == {"y": 2}
    assert any("damaged" in r.getMessage() for r in caplog.records)


def test_junk_database_file_recovers(tmp_path, caplog):
    path = tmp_path / "runs.sqlite3"
    s = RunStore(path)
    s.put("a", {"x": 1})
    s.put("b", {"x": 2})
    path.write_bytes(b"this is definitely not an SQLite database\n" * 200)
    with caplog.at_level(logging.WARNING, logger="core.store"):
        assert s.get("a") is None  # no exception
    assert any("damaged" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "runs.sqlite3.corrupt").is_file(), "damaged file should be kept aside"
    s.put("c", {"x": 3})
    assert s.get("c") == {"x": 3} and s.keys() == ["c"]

    # Junk again: put (rather than get) must also cope, and so must a new instance.
    path.write_bytes(b"\x00\xffjunk" * 1000)
    s.put("d", {"x": 4})
    assert s.get("d") == {"x": 4}
    path.write_bytes(b"junk" * 1000)
    s2 = RunStore(path)
    assert len(s2) == 0 and s2.entries() == [] and s2.size_bytes() == 0
    s2.put("e", {"x": 5})
    assert s.get("e") == {"x": 5}


def test_junk_file_from_the_start(tmp_path):
    path = tmp_path / "runs.sqlite3"
    path.write_bytes(b"garbage" * 100)
    s = RunStore(path)
    assert s.get("a") is None
    s.put("a", {"ok": True})
    assert s.get("a") == {"ok": True}


def _fifty_runs(path) -> RunStore:
    s = RunStore(path)
    for i in range(50):
        s.put(f"r{i:02d}", record_for("r", i, size=400))
    return s


def _checkpoint(path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _survivors(s: RunStore) -> int:
    keys = s.keys()
    for k in keys:  # every survivor is intact: compared with the record re-derived from its key
        assert same(s.get(k), record_for("r", int(k[1:]), size=400)), k
    return len(keys)


def test_a_corrupt_page_drops_only_the_runs_on_it(tmp_path, caplog):
    path = tmp_path / "runs.sqlite3"
    s = _fifty_runs(path)
    _checkpoint(path)
    page = 4096
    pages = path.stat().st_size // page
    old_backup = tmp_path / "runs.sqlite3.corrupt-20250101-000000-1-abcd"
    old_backup.write_bytes(b"an earlier scheme's backup")
    with open(path, "r+b") as fh:     # garbage over one page in the middle of the table
        fh.seek(page * (pages // 2))
        fh.write(b"\xa5" * page)
    with caplog.at_level(logging.WARNING, logger="core.store"):
        survivors = _survivors(s)
    assert any("damaged" in r.getMessage() for r in caplog.records)
    # One page holds at most 4096 / ~1,300 bytes per run = 3 runs, plus one run spilling over it.
    assert 46 <= survivors < 50
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == ["runs.sqlite3.corrupt"]
    assert s.put("new", {"ok": 1}) and s.get("new") == {"ok": 1}


def test_a_truncated_store_keeps_the_runs_before_the_cut(tmp_path):
    path = tmp_path / "runs.sqlite3"
    s = _fifty_runs(path)
    _checkpoint(path)
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    survivors = _survivors(s)
    assert 15 <= survivors <= 30
