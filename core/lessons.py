"""Lessons: one preset type and one claim type for every page family (Lab, recurrent, attention,
optimizer race).

A preset is a configuration of any settings class, what to look at, and claims; a claim is a
sentence and a check, both functions of the run the preset produces (whatever that run's result
type is), so the app shows ✓ or ✗ beside each and the tests assert that every claim holds:

    p = PRESETS["vanishing"]
    result = get_run(p.config)
    [claim.check(result) for claim in p.claims]     # [(sentence, holds), ...]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, TypeVar

Result = TypeVar("Result")   # what a claim reads: a RunResult, a race table, attention Evidence, …
Config = TypeVar("Config")


@dataclass(frozen=True)
class Claim(Generic[Result]):
    text: Callable[[Result], str]     # the sentence, with the run's own numbers in it
    holds: Callable[[Result], bool]
    # The part of the result this claim reads that may still be missing (attention's classifier
    # trains after the sweep is shown): the claim waits until that attribute is not None.
    needs: str | None = None

    def ready(self, result: Result) -> bool:
        """Whether the part it reads is there: a run its user stopped lacks the later epochs a
        lesson's claims are about, so none is judged on it."""
        if getattr(result, "stopped", False):
            return False
        return self.needs is None or getattr(result, self.needs) is not None

    def check(self, result: Result) -> tuple[str, bool]:
        """The sentence as measured on `result`, and whether it holds."""
        return self.text(result), bool(self.holds(result))


@dataclass(frozen=True)
class Preset(Generic[Config, Result]):
    id: str              # also the preset button's widget key, preset_<id>
    title: str
    icon: str
    summary: str         # one line for the home page's card and the button's help ("" = look_at)
    look_at: str         # what to look at, shown above the charts
    config: Config
    claims: tuple[Claim[Result], ...]
    # Settings the lesson leaves to the user: the preset still matches whatever they hold
    # (attention's lessons read both variants, so the scaling toggle stays free).
    free: tuple[str, ...] = ()
    # The page tab that holds the lesson's evidence (the chart look_at names): the page opens
    # on it whichever way the lesson was reached. None: the page has no tabs.
    tab: str | None = None
    # One line, shown beside the evidence chart: what to notice there ("" = nothing beside it).
    notice: str = ""

    @property
    def hint(self) -> str:
        return self.summary or self.look_at

    def matches(self, config: Config) -> bool:
        """Whether `config` is this preset's, up to its free settings."""
        kept = {name: getattr(config, name) for name in self.free}
        return dataclasses.replace(self.config, **kept) == config

    def ready_claims(self, result: Result) -> tuple[Claim[Result], ...]:
        return tuple(c for c in self.claims if c.ready(result))


def matching(presets: Iterable[Preset], config: Any) -> Preset | None:
    """The preset whose configuration `config` is, if any (its lesson box is then shown)."""
    return next((p for p in presets if p.matches(config)), None)
