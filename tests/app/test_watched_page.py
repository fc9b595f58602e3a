"""The "Your model" page (app_pages/watched.py) in AppTest: a run file uploaded, a watched loop's
(made here with core.watch on a plain nn.Sequential) or a Lab run's, shows its headline, the
gradient doctor with advice and the charts that apply; a bad file gets one error and no traceback."""

from __future__ import annotations

import json

import pytest
from torch import nn

from core.lab.config import RunConfig
from core.lab.runs import get_run
from core.lab.tabs import TABS
from core.watch import WatchedRun
from tests.helpers import charts, clean, open_page
from tests.watch.test_watch import _mlp, _train

PAGE = "app_pages/watched.py"
SMALL_LAB = RunConfig(depth=2, width=16, epochs=1, max_train=200)


def watched_run() -> WatchedRun:
    """A 10-layer sigmoid MLP with PyTorch's default init, written as a user would, watched for
    20 steps: its gradient vanishes on the way to the input (tests/watch checks the doctor says
    so on seeds 0-4)."""
    return _train(_mlp(nn.Sigmoid, he=False, seed=0))


@pytest.fixture(scope="module")
def watched_file() -> bytes:
    return watched_run().to_json().encode()


def upload(data: bytes, name: str = "run.json", **params):
    at = open_page(PAGE, **params)
    clean(at)
    at.file_uploader[0].upload(name, data, "application/json")
    return at.run()


def test_a_watched_run_shows_its_headline_the_doctor_with_advice_and_its_charts(watched_file):
    at = upload(watched_file)
    clean(at)
    assert not [e.value for e in at.error if "cannot be" in e.value]
    assert "A watched Sequential" in [s.value for s in at.subheader]
    labels = {m.label: m.value for m in at.metric}
    assert labels["Steps"] == "20" and labels["Layers recorded"] == "21"  # 11 Linear, 10 Sigmoid
    # The doctor's vanishing finding, its fix as words (no button can retrain their model).
    vanishing = [e.value for e in at.error if "vanish" in e.value.lower()]
    assert vanishing and "What may help:" in vanishing[0] and "activation=relu" in vanishing[0]
    assert not [b for b in at.button if b.key and b.key.startswith("fix_")]
    drawn = charts(at)
    assert len(drawn) == 1 and "Training loss per step" in drawn[0]  # the open tab only
    assert "no data" not in drawn[0]


@pytest.mark.parametrize("tab", [t for t in TABS if t not in ("Training", "Clipping",
                                                                "Batch norm")])
def test_every_tab_of_a_watched_run_draws_what_its_records_hold(watched_file, tab):
    at = upload(watched_file, tab=tab)
    clean(at)
    drawn = charts(at)
    assert drawn and all("Training loss per step" not in c for c in drawn), tab
    if tab == "Gradients":  # gradient flow needs the trainer's mean and max |∇W|: left out
        assert len(drawn) == sum(c.when is None for c in TABS[tab]) - 1
        assert not any("Gradient flow" in c for c in drawn)
    assert [t.label for t in at.tabs] == ["Training", "Gradients", "Activations",
                                          "Weights & ratios"]


def test_a_lab_run_file_opens_with_every_chart():
    result = get_run(SMALL_LAB)
    at = upload(result.to_json().encode())
    clean(at)
    assert "A Training Lab run" in [s.value for s in at.subheader]
    assert len(charts(at)) == sum(c.when is None for c in TABS["Training"])
    assert [t.label for t in at.tabs] == list(TABS)


@pytest.mark.parametrize("data,says", [
    (b"\x89PNG not json", "not UTF-8"),
    (b"{not json", "not JSON"),
    (json.dumps([1, 2]).encode(), "not a run"),
    (json.dumps({"kind": "watched", "config": {}}).encode(), "lacks the field"),
    (b" " * (64 * 2**20 + 1), "larger than the 64 MiB"),
])
def test_a_bad_file_gets_one_clear_error_and_no_traceback(data, says):
    at = upload(data, name="bad.json")
    assert not at.exception
    assert len(at.error) == 1 and "This file cannot be opened" in at.error[0].value
    assert says in at.error[0].value, at.error[0].value
    assert not charts(at)


def test_a_run_file_whose_config_is_not_a_watched_one_gets_one_error(watched_file):
    data = json.loads(watched_file)
    data["config"] = {"model": "x"}
    at = upload(json.dumps(data).encode(), name="bad.json")
    assert not at.exception
    assert len(at.error) == 1 and "This file cannot be opened" in at.error[0].value


def page_content(at) -> dict:
    """What the page shows of a run: its headline, numbers, findings and charts."""
    return {"subheader": [s.value for s in at.subheader], "caption": [c.value for c in at.caption],
            "metrics": [(m.label, m.value) for m in at.metric],
            "boxes": [e.value for e in (*at.error, *at.warning, *at.info)],
            "charts": charts(at)}


def test_a_stored_run_picked_or_linked_shows_what_its_uploaded_file_shows(watched_file):
    run = WatchedRun.from_dict(json.loads(watched_file))
    key = run.store()
    uploaded = upload(watched_file)
    picked = open_page(PAGE, source="Pick a stored run")
    clean(picked)
    choice = picked.selectbox(key="run")
    assert choice.value == key and picked.query_params["run"] == key   # the newest, linked
    assert choice.options[0].startswith("Sequential · adam lr 0.001 · sigmoid · 20 steps, "
                                        "layers every 5 — final loss "), choice.options
    linked = open_page(PAGE, run=key)
    clean(linked)
    assert page_content(picked) == page_content(uploaded) == page_content(linked)
    assert "A watched Sequential" in page_content(linked)["subheader"]


def test_a_link_to_a_key_the_store_lacks_gets_one_clear_message(watched_file):
    WatchedRun.from_dict(json.loads(watched_file)).store()
    at = open_page(PAGE, run="watch-nosuchkey")
    clean(at)
    said = [w.value for w in at.warning if "run=" in w.value]
    assert len(said) == 1 and "no watched run in the store has this key" in said[0], said
