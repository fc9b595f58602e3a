"""Every preset's claims hold on the run it produces (the doctor: test_doctor.py)."""

import pytest

from core.lab.presets import PRESETS
from core.lab.runs import get_run


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


@pytest.mark.parametrize("pid", list(PRESETS))
def test_each_claim_holds_on_the_real_run(runs, pid):
    result = runs[pid]
    for claim in PRESETS[pid].claims:
        text = claim.text(result)
        assert claim.holds(result), f"{pid}: {text}"
        assert "nan" not in text.lower()
