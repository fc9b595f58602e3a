"""Leases (RunStore.lease, core/cache.py): processes and replicas sharing a run store train a new
config once, and a killed holder does not block the others for longer than the lease's ttl.
Every test runs on SQLite and on a real PostgreSQL server (the `new_store` fixture)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.settings import ConfigError
from core.store import RunStore

REPO = Path(__file__).resolve().parents[1]

# One process asking the cache for Cfg(7): it trains slowly and writes a line per training.
_RACER = """
import sys, time
from core import cache
from tests.test_cache import Cfg, Result, make_kind
from core.store import RunStore

kind = make_kind([])
plain = kind.train
def train(cfg, on_epoch=None):
    with open(sys.argv[2], "a") as trained:
        trained.write("trained\\n")
    time.sleep(1.0)
    return plain(cfg, on_epoch)
kind = cache.RunKind(kind.name, kind.prefix, kind.result_from_dict, kind.estimate, kind.meta, train)
result = cache.obtain(kind, Cfg(7), RunStore(sys.argv[1]))
print(result.value, result.from_store)
"""

# Holds a lease with a short ttl until it is killed.
_HOLDER = """
import sys, time
from core.store import RunStore
with RunStore(sys.argv[1]).lease("k", ttl=30.0):
    print("held", flush=True)
    time.sleep(60)
"""


def _python(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_asking_for_one_new_run_train_it_once(new_store, tmp_path):
    store = new_store()
    trained = tmp_path / "trainings.txt"
    racers = [_python(_RACER, store.location, str(trained)) for _ in range(2)]
    answers = []
    for racer in racers:
        out, err = racer.communicate(timeout=60)
        assert racer.returncode == 0, err
        answers.append(out.split())
    assert trained.read_text().splitlines() == ["trained"]    # one training, not two
    # Both got 7 * 7: one trained it, the other read it from the store.
    assert sorted(answers) == [["49", "False"], ["49", "True"]]
    assert new_store().keys() == [k for k in store.keys() if k.startswith("sq-")]


def test_a_live_lease_is_renewed_past_its_ttl_and_blocks_the_others(new_store):
    holder, contender = new_store(), new_store()   # two instances: two holders
    released, entered, waits = [], [], []

    def hold() -> None:
        with holder.lease("k", ttl=0.4):
            time.sleep(1.3)                # over three ttls: only renewal keeps it
            released.append(time.monotonic())

    thread = threading.Thread(target=hold)
    thread.start()
    time.sleep(0.3)
    with contender.lease("k", on_wait=lambda: waits.append(1), ttl=0.4):
        entered.append(time.monotonic())
    thread.join()
    assert entered[0] >= released[0] and len(waits) >= 2


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_lease_held_by_a_killed_process_of_this_host_is_taken_at_once(new_store):
    store = new_store()
    child = _python(_HOLDER, store.location)
    try:
        assert child.stdout.readline().strip() == "held", child.stderr.read()
        assert not store._guarded("take", True, lambda conn: store._take(conn, "k", 30.0))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    start = time.monotonic()
    with store.lease("k", ttl=30.0):
        assert time.monotonic() - start < 1.0     # long before the 30 s lease would lapse


def test_a_lease_its_holder_stopped_renewing_lapses_after_its_ttl(new_store):
    store, elsewhere = new_store(), new_store()
    elsewhere._holder = "another-host:1:0"   # a replica on another host, killed after taking it
    assert elsewhere._guarded("take", False, lambda conn: elsewhere._take(conn, "k", 1.0))
    start, waits = time.monotonic(), []
    with store.lease("k", on_wait=lambda: waits.append(1), ttl=1.0):
        waited = time.monotonic() - start
    assert waits and 0.5 < waited < 5.0


def test_a_lease_on_a_store_that_cannot_open_is_skipped(tmp_path, caplog):
    (tmp_path / "a folder").mkdir()
    store = RunStore(tmp_path / "a folder")
    with caplog.at_level(logging.WARNING, logger="core.store"), store.lease("k"):
        pass                                           # a cache never blocks training
    assert any("lease(k) failed, treated as a miss" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("url", ["postgresql://u:secret@h:notaport/db",
                                 "postgresql://u:secret@h/db?colour=blue",
                                 "postgresql://u:secret@[::1/db"])
def test_a_malformed_database_url_is_refused_naming_satlab_store(url):
    with pytest.raises(ConfigError, match="SATLAB_STORE: not a valid PostgreSQL URL") as err:
        RunStore(url)
    assert "\n" not in str(err.value) and "secret" not in str(err.value)


def test_a_server_that_does_not_answer_is_one_line_naming_satlab_store(monkeypatch, caplog):
    with socket.socket() as s:                 # a free port: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("SATLAB_STORE", f"postgresql://satlab:secret@127.0.0.1:{port}/runs")
    with caplog.at_level(logging.WARNING, logger="core.store"):
        store = RunStore()
        assert store.get("a") is None and store.put("a", {"x": 1}) is False
    lines = [r.getMessage() for r in caplog.records]
    assert "SATLAB_STORE" in lines[0] and "not usable" in lines[0]
    assert all("\n" not in line and "secret" not in line for line in lines)


def test_a_malformed_url_from_the_environment_or_secrets_stops_the_cli_and_the_app(monkeypatch,
                                                                                    capsys):
    from streamlit.testing.v1 import AppTest

    from core import cache
    from core.tools.cli import main

    bad = "postgresql://satlab:secret@db.example:54x2/runs"
    monkeypatch.setattr(cache, "_default_store", None)
    monkeypatch.setenv("SATLAB_STORE", bad)
    with pytest.raises(SystemExit) as stop:
        main(["train", "--dataset", "moons", "--depth", "1", "--width", "4", "--epochs", "1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "SATLAB_STORE: not a valid PostgreSQL URL" in err and "secret" not in err
    # The app takes it from Streamlit secrets where the environment has none.
    monkeypatch.delenv("SATLAB_STORE")
    app = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60)
    app.secrets["SATLAB_STORE"] = bad
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert [e.value for e in app.error] == [
        "This server is misconfigured: SATLAB_STORE: not a valid PostgreSQL URL "
        "(postgresql://user:password@host:port/dbname): the port must be a number from 1 to "
        "65535, got '54x2'"]
