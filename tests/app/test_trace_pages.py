"""The Lab's headline and charts for a run with a validation trace and a loss criterion."""

from __future__ import annotations

from core.lab.runs import cached_run
from core.lab.trace_charts import UNIT_TITLE, VAL_TITLE
from tests.helpers import charts, clean, open_page
from tests.lab.test_trace_charts import TRACED


def test_the_lab_shows_steps_to_the_loss_criterion_and_the_validation_trace():
    at = open_page("app_pages/lab.py", **TRACED.to_params())
    clean(at)
    reached = cached_run(TRACED).steps_to_target
    assert reached is not None   # this run reaches its criterion (else the case below)
    metric = next(m for m in at.metric if m.label == f"Steps to loss {TRACED.target_loss:g}")
    assert metric.value == f"{reached:,}" and "averaged over the last 10 steps" in metric.help
    # Its status says why it ended: not "done" (every epoch) nor "stopped" (the Stop button).
    status = next(m for m in at.metric if m.label == "Status")
    assert (status.value, status.delta) == ("reached", f"target, at step {reached:,}")
    assert sum(VAL_TITLE.format(every=TRACED.eval_every) in c for c in charts(at)) == 1

    missed = TRACED.replace(target_loss=0.001, epochs=1)
    at = open_page("app_pages/lab.py", tab="Activations", **missed.to_params())
    clean(at)
    metric = next(m for m in at.metric if m.label == "Steps to loss 0.001")
    assert metric.value == "not reached"
    assert next(m for m in at.metric if m.label == "Status").value == "done"
    # One layer picker drives the histogram over time and the traced units.
    assert [s.label for s in at.selectbox if s.key == "layer"] == ["Layer over time"]
    layer = at.selectbox(key="layer").value
    assert sum(UNIT_TITLE.format(layer=layer) in c for c in charts(at)) == 1


def test_no_headline_without_a_criterion():
    at = open_page("app_pages/lab.py", **TRACED.replace(target_loss=None).to_params())
    clean(at)
    assert not [m for m in at.metric if m.label.startswith("Steps to loss")]
