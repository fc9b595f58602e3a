"""What the chart builders' tests share: small real runs, trained once per test process, and
their specs by builder name.

A batch-norm run with norm clipping, a plain tanh run, a run that diverges at its second step,
a 2-D moons run for the decision boundary and a sigmoid run; "initial" is a live run's first
snapshot (steps and layers still empty), "stored" the diverged run read back through the
store's strict JSON.
"""

import json

import pytest

from core.lab import charts, histogram_charts
from core.lab.config import RunConfig
from core.lab.result import RunResult
from core.lab.trainer import train

CONFIGS = {
    "bn": RunConfig(depth=3, width=16, epochs=2, batch_norm=True, clip_norm=1.0, max_train=400),
    "plain": RunConfig(depth=2, width=16, epochs=3, activation="tanh", init="xavier_normal",
                       max_train=400),
    "diverged": RunConfig(depth=10, activation="linear", init="normal_large", optimizer="sgd",
                          lr=0.1, epochs=3),
    "moons": RunConfig(dataset="moons", depth=3, width=16, epochs=3, lr=0.01),
    "sigmoid": RunConfig(depth=3, width=16, epochs=2, activation="sigmoid", max_train=400),
}
# Every builder by name: core.lab.charts's and the histograms'.
BUILDERS = {**vars(charts), **vars(histogram_charts)}


@pytest.fixture(scope="session")
def runs():
    first: list[RunResult] = []
    out = {name: train(cfg, on_epoch=(first.append if name == "bn" else None))
           for name, cfg in CONFIGS.items()}
    out["initial"] = first[0]  # a live run's first snapshot: steps and layers still empty
    # Through the store's strict JSON: NaN → null → NaN.
    out["stored"] = RunResult.from_dict(json.loads(out["diverged"].to_json()))
    return out


@pytest.fixture(scope="session")
def spec(runs):
    """spec(run, builder, *args): a builder's spec, computed once per test process (schema
    validation is not free)."""
    cache: dict = {}

    def get(run: str, builder: str, *args) -> dict:
        if (run, builder, args) not in cache:
            cache[run, builder, args] = BUILDERS[builder](runs[run], *args).to_dict()
        return cache[run, builder, args]
    return get
