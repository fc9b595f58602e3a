"""Tests for core.store: round trips, LRU eviction, concurrency, faults (damage:
test_store_damage.py; leases: test_store_leases.py). The contract's tests run on both backends
(the `new_store` fixture: SQLite and a real PostgreSQL server); the file's faults on SQLite."""

from __future__ import annotations

import ast
import logging
import math
import multiprocessing
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.store import DEFAULT_MAX_BYTES, RunStore, default_store_location

REPO = pathlib.Path(__file__).resolve().parents[1]
STORE_SRC = [REPO / "core" / name for name in ("store.py", "store_sqlite.py", "store_postgres.py")]


def same(a, b) -> bool:
    """Structural equality where NaN equals NaN (and -0.0 differs from 0.0)."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def record_for(tag: str, i: int, size: int = 64) -> dict:
    """A deterministic record whose content can be re-derived from (tag, i)."""
    return {"tag": tag, "i": i, "data": [float(i) + j / 7 for j in range(size)],
            "nan": math.nan, "inf": math.inf}


@pytest.fixture
def store(new_store) -> RunStore:
    return new_store()


# -- basics -------------------------------------------------------------------


def test_round_trip_nan_inf_nested(store):
    rec = {
        "loss": [1.5, math.nan, math.inf, -math.inf, -0.0],
        "nested": [[1, 2], [3, [4.5, {"deep": [math.nan]}]], []],
        "name": "mlp-tanh", "none": None, "flag": True, "big": 2**70,
        "unicode": "σ(x) ✓",
    }
    store.put("abc123", rec)
    got = store.get("abc123")
    assert got is not None and same(got, rec)
    assert math.isnan(got["loss"][1]) and got["loss"][2] == math.inf


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rec=st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_round_trip_property(store, rec):
    store.put("prop", rec)
    assert same(store.get("prop"), rec)


def test_replace_delete_clear_contains_len(store):
    assert len(store) == 0 and "k1" not in store and store.get("k1") is None
    store.put("k1", {"v": 1})
    store.put("k2", {"v": 2})
    assert "k1" in store and len(store) == 2
    store.put("k1", {"v": "replaced"})
    assert store.get("k1") == {"v": "replaced"} and len(store) == 2
    store.delete("k1")
    assert "k1" not in store and store.get("k1") is None and len(store) == 1
    store.delete("k1")  # deleting a missing key is a no-op
    store.clear()
    assert len(store) == 0 and store.keys() == [] and store.size_bytes() == 0
    store.put("k3", {"v": 3})  # usable after clear
    assert store.get("k3") == {"v": 3}


def test_keys_order_by_recency(store):
    for k in ("a", "b", "c"):
        store.put(k, {"k": k})
    assert store.keys() == ["c", "b", "a"]
    store.get("a")
    assert store.keys() == ["a", "c", "b"]
    store.put("b", {"k": "b2"})  # a replace counts as a use
    assert store.keys() == ["b", "a", "c"]
    "c" in store  # membership is a peek, not a use  # noqa: B015
    assert store.keys() == ["b", "a", "c"]


def test_entries_meta_and_sizes(store):
    store.put("r1", {"x": list(range(100))}, meta={"act": "tanh", "depth": 4, "lr": math.inf})
    store.put("r2", {"x": 1})
    ents = store.entries()
    assert [e["key"] for e in ents] == ["r2", "r1"]
    assert set(ents[0]) == {"key", "bytes", "created", "last_access", "meta"}
    assert ents[0]["meta"] == {}
    assert ents[1]["meta"]["act"] == "tanh" and ents[1]["meta"]["lr"] == math.inf
    assert store.size_bytes() == sum(e["bytes"] for e in ents) > 0
    before = {e["key"]: e["last_access"] for e in ents}
    time.sleep(0.01)
    store.get("r1")
    after = {e["key"]: e for e in store.entries()}
    assert after["r1"]["last_access"] > before["r1"]
    assert after["r1"]["created"] <= before["r1"]


def test_entries_do_not_read_payloads(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite3")
    store.put("r1", {"x": 1}, meta={"m": 1})
    with sqlite3.connect(store.path) as raw:
        raw.execute("UPDATE runs SET payload = x'00' WHERE key = 'r1'")
    raw.close()
    assert store.entries()[0]["meta"] == {"m": 1}


def test_put_rejects_bad_values(store):
    with pytest.raises(TypeError):
        store.put("k", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.put("k", {"x": object()})
    with pytest.raises(TypeError):
        store.put("k", {"x": 1}, meta="not a dict")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.put("k", {"x": 1}, meta={"blob": "x" * 100_000})
    assert "k" not in store


def test_persistence_across_instances(tmp_path):
    path = tmp_path / "sub" / "dir" / "runs.sqlite3"
    s1 = RunStore(path)
    assert path.parent.is_dir() and s1.path == path
    s1.put("deadbeef", {"acc": [0.5, math.nan]}, meta={"name": "x"})
    del s1
    s2 = RunStore(str(path))  # "restart"
    assert same(s2.get("deadbeef"), {"acc": [0.5, math.nan]})
    assert s2.entries()[0]["meta"] == {"name": "x"}


def test_default_store_location(monkeypatch, tmp_path):
    monkeypatch.setenv("SATLAB_STORE", str(tmp_path / "env" / "s.sqlite3"))
    assert default_store_location() == str(tmp_path / "env" / "s.sqlite3")
    s = RunStore()
    assert s.path == tmp_path / "env" / "s.sqlite3" and s.path.parent.is_dir()
    assert s.max_bytes == DEFAULT_MAX_BYTES == 256 * 2**20
    monkeypatch.delenv("SATLAB_STORE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_store_location() == str(tmp_path / "home" / ".cache" / "saturation-lab"
                                           / "runs.sqlite3")


@pytest.mark.parametrize(
    "key", ["../etc/passwd", "", "a/b", "a b", "a.b", "x" * 129, "é", "k\x00", None, 123]
)
def test_invalid_keys_raise(store, key):
    with pytest.raises(ValueError):
        store.get(key)
    with pytest.raises(ValueError):
        store.put(key, {"x": 1})
    with pytest.raises(ValueError):
        store.delete(key)
    assert key not in store
    assert store.path is None or not any(
        p.name != "runs.sqlite3" and not p.name.startswith("runs.sqlite3-")
        for p in store.path.parent.iterdir())


def test_valid_key_edges(store):
    for key in ("x" * 128, "A-b_9", "0123456789abcdef" * 4):
        store.put(key, {"k": key})
        assert store.get(key) == {"k": key}


@pytest.mark.parametrize("source", STORE_SRC, ids=lambda p: p.name)
def test_no_pickle_and_no_streamlit(source):
    tree = ast.parse(source.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            imported.add("__import__")
    forbidden = {"pickle", "cPickle", "_pickle", "shelve", "joblib", "dill", "cloudpickle",
                 "marshal", "streamlit", "__import__", "importlib"}
    assert not imported & forbidden, imported & forbidden


# -- eviction -----------------------------------------------------------------


def _incompressible(i: int, n: int = 3000) -> dict:
    if n == 3000:  # the same record for the same i, so a test can compare what comes back
        return _incompressible.cache.setdefault(i, {"i": i, "blob": os.urandom(n).hex()})
    return {"i": i, "blob": os.urandom(n).hex()}


_incompressible.cache = {}


def test_lru_eviction(new_store):
    recs = [_incompressible(i) for i in range(5)]
    # Measure real (compressed) sizes with an unbounded store.
    probe = new_store("probe")
    for i, r in enumerate(recs):
        probe.put(f"e{i}", r)
    sizes = {e["key"]: e["bytes"] for e in probe.entries()}
    room = 3 * max(sizes.values())
    assert room < 4 * min(sizes.values())  # exactly three entries fit

    s = new_store("lru", max_bytes=room)
    for i in range(3):
        s.put(f"e{i}", recs[i])
    assert len(s) == 3
    assert s.get("e0") == recs[0]  # e0 is now the most recently used
    s.put("e3", recs[3])
    assert "e1" not in s  # least recently used goes first
    assert s.keys() == ["e3", "e0", "e2"]
    s.put("e4", recs[4])
    assert s.keys() == ["e4", "e3", "e0"]
    assert s.size_bytes() <= room
    assert all(s.get(k) == recs[int(k[1])] for k in ("e0", "e3", "e4"))

    # An entry bigger than the whole budget is simply not kept.
    s.put("huge", _incompressible(99, n=4 * room))
    assert "huge" not in s and s.get("huge") is None
    assert s.keys() == ["e4", "e3", "e0"]
    # ...and it replaces (drops) a stale older value under the same key.
    s.put("e0", _incompressible(98, n=4 * room))
    assert "e0" not in s and s.size_bytes() <= room


def test_zero_budget_keeps_nothing(new_store, tmp_path):
    s = new_store("z", max_bytes=0)
    s.put("a", {"x": 1})
    assert len(s) == 0 and s.get("a") is None
    with pytest.raises(ValueError):
        RunStore(tmp_path / "n.sqlite3", max_bytes=-1)


# -- concurrency --------------------------------------------------------------


def _process_writer(path: str, worker: int, n: int, barrier) -> None:
    s = RunStore(path)  # every process opens (and maybe creates) the store itself
    barrier.wait()
    for i in range(n):
        s.put(f"w{worker}_{i}", record_for(f"w{worker}", i))
        if i % 5 == 0:
            s.get(f"w{worker}_{i // 2}")


def test_four_processes_writing_at_once(new_store):
    store = new_store("shared")
    n = 25 if store.path else 10   # a server's connection per call is slower than a file's
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_process_writer, args=(store.location, w, n, barrier))
             for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    s = new_store("shared")
    assert len(s) == 4 * n
    for w in range(4):
        for i in range(n):
            assert same(s.get(f"w{w}_{i}"), record_for(f"w{w}", i))


def test_eight_threads_one_store(store):
    errors: list[BaseException] = []
    start = threading.Barrier(8)
    n = 25 if store.path else 10   # a server's connection per call is slower than a file's

    def work(t: int) -> None:
        try:
            start.wait()
            for i in range(n):
                store.put(f"t{t}_{i}", record_for(f"t{t}", i))
                assert same(store.get(f"t{t}_{i}"), record_for(f"t{t}", i))
                store.get(f"t{(t + 1) % 8}_{i}")  # may or may not exist yet
                len(store), store.keys()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    assert len(store) == 8 * n
    assert all(same(store.get(f"t{t}_{i}"), record_for(f"t{t}", i))
               for t in range(8) for i in range(n))


_KILLED_WRITER = """
import sys
from core.store import RunStore
sys.path.insert(0, {tests!r})
from test_store import record_for
s = RunStore({path!r})
i = 0
while True:
    s.put(f"k{{i}}", record_for("kill", i, size=4000))
    s.put("hot", record_for("hot", i, size=4000))  # the same key, replaced over and over
    if i == 3:
        print("writing", flush=True)
    i += 1
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_write_leaves_readable_store(tmp_path):
    path = tmp_path / "killed.sqlite3"
    base = RunStore(path)
    for i in range(20):
        base.put(f"pre{i}", record_for("pre", i))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    script = _KILLED_WRITER.format(path=str(path), tests=str(REPO / "tests"))
    for delay in (0.0, 0.05, 0.15):
        with subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
            try:
                line = child.stdout.readline()
                assert line.strip() == "writing", child.stderr.read()
                time.sleep(delay)  # let it get well into its write loop
            finally:
                child.send_signal(signal.SIGKILL)
                child.wait(10)
        assert child.returncode == -signal.SIGKILL

        s = RunStore(path)
        keys = s.keys()
        assert {f"pre{i}" for i in range(20)} <= set(keys)
        for k in keys:
            got = s.get(k)
            assert got is not None, k
            if k.startswith("pre"):
                assert same(got, record_for("pre", int(k[3:])))
            elif k == "after":
                assert set(got) == {"ok"}
            elif k == "hot":
                assert same(got, record_for("hot", got["i"], size=4000))
            else:
                assert same(got, record_for("kill", int(k[1:]), size=4000))
        s.put("after", {"ok": delay})
        assert s.get("after") == {"ok": delay}


