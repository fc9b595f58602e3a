"""The presets cover the lessons (every preset's claims on seeds 0-4: tests/test_lessons.py; the
doctor on every preset's run: test_doctor.py)."""

from core.lab.presets import PRESETS


def test_presets_cover_the_lessons():
    assert {"vanishing", "exploding", "relu_he", "batch_norm", "clipping", "residual",
            "adam"} <= set(PRESETS)
    assert PRESETS["vanishing"].config.depth == 10
    assert PRESETS["vanishing"].config.activation == "sigmoid"
    assert PRESETS["exploding"].config.depth == 20
    assert PRESETS["exploding"].config.activation == "linear"
