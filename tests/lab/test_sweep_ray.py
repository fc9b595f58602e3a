"""A sweep through a real Ray cluster on localhost (`ray start --head`, stopped by its own pid).

One small sweep (two stacked groups of two digits cells, one epoch): the cluster gives the same
cells as this process, the driver stores them, a task that raises is named, not lost, and a task
whose worker dies is run again. 20-30 s here on 2 busy cores: the head starts in 1-3 s, and each
new worker (the job's first two, the retry's) imports torch and trains its first group in 5-10 s.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from core.lab.config import RunConfig
from core.lab.sweep import SWEEP_CELL, SweepFailed, SweepSpec, run_sweep
from core.lab.sweep_engines import make_engine
from core.store import RunStore

# The `ray` extra, which the `test` extra includes. Not imported here: Ray reads its token
# settings when it loads, and the fixture sets them first.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="no ray")

SPEC = SweepSpec(RunConfig(epochs=1, max_train=300), x="depth", x_values=(2, 3),
                 y="lr", y_values=(1e-3, 1e-2))
COLUMNS = ["val_accuracy", "train_loss", "depth_ratio", "flat_mean", "diverged"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """HOST:PORT of a fresh 2-CPU head. Every port is a free one, not Ray's fixed defaults,
    so another cluster on this machine is neither joined nor disturbed; its token (Ray's
    token authentication) is this fixture's own, given to the head and to this driver."""
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    saved = {name: os.environ.get(name) for name in auth}
    os.environ.update(auth)
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are long
    flags = {"--port": port, "--ray-client-server-port": _free_port(),
             "--dashboard-agent-listen-port": _free_port(),
             "--dashboard-agent-grpc-port": _free_port(),
             "--runtime-env-agent-port": _free_port(), "--metrics-export-port": _free_port(),
             "--dashboard-port": _free_port()}
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
         "--num-cpus=2", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp}",
         *(f"{flag}={value}" for flag, value in flags.items())],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "RAY_ADDRESS": ""})
    started = time.monotonic()
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline, "no Ray head"
                time.sleep(0.2)
        print(f"Ray head up in {time.monotonic() - started:.1f} s")
        yield address
    finally:
        import ray

        stopping = time.monotonic()
        ray.shutdown()
        # The head's session (GCS, raylet, workers), at once: on SIGTERM Ray takes ~35 s here.
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)
        print(f"Ray stopped in {time.monotonic() - stopping:.1f} s")
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_the_cluster_gives_the_same_cells_as_this_process(ray_head, tmp_path, monkeypatch):
    here = run_sweep(SPEC, use_store=False)
    store = RunStore(tmp_path / "runs.db")
    monkeypatch.setenv("RAY_ADDRESS", ray_head)
    engine = make_engine("ray")
    assert engine.workers == 2                       # the cluster's CPUs
    heard = []
    there = run_sweep(SPEC, store=store, engine=engine,
                      on_progress=lambda done, total, message: heard.append(done))
    assert there.timing["groups"] == [2, 2]
    assert there.table[COLUMNS].equals(here.table[COLUMNS])
    assert there.epochs.equals(here.epochs)
    assert heard[-1] == 4
    # The driver wrote every cell into the store: a second sweep trains nothing.
    assert all(SWEEP_CELL.store_key(cfg) in store for cfg in SPEC.cells())
    again = run_sweep(SPEC, store=store, engine=engine)
    assert again.timing["cells_from_store"] == 4


def test_a_task_that_raises_is_named_and_the_rest_is_stored(ray_head, tmp_path, monkeypatch):
    import core.lab.sweep_engines as engines

    def fails_for_depth_3(unit):  # defined here, so Ray ships it by value to the workers
        from core.lab.sweep_engines import train_unit

        if unit[0].depth == 3:
            raise ValueError("out of memory on this node")
        return train_unit(unit)

    monkeypatch.setattr(engines, "_train_on_ray", fails_for_depth_3)
    store = RunStore(tmp_path / "runs.db")
    with pytest.raises(SweepFailed) as caught:
        run_sweep(SPEC, store=store, engine=make_engine("ray", address=ray_head))
    assert caught.value.cells == ["depth=3, lr=0.001", "depth=3, lr=0.01"]
    assert "ValueError: out of memory on this node" in str(caught.value)
    stored = {cfg.depth: SWEEP_CELL.store_key(cfg) in store for cfg in SPEC.cells()}
    assert stored == {2: True, 3: False}


def test_a_killed_worker_is_retried(ray_head, tmp_path, monkeypatch):
    import core.lab.sweep_engines as engines

    def dies_on_first_try(unit, folder=str(tmp_path)):  # shipped by value, like the above
        import os
        from pathlib import Path

        from core.lab.sweep_engines import train_unit

        tried = Path(folder) / f"depth-{unit[0].depth}"
        if unit[0].depth == 3 and not tried.exists():
            tried.touch()
            os._exit(1)                                 # the worker process dies mid-task
        return train_unit(unit)

    monkeypatch.setattr(engines, "_train_on_ray", dies_on_first_try)
    result = run_sweep(SPEC, use_store=False, engine=make_engine("ray", address=ray_head))
    assert [p.name for p in tmp_path.iterdir()] == ["depth-3"]     # it did die once
    assert result.table[COLUMNS].equals(run_sweep(SPEC, use_store=False).table[COLUMNS])
