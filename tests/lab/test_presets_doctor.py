"""The presets cover the lessons; the doctor's findings follow the records (every preset's claims on
seeds 0-4: tests/test_lessons.py)."""

import pytest

from core.lab.config import RunConfig
from core.lab.doctor import diagnose
from core.lab.presets import PRESETS
from core.lab.runs import get_run
from core.lab.trainer import train


@pytest.fixture(scope="module")
def runs():
    return {pid: get_run(p.config) for pid, p in PRESETS.items()}


def test_presets_cover_the_lessons():
    assert {"vanishing", "exploding", "relu_he", "batch_norm", "clipping", "residual",
            "adam"} <= set(PRESETS)
    assert PRESETS["vanishing"].config.depth == 10
    assert PRESETS["vanishing"].config.activation == "sigmoid"
    assert PRESETS["exploding"].config.depth == 20
    assert PRESETS["exploding"].config.activation == "linear"


def test_doctor_finds_vanishing_and_its_fix_works(runs):
    findings = {f.id: f for f in diagnose(runs["vanishing"])}
    assert "vanishing" in findings and "e-0" in findings["vanishing"].evidence
    fix = findings["vanishing"].fixes[0]
    assert fix.changes == {"activation": "relu", "init": "he_normal"}
    fixed = train(fix.apply(runs["vanishing"].config))
    assert "vanishing" not in {f.id for f in diagnose(fixed)}
    assert fixed.final("val", "accuracy") > 0.85


def test_doctor_reports_divergence_with_the_step_and_clipping_fixes_it(runs):
    result = runs["exploding"]
    finding = diagnose(result)[0]
    assert finding.id == "diverged" and finding.severity == "error"
    assert f"step {result.divergence['step']}" in finding.evidence
    clip = next(f for f in finding.fixes if "Clip" in f.label)
    fixed = train(clip.apply(result.config))
    assert not fixed.diverged and "diverged" not in {f.id for f in diagnose(fixed)}


def test_healthy_run_has_no_errors(runs):
    assert not [f for f in diagnose(runs["relu_he"]) if f.severity == "error"]


def test_saturated_tanh_is_found():
    result = train(RunConfig(depth=4, activation="tanh", init="normal_large", epochs=1))
    found = {f.id: f for f in diagnose(result)}
    assert "saturated" in found
    share = float(found["saturated"].evidence.split("%")[0]) / 100
    sat = result.layers[(result.layers.metric == "saturation") & (result.layers.layer != "output")]
    assert share == pytest.approx(sat[sat.step == sat.step.max()].value.mean(), abs=0.01)


def test_dead_relus_are_found():
    # SGD at lr 1.0 knocks most ReLUs into the region where they never fire again.
    result = train(RunConfig(depth=4, activation="relu", optimizer="sgd", lr=1.0, epochs=2))
    found = {f.id: f for f in diagnose(result)}
    assert not result.diverged and "dead" in found
    assert found["dead"].fixes[0].changes == {"activation": "leaky_relu"}
    assert "vanishing" not in found
    healthy = train(RunConfig(depth=4, activation="relu", optimizer="sgd", lr=0.05, epochs=2))
    assert "dead" not in {f.id for f in diagnose(healthy)}


def test_fixes_are_valid_configs(runs):
    for result in runs.values():
        for finding in diagnose(result):
            for fix in finding.fixes:
                assert fix.apply(result.config) != result.config


def test_vanishing_is_not_also_blamed_on_the_learning_rate(runs):
    ids = {f.id for f in diagnose(runs["vanishing"])}
    assert "vanishing" in ids and "steps_too_small" not in ids
    crawling = train(RunConfig(depth=2, width=32, optimizer="sgd", lr=1e-5, epochs=2))
    found = {f.id: f for f in diagnose(crawling)}
    assert "steps_too_small" in found and found["steps_too_small"].fixes[0].changes == {"lr": 1e-4}


def test_clipping_on_every_step_is_reported_with_its_evidence(runs):
    result = runs["clipping"]
    found = {f.id: f for f in diagnose(result)}
    assert "always_clipped" in found
    assert f"{result.steps.clipped.mean():.0%}" in found["always_clipped"].evidence
    assert "always_clipped" not in {f.id for f in diagnose(runs["relu_he"])}
