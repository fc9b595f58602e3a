"""Tests for core.store: round trips, LRU eviction, damage handling, concurrency."""

from __future__ import annotations

import ast
import json
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
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.store import DEFAULT_MAX_BYTES, RunStore, default_store_path

REPO = pathlib.Path(__file__).resolve().parents[1]
STORE_SRC = REPO / "core" / "store.py"


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
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs.sqlite3")


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


def test_entries_do_not_read_payloads(store, tmp_path):
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


def test_default_store_path(monkeypatch, tmp_path):
    monkeypatch.setenv("SATLAB_STORE", str(tmp_path / "env" / "s.sqlite3"))
    assert default_store_path() == tmp_path / "env" / "s.sqlite3"
    s = RunStore()
    assert s.path == tmp_path / "env" / "s.sqlite3" and s.path.parent.is_dir()
    assert s.max_bytes == DEFAULT_MAX_BYTES == 256 * 2**20
    monkeypatch.delenv("SATLAB_STORE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_store_path() == tmp_path / "home" / ".cache" / "saturation-lab" / "runs.sqlite3"


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
    assert not any(p.name != "runs.sqlite3" and not p.name.startswith("runs.sqlite3-")
                   for p in store.path.parent.iterdir())


def test_valid_key_edges(store):
    for key in ("x" * 128, "A-b_9", "0123456789abcdef" * 4):
        store.put(key, {"k": key})
        assert store.get(key) == {"k": key}


def test_no_pickle_and_no_streamlit():
    tree = ast.parse(STORE_SRC.read_text())
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
    return {"i": i, "blob": os.urandom(n).hex()}


def test_lru_eviction(tmp_path):
    recs = [_incompressible(i) for i in range(5)]
    # Measure real (compressed) sizes with an unbounded store.
    probe = RunStore(tmp_path / "probe.sqlite3")
    for i, r in enumerate(recs):
        probe.put(f"e{i}", r)
    sizes = {e["key"]: e["bytes"] for e in probe.entries()}
    room = 3 * max(sizes.values())
    assert room < 4 * min(sizes.values())  # exactly three entries fit

    s = RunStore(tmp_path / "lru.sqlite3", max_bytes=room)
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


def test_zero_budget_keeps_nothing(tmp_path):
    s = RunStore(tmp_path / "z.sqlite3", max_bytes=0)
    s.put("a", {"x": 1})
    assert len(s) == 0 and s.get("a") is None
    with pytest.raises(ValueError):
        RunStore(tmp_path / "n.sqlite3", max_bytes=-1)


# -- damage -------------------------------------------------------------------


def _raw_update(path, sql, params=()):
    conn = sqlite3.connect(path)
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
    store.put("victim", {"x": 1})
    store.put("bystander", {"y": 2})
    if payload is None:
        # payload is NOT NULL; a row can still be damaged into a number.
        _raw_update(store.path, "UPDATE runs SET payload = 42 WHERE key = 'victim'")
    else:
        _raw_update(store.path, "UPDATE runs SET payload = ? WHERE key = 'victim'", (payload,))
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
    assert list(tmp_path.glob("runs.sqlite3.corrupt-*")), "damaged file should be kept aside"
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


# -- concurrency --------------------------------------------------------------


def _process_writer(path: str, worker: int, n: int, barrier) -> None:
    s = RunStore(path)  # every process opens (and maybe creates) the store itself
    barrier.wait()
    for i in range(n):
        s.put(f"w{worker}_{i}", record_for(f"w{worker}", i))
        if i % 5 == 0:
            s.get(f"w{worker}_{i // 2}")


def test_four_processes_writing_at_once(tmp_path):
    path = str(tmp_path / "shared.sqlite3")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_process_writer, args=(path, w, 25, barrier)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    s = RunStore(path)
    assert len(s) == 100
    for w in range(4):
        for i in range(25):
            assert same(s.get(f"w{w}_{i}"), record_for(f"w{w}", i))


def test_eight_threads_one_store(store):
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            start.wait()
            for i in range(25):
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
    assert len(store) == 200
    assert all(same(store.get(f"t{t}_{i}"), record_for(f"t{t}", i))
               for t in range(8) for i in range(25))


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
