"""The sharpness chart in the pages: the Lab draws it for a run that measured it (and only then),
"Your model" for a watched loop that did."""

from __future__ import annotations

from core.lab.config import RunConfig
from core.lab.sharpness_chart import TITLE
from tests.app.test_watched_page import upload
from tests.helpers import charts, clean, open_page
from tests.watch.test_sharpness_watch import _train

SMALL = RunConfig(depth=2, width=16, epochs=1, max_train=200, optimizer="sgd", lr=0.1)


def test_the_lab_draws_sharpness_for_a_run_that_measured_it():
    # Not drawn for a run without it: tests/app/test_app.py counts a default run's charts.
    at = open_page("app_pages/lab.py", **SMALL.replace(sharpness_every=2).to_params())
    clean(at)
    drawn = [c for c in charts(at) if TITLE in c]
    assert len(drawn) == 1 and "threshold 2/lr" in drawn[0]


def test_your_model_draws_a_watched_loops_sharpness_against_its_momentum_threshold():
    _, run = _train(2)
    at = upload(run.to_json().encode())
    clean(at)
    drawn = [c for c in charts(at) if TITLE in c]
    assert len(drawn) == 1 and "threshold (2+2" in drawn[0] and "/lr, " in drawn[0]  # β is escaped
