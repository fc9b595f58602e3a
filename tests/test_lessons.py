"""Every claim of every lesson, on every page family, holds on seeds 0-4: a lesson is about its
setting, not about one lucky draw. One test per (preset, seed) trains that run once (through the
run store, so the families' own tests reuse the seed-0 runs) and checks all of its claims; a
failure prints the preset, the seed and each failing claim's sentence as measured.

The optimizer race has no seed: its optimizers start from the surface's fixed point and the
surface is a closed form, so its one run per preset is the whole check.

One torch thread per test process (tests/conftest.py), as the app trains.
"""

from __future__ import annotations

import pytest

from core.attention.presets import ATTENTION_PRESETS, Evidence
from core.attention.softmax import get_attention, softmax_saturation
from core.lab.presets import PRESETS
from core.lab.runs import get_run
from core.optimizers.race import PRESETS as RACE_PRESETS, race
from core.recurrent.presets import RECURRENT_PRESETS
from core.recurrent.trainer import get_recurrent_run

SEEDS = (0, 1, 2, 3, 4)


def _attention_evidence(preset, cfg):
    """The sweep, and the trained classifiers where a claim reads them (as the page shows it)."""
    needs_classifier = any(c.needs == "classifier" for c in preset.claims)
    return Evidence(softmax_saturation(cfg), get_attention(cfg) if needs_classifier else None)


FAMILIES = {"lab": (PRESETS, lambda preset, cfg: get_run(cfg)),
            "recurrent": (RECURRENT_PRESETS, lambda preset, cfg: get_recurrent_run(cfg)),
            "attention": (ATTENTION_PRESETS, _attention_evidence)}
CASES = [pytest.param(family, pid, seed, id=f"{family}-{pid}-seed{seed}")
         for family, (presets, _) in FAMILIES.items() for pid in presets for seed in SEEDS]


def assert_claims_hold(preset, result, where: str) -> None:
    checked = [claim.check(result) for claim in preset.claims]
    failing = [text for text, holds in checked if not holds]
    assert not failing, f"{where}: " + " | ".join(failing)
    assert not any("nan" in text.lower() for text, _ in checked), f"{where}: {checked}"


@pytest.mark.parametrize("family,pid,seed", CASES)
def test_every_claim_holds_on_seeds_0_to_4(family, pid, seed):
    presets, obtain = FAMILIES[family]
    preset = presets[pid]
    result = obtain(preset, preset.config.replace(seed=seed))
    assert_claims_hold(preset, result, f"{family} preset {pid}, seed {seed}")


@pytest.mark.parametrize("pid", list(RACE_PRESETS))
def test_every_race_claim_holds(pid):
    """No seed to vary (see the module docstring)."""
    assert "seed" not in RACE_PRESETS[pid].config.fields()
    assert_claims_hold(RACE_PRESETS[pid], race(RACE_PRESETS[pid].config), f"race preset {pid}")
