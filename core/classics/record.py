"""The `Classic` record: a paper's finding, our runs of it, and the verdict computed from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import altair as alt

from core.budget import RATE
from core.lab.config import RunConfig
from core.lab.result import RunResult
from core.lab.runs import run_estimate


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
    configs: Callable[[int], Mapping[str, RunConfig]]    # seed → {name: a Lab run it needs}
    verdict: Callable[[Mapping[str, RunResult]], Verdict]
    figure: Callable[[Mapping[str, RunResult]], alt.TopLevelMixin]
    figure_caption: str

    def seconds(self) -> float:
        """Estimated seconds to train every run here, one thread (the budget's cost model)."""
        return sum(run_estimate(cfg).total() for cfg in self.configs(0).values()) / RATE