# -- faults (issue 14) ----------------------------------------------------------


@pytest.mark.parametrize("where", ["folder", "under a file"])
def test_every_method_degrades_to_a_miss_when_the_store_cannot_open(tmp_path, where, caplog):
    blocker = tmp_path / "blocker"
    if where == "folder":
        blocker.mkdir()
        path = blocker  # the store path is a directory
    else:
        blocker.write_text("a file, not a folder")
        path = blocker / "runs.sqlite3"
    with caplog.at_level(logging.WARNING, logger="core.store"):
        s = RunStore(path)
        assert s.get("a") is None and s.put("a", {"x": 1}) is False
        assert "a" not in s and len(s) == 0 and s.keys() == [] and s.entries() == []
        assert s.size_bytes() == 0
        s.delete("a")
        s.clear()
    assert all(r.getMessage().count("\n") == 0 for r in caplog.records)
    assert sum("failed, treated as a miss" in r.getMessage() for r in caplog.records) >= 8


def _SmallDisk(path, max_bytes: int) -> RunStore:
    """A store whose database may not grow past `store.pages` pages (0: any size): SQLite itself
    then answers SQLITE_FULL ("database or disk is full"), as it does on a full disk."""
    store = RunStore(path, max_bytes=max_bytes)
    store.pages = 0
    plain = store._backend.connect

    def connect():
        conn = plain()
        if store.pages:
            conn.execute(f"PRAGMA max_page_count = {store.pages}")
        return conn

    store._backend.connect = connect
    return store


