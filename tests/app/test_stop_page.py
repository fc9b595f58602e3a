"""A run its user stopped, as the Lab draws it (AppTest; clicking Stop mid-run is the browser
test's, tests/app/test_stop_browser.py): its status and notice, lessons that wait for the full
run, and "Train all N epochs", which trains it in full and replaces it in the store."""

from __future__ import annotations

import pytest

from core import cache
from core.lab.config import RunConfig
from core.lab.presets import PRESETS
from core.lab.runs import LAB_RUN, cached_run
from core.lab.trainer import train
from core.training import StopTraining
from tests.helpers import open_page


@pytest.fixture(autouse=True)
def own_store(tmp_path, monkeypatch):
    """The stopped runs go to a store of this module's own: in the process's store a stopped
    lesson run was served to the next page test of its link (seen: test_app's vanishing link
    drew epoch 1 of 10 after this module ran in the same process)."""
    from core.store import RunStore
    monkeypatch.setattr(cache, "_default_store", RunStore(tmp_path / "runs.sqlite3"))
    cache.forget_recent()
    yield
    cache.forget_recent()


def _store_stopped(cfg: RunConfig, epochs_done: int) -> None:
    """Put cfg's run, stopped once `epochs_done` epochs were heard of, in the app's store."""
    def on_epoch(partial) -> None:
        if partial.epochs_done >= epochs_done:
            raise StopTraining
    cache.put(LAB_RUN, train(cfg, on_epoch=on_epoch), cache.default_store())
    cache.forget_recent()


def _status(at):
    status = next(m for m in at.metric if m.label == "Status")
    return status.value, status.delta


def test_a_stopped_run_is_drawn_as_stopped_and_train_all_epochs_replaces_it():
    cfg = RunConfig(depth=2, width=16, max_train=200, epochs=5, seed=11)
    _store_stopped(cfg, 1)
    at = open_page("app_pages/lab.py", **cfg.to_params())
    assert not at.exception
    assert _status(at) == ("stopped", "by you, at epoch 2")
    assert any("Stopped by you after epoch 2 of 5" in w.value for w in at.warning)
    at.button(key="train_full").click().run()
    assert not at.exception
    assert _status(at)[0] == "done"
    assert not any("Stopped by you" in w.value for w in at.warning)
    cache.forget_recent()
    assert cached_run(cfg, stopped=True).status == "completed"   # the store holds the full run


def test_a_lessons_claims_wait_for_the_full_run():
    preset = PRESETS["vanishing"]
    _store_stopped(preset.config, 0)
    at = open_page("app_pages/lab.py", **preset.config.to_params())
    assert not at.exception
    assert any("its claims are checked on the full run" in c.value for c in at.caption)
    assert not [m for m in at.markdown if ":material/check_circle:" in m.value
                or ":material/cancel:" in m.value]


def test_a_stopped_script_run_waits_for_the_next_run_to_reach_the_router(monkeypatch):
    """`obtain`'s wait after a rerun stopped its script: it returns once the next run's
    `enter_page` has set the event, however late (a loaded server), and gives up at its cap
    when no next run comes."""
    import threading

    from app_pages.kit import runs
    from app_pages.kit.links import NEXT_RUN_KEY
    next_run = threading.Event()
    threading.Timer(1.5, next_run.set).start()     # later than the old fixed second
    assert runs._next_run_reached(next_run)
    monkeypatch.setattr(runs, "NEXT_RUN_WAIT", 0.3)
    assert not runs._next_run_reached(threading.Event())
    # The router's side: entering a page sets the event the stopped run left.
    at = open_page("app_pages/home.py")
    left = threading.Event()
    at.session_state[NEXT_RUN_KEY] = left
    at.run()
    assert left.is_set() and NEXT_RUN_KEY not in at.session_state
