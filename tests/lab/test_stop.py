"""A Stop asked for while a run trains (core.training.StopTraining from `on_epoch`): the run ends
at an epoch boundary with what it recorded, stored as "stopped", served only to the page that
offers Stop, and trained in full for everyone else; the doctor and the lessons do not judge it
as a whole run."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from core import cache
from core.lab.config import RunConfig
from core.lab.doctor import diagnose
from core.lab.presets import PRESETS
from core.lab.runs import cached_run, get_run, stored_runs
from core.lab.trainer import train
from core.recurrent.config import RecurrentConfig
from core.recurrent.trainer import cached_recurrent_run, get_recurrent_run
from core.store import RunStore
from core.training import StopTraining

CFG = RunConfig(dataset="digits", width=32, max_train=300, epochs=6)


def stop_after(epochs_done: int):
    """An `on_epoch` that asks to stop once the partial run has `epochs_done` epochs (as the
    Stop button does when its click is heard after that epoch)."""
    def on_epoch(partial) -> None:
        if partial.epochs_done >= epochs_done:
            raise StopTraining
    return on_epoch


@pytest.fixture
def store(tmp_path):
    cache.forget_recent()
    yield RunStore(tmp_path / "runs.sqlite3")
    cache.forget_recent()


def _first(table: pd.DataFrame, epochs: int) -> pd.DataFrame:
    return table[table.epoch <= epochs].reset_index(drop=True)


def test_a_stop_ends_the_run_after_the_next_epoch_with_the_full_runs_first_epochs():
    stopped = train(CFG, on_epoch=stop_after(2))
    full = train(CFG)
    assert (stopped.status, stopped.epochs_done, stopped.stopped) == ("stopped", 3, True)
    assert full.status == "completed" and not full.stopped
    # Same seed, same updates: its records are the full run's first three epochs, step for step.
    pd.testing.assert_frame_equal(stopped.steps, _first(full.steps, 3))
    pd.testing.assert_frame_equal(stopped.epochs, _first(full.epochs[full.epochs.split != "test"],
                                                         3))
    assert "test" not in set(stopped.epochs.split)   # a stopped run is not scored on the test set
    # Its last epoch recorded the end state as a last epoch does: the tables are those of the
    # same run configured for three epochs (a constant learning rate: nothing depends on 6).
    three = train(CFG.replace(epochs=3))
    for name in ("layers", "histograms"):
        pd.testing.assert_frame_equal(getattr(stopped, name), getattr(three, name))


def test_a_stop_asked_at_initialisation_still_trains_one_epoch():
    assert train(CFG, on_epoch=stop_after(0)).epochs_done == 1


def test_a_stop_heard_before_the_last_epoch_completes_the_run():
    run = train(CFG, on_epoch=stop_after(CFG.epochs - 1))
    assert run.status == "completed" and run.epochs_done == CFG.epochs
    assert "test" in set(run.epochs.split)


def test_a_stopped_run_is_stored_served_only_when_asked_and_replaced_by_the_full_run(store):
    stopped = get_run(CFG, store=store, on_epoch=stop_after(1), stopped=True)
    assert stopped.stopped and stopped.epochs_done == 2
    assert store.entries()[0]["meta"]["status"] == "stopped"
    # The page that offers Stop sees it again (from memory, then from the file alone) ...
    assert cached_run(CFG, store, stopped=True).stopped
    cache.forget_recent()
    again = get_run(CFG, store=RunStore(store.path), stopped=True)
    assert again.from_store and again.stopped and again.epochs_done == 2
    # ... nobody else takes it for a whole run: Compare's list leaves it out, a lookup misses it,
    assert cached_run(CFG, store) is None and stored_runs(store) == []
    # and asking for the run trains all its epochs and replaces it in the store.
    full = get_run(CFG, store=store)
    assert full.status == "completed" and full.epochs_done == CFG.epochs and not full.from_store
    assert [e["meta"]["status"] for e in store.entries()] == ["completed"]
    assert cached_run(CFG, store, stopped=True).status == "completed"


def test_the_doctor_and_the_lessons_do_not_judge_a_stopped_run_as_a_whole_one():
    preset = PRESETS["vanishing"]    # at chance for all its epochs: "not learning"
    stopped = train(preset.config, on_epoch=stop_after(0))
    assert stopped.stopped
    whole = dataclasses.replace(stopped, status="completed")   # the same tables, not stopped
    assert "not_learning" in {f.id for f in diagnose(whole)}
    assert "not_learning" not in {f.id for f in diagnose(stopped)}
    # Findings about the network at initialisation hold whatever happened later.
    assert "vanishing" in {f.id for f in diagnose(stopped)}
    assert preset.ready_claims(whole) and not preset.ready_claims(stopped)


def test_a_recurrent_run_stops_the_same_way(store):
    cfg = RecurrentConfig(dataset="digits", sequence="chunks", chunk=4, max_train=64,
                          batch_size=32, hidden=16, epochs=4)
    stopped = get_recurrent_run(cfg, store, on_epoch=stop_after(1), stopped=True)
    full = get_recurrent_run(cfg, RunStore(store.path.with_name("other.sqlite3")))
    assert (stopped.status, stopped.epochs_done) == ("stopped", 2)
    pd.testing.assert_frame_equal(stopped.steps, _first(full.steps, 2))
    pd.testing.assert_frame_equal(stopped.epochs, _first(full.epochs[full.epochs.split != "test"],
                                                         2))
    assert cached_recurrent_run(cfg, store) is None
    assert cached_recurrent_run(cfg, store, stopped=True).stopped


@pytest.mark.parametrize("family", ["lab", "recurrent"])
def test_the_callers_drawing_is_not_the_runs_time(family):
    """Both trainers time their callback's work (a page drawing each epoch) out of the run's
    "seconds" (core.training.EpochReports): a callback that sleeps 0.3 s per call adds 0.3 s
    per epoch, plus one at initialisation, to the wall time and nothing to the run's."""
    import time

    from core.recurrent.trainer import train_recurrent
    cfg, run = ((CFG.replace(epochs=2), train) if family == "lab" else
                (RecurrentConfig(dataset="digits", sequence="chunks", chunk=4, max_train=64,
                                 batch_size=32, hidden=16, epochs=2), train_recurrent))
    start = time.perf_counter()
    result = run(cfg, on_epoch=lambda partial: time.sleep(0.3))
    wall = time.perf_counter() - start
    assert 0 < result.timing["seconds"] <= wall - 3 * 0.3
