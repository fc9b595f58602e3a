"""A watched run in the run store: its key is a hash of what it recorded (the same records, one
key; other records, another), what is stored opens as the saved file does, and it is listed with
a readable label; a run of no probe batch says its dead share was not measured."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn

from core.lab.charts import flat_dead
from core.lab.runfile import parse_run_file
from core.store import RunStore
from core.watch import watch
from core.watch.result import (KIND, STORE_KEY, WatchedRun, load_stored, stored_watched,
                               watched_label)


def small_run(seed: int, probe: bool = True, steps: int = 6) -> WatchedRun:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    x, y = torch.randn(steps * 8, 8), torch.randint(0, 3, (steps * 8,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with watch(model, opt, every=2, probe=x[:32] if probe else None) as w:
        for s in range(steps):
            opt.zero_grad()
            loss = F.cross_entropy(model(x[s * 8:(s + 1) * 8]), y[s * 8:(s + 1) * 8])
            loss.backward()
            w.after_backward(loss)
            opt.step()
    return w.result()


def test_the_key_is_the_same_for_the_same_records_and_differs_for_others():
    first, again, other = small_run(0), small_run(0), small_run(1)
    assert STORE_KEY.fullmatch(first.key)
    assert first.timing != again.timing     # not part of what was recorded
    assert again.key == first.key and other.key != first.key
    assert small_run(0, steps=4).key != first.key


def test_a_stored_run_opens_as_its_file_does_and_is_listed_with_a_label(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite3")
    run = small_run(0)
    store.put("0123456789abcdef0123", {"config": {}}, {"status": "completed"})  # a Lab run's
    key = run.store(store)
    assert key == run.key and run.store(store) == key and len(store) == 2  # one entry per run
    stored = load_stored(key, store)
    from_file = parse_run_file(run.to_json().encode(), kinds={KIND: WatchedRun})
    assert stored.to_json() == from_file.to_json()
    assert stored.config.probe == 32 and stored.probe_set == "the 32 examples of the loop's probe batch"
    [entry] = stored_watched(store)
    assert entry["key"] == key
    label = watched_label(entry)
    loss = float(run.steps.loss.iloc[-1])
    assert label.startswith("Sequential · sgd lr 0.1 · tanh · 6 steps, layers every 2 — "
                            f"final loss {loss:.4g}, stored "), label
    assert load_stored("watch-" + "0" * 20, store) is None
    assert load_stored("0123456789abcdef0123", store) is None   # not a watched run's key
    assert load_stored("../etc", store) is None


def test_the_dead_panel_names_the_probe_the_run_used():
    def titles(run):
        return json.dumps(flat_dead(run).to_dict())
    assert "flat for all 32 probe examples" in titles(small_run(0))
    assert "1,024" not in titles(small_run(0))
    assert "not measured: no probe batch" in titles(small_run(0, probe=False))


def test_the_cli_lists_stored_watched_runs_and_diagnoses_one_by_its_key(capsys):
    from core.tools.cli import main

    run = small_run(2)
    key = run.store()   # the default store: SATLAB_STORE (tests/conftest.py)
    assert main(["watched"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert f"{key}  Sequential · sgd lr 0.1 · tanh · 6 steps, layers every 2 — " in "\n".join(
        listed) and len(listed) == len(stored_watched())
    assert main(["diagnose", key, "--json"]) in (0, 1)
    assert json.loads(capsys.readouterr().out)["run"] == key
    assert main(["diagnose", "watch-" + "0" * 20]) == 2
    assert "no watched run in the run store has the key" in capsys.readouterr().err


def test_a_file_saved_before_the_probe_size_was_recorded_still_opens(tmp_path):
    """Files from the first release of `watch` have no `probe` in their config: they open, and
    the Dead panel says what was measured without inventing a size."""
    data = json.loads(small_run(0).to_json())
    del data["config"]["probe"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    run = parse_run_file(path.read_bytes(), kinds={KIND: WatchedRun})
    assert isinstance(run, WatchedRun) and run.probe_examples is None
    title = json.dumps(flat_dead(run).to_dict())
    assert "flat for every example of the probe batch" in title
