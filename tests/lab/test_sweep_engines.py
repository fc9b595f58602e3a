"""Sweeps in local worker processes: the same cells as one process, stored by the caller; and
the one-line refusals of bad --jobs / --engine values and of an unreachable Ray cluster."""

from __future__ import annotations

import socket

import pytest

from core.lab.config import RunConfig
from core.lab.sweep import SWEEP_CELL, SweepSpec, run_sweep
from core.lab.sweep_engines import LocalPool, make_engine, split_for_workers
from core.settings import ConfigError
from core.store import RunStore
from core.tools.cli import main

# One network shape: one stacked group of four here, halved into two groups for two workers.
SPEC = SweepSpec(RunConfig(epochs=1, max_train=300), x="lr", x_values=(1e-3, 1e-2),
                 y="init", y_values=("he_normal", "xavier_normal"))
COLUMNS = ["val_accuracy", "train_loss", "depth_ratio", "flat_mean", "diverged"]


def test_groups_are_halved_until_every_worker_has_one():
    assert split_for_workers([[0, 1, 2, 3, 4]], 2) == [[0, 1], [2, 3, 4]]
    assert split_for_workers([[0, 1, 2, 3], [4]], 4) == [[0], [1], [2, 3], [4]]
    assert split_for_workers([[0], [1]], 8) == [[0], [1]]          # single cells stay whole
    assert split_for_workers([[0, 1, 2]], 1) == [[0, 1, 2]]
    assert split_for_workers([], 4) == []


def test_two_workers_give_the_same_cells_as_one_process(tmp_path):
    one = run_sweep(SPEC, use_store=False)
    store = RunStore(tmp_path / "runs.db")
    heard = []
    two = run_sweep(SPEC, store=store, engine=make_engine(jobs=2),
                    on_progress=lambda done, total, message: heard.append((done, message)))
    assert one.timing["groups"] == [4] and two.timing["groups"] == [2, 2]
    # Bit for bit: the halves of a stacked model train as they do inside the whole.
    assert two.table[COLUMNS].equals(one.table[COLUMNS])
    assert two.epochs.equals(one.epochs)
    assert heard[-1] == (4, "4 of 4 cells done")
    assert any(0 < done < 4 for done, _ in heard)      # epochs reported from the workers
    assert all(SWEEP_CELL.store_key(cfg) in store for cfg in SPEC.cells())


@pytest.mark.parametrize("args,setting", [(("local", 0), "jobs"), (("local", 257), "jobs"),
                                          (("local", 2.5), "jobs"), (("spark", 1), "engine"),
                                          (("ray", 4), "jobs")])
def test_bad_engine_settings_are_named(args, setting):
    with pytest.raises(ConfigError) as err:
        make_engine(*args)
    assert str(err.value).startswith(f"{setting}:")
    assert isinstance(make_engine("local", 3), LocalPool)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]     # free again once closed: nothing listens there


@pytest.mark.parametrize("flags,address,words", [
    (["--jobs", "0"], None, "--jobs"), (["--engine", "spark"], None, "--engine"),
    (["--engine", "ray"], "", "set RAY_ADDRESS"),
    (["--engine", "ray"], "nonsense", "expected HOST:PORT"),
    (["--engine", "ray"], "127.0.0.1:{port}", "no Ray cluster answers at 127.0.0.1")])
def test_the_cli_refuses_in_one_line(flags, address, words, capsys, monkeypatch):
    if address is not None:
        monkeypatch.setenv("RAY_ADDRESS", address.format(port=_closed_port()))
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--x", "depth=2,3", "--y", "lr=0.01", "--epochs", "1", *flags])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err


def test_the_page_uses_the_trainings_the_process_may_run(monkeypatch):
    from core.lab.sweep_engines import InProcess, page_engine

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("SATLAB_MAX_TRAININGS", "3")
    assert isinstance(page_engine(), LocalPool) and page_engine().workers == 3
    monkeypatch.setenv("SATLAB_MAX_TRAININGS", "1")
    assert isinstance(page_engine(), InProcess)
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{_closed_port()}")
    with pytest.raises(ConfigError, match="no Ray cluster answers"):   # the page shows it
        page_engine()
