"""Jacobian spectra side by side (Pennington et al. 2017): Gaussian against orthogonal weights,
tanh against ReLU, each at its critical point, with mean-field theory's RMS singular value.
No training.

    spectra(cfg.replace(depth=30))    # setting, example, index, singular_value, …
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd
import torch

from core.init.probe import (_check, _predicted_rms, _theory, _theory_gap, forward, inputs,
                             jacobian_spectrum)
from core.lab.config import RunConfig
from core.lab.models import build_model


# The Pennington et al. comparison, each at its critical point (σ_b² = 0): tanh at σ_w² = 1,
# ReLU at σ_w² = 2. RunConfig's orthogonal init has gain 1, so ReLU's gets nn.init's gain √2.
SPECTRUM_SETTINGS: tuple[Mapping[str, Any], ...] = (
    {"label": "tanh, Gaussian (Xavier)", "activation": "tanh", "init": "xavier_normal"},
    {"label": "tanh, orthogonal", "activation": "tanh", "init": "orthogonal"},
    {"label": "ReLU, Gaussian (He)", "activation": "relu", "init": "he_normal"},
    {"label": "ReLU, orthogonal × √2", "activation": "relu", "init": "orthogonal",
     "gain": math.sqrt(2)},
)


def spectra(cfg: RunConfig, settings: Sequence[Mapping[str, Any]] = SPECTRUM_SETTINGS, *,
            n_jacobian: int = 1, n_inputs: int = 64, width: int | None = None) -> pd.DataFrame:
    """Jacobian singular values of cfg's network under each setting, in one tidy table.

    A setting is RunConfig overrides plus "label" and an optional "gain" (every weight × gain
    after init, as nn.init's gain argument). Settings leave the biases at zero unless they say.
    The four default settings take ~0.25 s at depth 10, ~2 s at depth 100 (width 256); a
    Jacobian's cost grows as depth·width³, so `width` can override cfg.width.
    Columns: setting, activation, init, sigma_w2, phase, example, index, singular_value, zero,
    predicted_rms (mean-field RMS singular value; NaN where the plain theory does not apply).
    """
    frames = []
    for s in settings:
        overrides = {k: v for k, v in s.items() if k not in ("label", "gain")}
        scfg = cfg.replace(**{"bias_init": "zeros", "width": width or cfg.width, **overrides})
        gain = float(s.get("gain", 1.0))
        _check(scfg, n_inputs)
        x, _, info = inputs(scfg, n_inputs)
        model = build_model(scfg, info.input_shape, info.n_classes)
        model.train()
        with torch.no_grad():
            for layer in model.layers.values():
                layer.linear.weight.mul_(gain)
            run = forward(model, x)
        sv = jacobian_spectrum(model, scfg, run, range(min(n_jacobian, len(x))))
        facts, _, theory = _theory(scfg, x, gain)
        rms = _predicted_rms(theory) if _theory_gap(scfg) is None else math.nan
        frames.append(sv.assign(setting=s.get("label", f"{scfg.activation}, {scfg.init}"),
                                activation=scfg.activation, init=scfg.init,
                                sigma_w2=facts.sigma_w2, phase=facts.phase, predicted_rms=rms))
    cols = ["setting", "activation", "init", "sigma_w2", "phase", "example", "index",
            "singular_value", "zero", "predicted_rms"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