def test_a_full_disk_evicts_the_oldest_runs_to_make_room(tmp_path):
    s = _SmallDisk(tmp_path / "full.sqlite3", max_bytes=10**9)   # the cap never binds here
    for i in range(12):
        assert s.put(f"e{i}", _incompressible(i)) is True
    pages = sqlite3.connect(s.path).execute("PRAGMA page_count").fetchone()[0]
    s.pages = pages
    # The fault is real: a plain insert into this database is refused by SQLite.
    conn = s._backend.connect()
    with pytest.raises(sqlite3.OperationalError, match="full"):
        conn.execute("INSERT INTO runs VALUES ('x', ?, 1, 0, 0, 0, NULL)", (os.urandom(20_000),))
    conn.close()
    for i in range(12, 40):
        assert s.put(f"e{i}", _incompressible(i)) is True, i
        assert s.get(f"e{i}") == _incompressible.cache[i]
    keys = s.keys()
    assert 8 <= len(keys) <= 12 and keys[0] == "e39"
    # The newest runs are the ones kept, in LRU order.
    assert keys == [f"e{i}" for i in range(39, 39 - len(keys), -1)]


def test_eviction_comes_before_the_insert_at_the_size_cap(tmp_path):
    probe = RunStore(tmp_path / "probe.sqlite3")
    probe.put("p", _incompressible(0))
    size = probe.entries()[0]["bytes"]
    s = _SmallDisk(tmp_path / "cap.sqlite3", max_bytes=4 * size + size // 2)
    for i in range(4):
        s.put(f"e{i}", _incompressible(i))
    s.pages = sqlite3.connect(s.path).execute("PRAGMA page_count").fetchone()[0]
    # The file may not grow at all: only pages freed by evicting first can take the new run.
    for i in range(4, 12):
        assert s.put(f"e{i}", _incompressible(i)) is True
    assert s.keys() == ["e11", "e10", "e9", "e8"]


def test_a_write_that_is_lost_is_reported(tmp_path, caplog):
    # The WAL deleted under a live store (another connection keeps the database open): SQLite
    # cannot commit into a file that is gone, so put must say False, never True.
    s = RunStore(tmp_path / "wal.sqlite3")
    keeper = sqlite3.connect(s.path)
    keeper.execute("SELECT COUNT(*) FROM runs").fetchall()
    results = []
    with caplog.at_level(logging.WARNING, logger="core.store"):
        for i in range(16):
            results.append(s.put(f"k{i}", {"i": i}))
            if i == 3:
                os.unlink(str(s.path) + "-wal")
    keeper.close()
    present = set(RunStore(s.path).keys())
    assert {f"k{i}" for i, ok in enumerate(results) if ok} <= present
    assert results.count(False) >= 10      # after the unlink
    assert sum("put(" in r.getMessage() for r in caplog.records) == results.count(False)
