"""The `Classic` record: a paper's finding, our runs of it, and the verdict computed from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import altair as alt

from core import cache
from core.budget import RATE, Estimate, refuse, refuse_sweep, refuse_together
from core.cache import RunKind
from core.lab.config import RunConfig
from core.lab.runs import LAB_RUN
from core.lab.sweep import SWEEP_CELL, SweepSpec, run_sweep
from core.recurrent.config import RecurrentConfig
from core.recurrent.trainer import RECURRENT_RUN

# A classic's "run" is a Lab run, a recurrent one, or a whole sweep (core.lab.sweep), whose
# cells train stacked and are stored one by one; its result is then a SweepResult.
Config = RunConfig | RecurrentConfig | SweepSpec


def run_kind(cfg: RunConfig | RecurrentConfig) -> RunKind:
    """The run cache's kind for a classic's config: a Lab run or a recurrent one."""
    return RECURRENT_RUN if isinstance(cfg, RecurrentConfig) else LAB_RUN


def get_classic_run(cfg: Config, on_epoch: Callable | None = None,
                    on_wait: Callable[[str], None] | None = None) -> Any:
    """The run for `cfg` through the run cache, of whichever family it is: from the store, or
    trained now and stored (refused with a ConfigError over the budgets). A sweep calls
    `on_epoch` with (share done, text) as its cells train (see `progress`)."""
    if isinstance(cfg, SweepSpec):
        report = on_epoch and (lambda done, total, text: on_epoch((done / total, text)))
        return run_sweep(cfg, on_progress=report)
    return cache.obtain(run_kind(cfg), cfg, None, on_epoch, on_wait)


def cached_classic_run(cfg: Config) -> Any | None:
    if isinstance(cfg, SweepSpec):
        stored = all(cache.cached(SWEEP_CELL, cell) is not None for cell in cfg.cells())
        return run_sweep(cfg) if stored else None
    return cache.cached(run_kind(cfg), cfg)


def progress(cfg: Config) -> Callable[[Any], tuple[float, str]] | None:
    """What turns get_classic_run's on_epoch argument into (share done, text): a sweep hands
    that pair itself; None for a run, which hands its partial result after each epoch."""
    return (lambda pair: pair) if isinstance(cfg, SweepSpec) else None


def _estimates(cfg: Config) -> list[Estimate]:
    if isinstance(cfg, SweepSpec):
        return [SWEEP_CELL.estimate(cell) for cell in cfg.cells()]
    return [run_kind(cfg).estimate(cfg)]


def refuse_classic(configs: Iterable[Config]) -> None:
    """ConfigError, before any trains, if a classic's runs not yet stored are over a budget,
    alone or together (as core.lab.runs.refuse_runs, for runs of any family); a sweep is
    refused as the Sweep page's are."""
    configs = [cfg for cfg in configs if cached_classic_run(cfg) is None]
    for spec in (cfg for cfg in configs if isinstance(cfg, SweepSpec)):
        refuse_sweep(_estimates(spec))
    estimates = [run_kind(cfg).estimate(cfg) for cfg in configs
                 if not isinstance(cfg, SweepSpec)]
    for estimate in estimates:
        refuse(estimate)
    refuse_together(estimates, f"the {len(estimates)} runs to train", "runs",
                    "lower {} in one of them")


@dataclass(frozen=True)
class Paper:
    authors: str
    year: int
    title: str
    finding: str     # the claim as the paper states it, in one sentence


@dataclass(frozen=True)
class Verdict:
    reproduced: bool
    sentence: str    # the measured numbers, worded as measured

    @property
    def mark(self) -> str:
        return "✓" if self.reproduced else "✗"


@dataclass(frozen=True)
class Classic:
    id: str                   # the page's ?classic= value
    title: str
    paper: Paper
    setup: str                # our setup, in our words
    differs: tuple[str, ...]  # what differs from the paper, one plain sentence each
    configs: Callable[[int], Mapping[str, Config]]    # seed → {name: a run it needs}
    verdict: Callable[[Mapping[str, Any]], Verdict]   # {name: its result} → the verdict
    figure: Callable[[Mapping[str, Any]], alt.TopLevelMixin]
    figure_caption: str

    def seconds(self) -> float:
        """Estimated seconds to train every run here, one thread (the budget's cost model)."""
        return sum(estimate.total() for cfg in self.configs(0).values()
                   for estimate in _estimates(cfg)) / RATE
