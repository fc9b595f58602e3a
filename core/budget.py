"""The budgets: how much computing and memory one request may ask of a shared server.

Anyone with a link can ask the server for any run, so before anything trains its work and its
peak memory are estimated from the settings alone, and a request over a budget is refused with a
ConfigError that names the budget and what to lower:

    refuse(run_estimate(RunConfig(dataset="fashion-mnist", epochs=100)))   # core.lab.runs
    # ConfigError: epochs: this run (55,000 examples × 100 epochs through a network of 6.3e4
    # multiply-adds per example, plus evaluation and per-step costs) needs about 3.1e12
    # multiply-adds, over the budget of 6e11 a run (about 2 minutes of one CPU core); lower
    # epochs to 19 or max_train to 10,000
    refuse(run_estimate(RunConfig(depth=100, width=1024, max_train=100, epochs=1)))
    # ConfigError: width: this run (...) needs about 3.0 GB of memory at its peak, over the
    # limit of 800 MB a request (SATLAB_MAX_MEMORY); lower width to 490 or depth to 25

Each family estimates its own requests beside its code (`run_estimate` in core/lab/runs.py,
`recurrent_estimate`, `attention_estimate`, `probe_estimate` in core/init/probe.py) and hands
the estimate to the run cache (core/cache.py), which refuses before it trains (the pages show the
message where a run could not start); a stored result is served whatever it cost. This module
holds only what is common: the budgets, the machine's measured costs, the refusal and its
advice. The configs themselves stay valid, so a link never breaks. A sweep may train SWEEP_RUNS
runs' worth in all, each cell within the budget of one; its cells train stacked, so their memory
adds up within one request's (`refuse_together`, as for Compare's two runs).

Memory: the estimate is the peak a request adds to a warm server process (torch imported, the
datasets loaded), measured as VmHWM less the library pages it maps in, on a grid of runs,
probes and lessons' runs of every family (tests/test_memory.py: each estimate is at least the
measured peak and at most 3 times it plus REQUEST_BASE). The limit,
MAX_MEMORY, is sized for a 2.7 GB container whose server holds ~0.5 GB and that several sessions
share; SATLAB_MAX_MEMORY sets another. Recorded layer-table rows are capped (MAX_LAYER_ROWS) so a
run's download stays small: the Lab's automatic record_every records less often in a long, deep
run, and an explicit record_every over the cap is refused (its numbers must be what was asked).
A budget variable that is not a finite positive number is refused (`check_limits`), never
ignored.

The estimate, in multiply-adds, uses the datasets' nominal sizes (constants, so a link is over
or under the budget on every machine alike):

    work = forward multiply-adds per example × (3 × training examples × epochs   (+ backward)
                                                + examples evaluated)
           + steps × what a step costs besides its arithmetic (optimizer, recording, Python),
             counted as the multiply-adds that would take as long

Measured on this repository's 2-core machine, one thread a run (as the app trains), while other
jobs kept it busy (load 2.5-5): dense layers ran at 6e9 to 1.9e10 multiply-adds a second,
convolutions at 4.5e9 (16 channels) to 9e9 (256), hence CONV_COST; a step cost about 2 ms plus
0.4 ms a layer at small sizes; a 2-layer LSTM evaluated at 1.7e10 and paid ~0.1 ms per layer and
time step. The most epochs within the budget, timed (benchmarks/budget_runs.py):
    Fashion-MNIST, the Lab's default net, 19 epochs (estimate 6.0e11)          51 s
    Fashion-MNIST, 2-layer CNN of 16 channels, 2 epochs (4.4e11; 5 epochs
        took 131 s before convolutions counted double)                         43 s
    digits, 100 layers of 16, batch 1, 200 images, 11 epochs (5.6e11)          43 s
    Fashion-MNIST, 3 layers of 1024, 20,000 images, 2 epochs (4.4e11)          21 s
    Fashion-MNIST rows, 2-layer LSTM of 128, 5,000 images, 5 epochs (5.4e11)   30 s
So a request costs a minute or two at most here; SATLAB_MAX_COMPUTE sets another budget (a
machine of one's own, a GPU server).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from core.settings import ConfigError

MAX_COMPUTE = 6e11          # multiply-adds a request may cost: ~100 s here, one thread
SWEEP_RUNS = 8              # a sweep may train as much as this many runs at the budget
RATE = 6e9                  # multiply-adds a second, the slow end measured here (see above)
STEP_COST = 2e-3 * RATE     # a training step's own cost (optimizer, batch, bookkeeping) ...
LAYER_STEP_COST = 4e-4 * RATE   # ... and per recorded layer of the network
TIME_STEP_COST = 1e-4 * RATE    # a recurrent net's, per layer and time step
CONV_COST = 2.0             # a convolution's multiply-add takes about twice a dense one's here
# Peak memory a request may add to the server: several sessions share a 2.7 GB container whose
# server process holds ~0.5 GB itself (torch, the datasets, the cache).
MAX_MEMORY = 800 * 2 ** 20
# What any training or probe adds besides its tensors (allocator arenas, tables, the stored
# record). Since a finished training hands its freed memory back to the system (core.cache), the
# next one maps its pages afresh instead of reusing the allocator's: a 10-layer residual net of
# 512 measured 133 MB before that and 204 MB after, so the base is 96 MB, not 64. Those figures
# counted ~45 MB of shared libraries' code that a request maps in (the Lab's default run then
# measured 45-50 MB); tests/test_memory.py now leaves such file pages out (the kernel reclaims
# them, and how many were mapped depended on the page cache), and the base keeps that margin.
REQUEST_BASE = 96 * 2 ** 20
# Layer-table rows a run may record: the download of a run (JSON, ~60 bytes a row) stays under
# ~20 MB and the stored result small; a run that asks for more is refused (record_every).
MAX_LAYER_ROWS = 300_000


def budget() -> float:
    """MAX_COMPUTE, or SATLAB_MAX_COMPUTE where a server sets its own."""
    return _limit("SATLAB_MAX_COMPUTE", MAX_COMPUTE,
                  f"multiply-adds; the default is {sci(MAX_COMPUTE)}")


def memory_budget() -> float:
    """MAX_MEMORY bytes, or SATLAB_MAX_MEMORY where a server sets its own."""
    return _limit("SATLAB_MAX_MEMORY", MAX_MEMORY, "bytes, or with K, M or G: 2G; the default "
                  f"is {MAX_MEMORY // 2 ** 20}M")


def check_limits() -> None:
    """Read both budget variables, refusing a bad value (ConfigError). Called where a process
    starts (the CLI, the app's router), so a typo is refused at once, not at the first request
    the store cannot serve."""
    budget()
    memory_budget()


_UNITS = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}


def _limit(variable: str, default: float, allowed: str) -> float:
    """The variable's value, else the default. A value that is not a finite positive number is
    refused, never ignored: a typo must not leave a shared server without a limit."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    number, unit = (text[:-1], text[-1].upper()) if text[-1:].upper() in "KMGT" else (text, "")
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(variable, f"{text!r} is not a limit: set a finite positive number "
                                    f"({allowed}), or unset it")
    return value


# --- a request's cost ------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """What one request would cost, as the family that trains it models it (each family's
    estimate lives beside its code: core/lab/runs.py, core/recurrent/trainer.py, core/attention/softmax.py).

    `work(values)` gives the multiply-adds of training with `values`, the request's settings;
    it is called again with one or two of them changed to find the advice. `knobs`: (field,
    "lower" or "raise") in the order to suggest them, each within its range in `fields`.
    """

    what: str                               # the request in words, for the refusal
    values: Mapping[str, Any]
    work: Callable[[dict], float]
    knobs: tuple[tuple[str, str], ...]
    fields: Mapping[str, Any]
    # Peak bytes the request adds to the process while it runs, and the knobs that lower it.
    memory: Callable[[dict], float] | None = None
    memory_knobs: tuple[tuple[str, str], ...] = ()
    # Layer-table rows it records (the Lab's runs), and the knobs that lower them.
    rows: Callable[[dict], float] | None = None
    rows_knobs: tuple[tuple[str, str], ...] = ()

    def total(self) -> float:
        return self.work(dict(self.values))

    def peak(self) -> float:
        return self.memory(dict(self.values)) if self.memory else 0.0


# --- refusing ----------------------------------------------------------------------------------
def refuse(estimate: Estimate, limit: float | None = None) -> None:
    """Raise ConfigError if the estimate is over the compute budget (`limit`, else budget()),
    the memory budget or the cap on recorded rows, the first it is over. For each of that
    one's knobs (at most three) the message suggests the value nearest the request that, on its
    own, brings the request within all three."""
    limit = budget() if limit is None else limit
    what = estimate.what
    checks = [(estimate.work, estimate.knobs, limit,
               lambda total: f"{what} needs about {sci(total)} multiply-adds, over the budget "
                             f"of {sci(limit)} a run ({duration(limit)} of one CPU core)")]
    if estimate.memory is not None:
        memory = memory_budget()
        checks.append((estimate.memory, estimate.memory_knobs, memory,
                       lambda total: f"{what} needs about {megabytes(total)} of memory at its "
                                     f"peak, over the limit of {megabytes(memory)} a request "
                                     "(SATLAB_MAX_MEMORY)"))
    if estimate.rows is not None:
        checks.append((estimate.rows, estimate.rows_knobs, MAX_LAYER_ROWS,
                       lambda total: f"{what} would record about {total:,.0f} layer-table "
                                     f"rows, over the cap of {MAX_LAYER_ROWS:,} that keeps a "
                                     "run's download small"))

    def fits(values: dict) -> bool:
        return all(cost(values) <= most for cost, _, most, _ in checks)
    values, fields = estimate.values, estimate.fields
    for cost, knobs, most, over in checks:
        total = cost(dict(values))
        if total <= most:
            continue
        knobs = list(knobs)
        fixes = [fix for knob in knobs if (fix := _nearest(values, knob, fits, fields))]
        if fixes:
            advice = _advice(fixes[:3])
        else:
            fixes = _pair(values, fits, knobs, fields)
            advice = (_advice(fixes, joined="and") + " (neither is enough alone)" if fixes
                      else "make the network smaller")
        field = fixes[0][0] if fixes else knobs[-1][0]
        raise ConfigError(field, f"{over(total)}; {advice}")


def megabytes(n: float) -> str:
    """830 MB, 1.2 GB."""
    return f"{n / 2 ** 30:.1f} GB" if n >= 2 ** 30 else f"{max(1, round(n / 2 ** 20)):,} MB"


def _nearest(values: Mapping[str, Any], knob: tuple[str, str], fits_all: Callable[[dict], bool],
             fields: Mapping[str, Any]) -> tuple[str, int, str] | None:
    """(field, value, "lower"/"raise"): the value nearest the request that fits the budgets with
    everything else as in `values`, rounded to two digits, or the nearest of the field's stops
    (the values its control offers: "lower width to 19" was no value the page's slider or link
    takes); None if none in the field's range."""
    name, way = knob
    lo, hi = int(fields[name].metadata["lo"]), int(fields[name].metadata["hi"])
    current = values[name]
    if current is None:   # unset: the code picks it (the Lab's automatic record_every)
        return None

    def fits(x: int) -> bool:
        return fits_all({**values, name: x})
    stops = _stops(fields[name])
    if stops:
        ahead = [s for s in stops if s < current][::-1] if way == "lower" else \
            [s for s in stops if s > current]
        return next(((name, s, way) for s in ahead if fits(s)), None)
    if way == "lower" and current > lo:
        best = _largest(lo, current - 1, fits)
    elif way == "raise" and current < hi:
        best = _smallest(current + 1, hi, fits)
    else:
        return None
    return None if best is None else (name, _round(best, way, lo, hi, fits), way)


def _pair(values: Mapping[str, Any], fits_all: Callable[[dict], bool],
          knobs: list[tuple[str, str]], fields: Mapping[str, Any]) -> list[tuple[str, int, str]]:
    """Two knobs that fit together, in the knobs' order: the first at its cheapest while the
    second is found, then the first eased back as far as the second allows."""
    for i, (a, way_a) in enumerate(knobs):
        meta = fields[a].metadata
        span = _stops(fields[a]) or [int(meta["lo"]), int(meta["hi"])]
        cheapest = span[0] if way_a == "lower" else span[-1]
        if values[a] is None or cheapest == values[a]:
            continue
        for b in knobs[i + 1:]:
            second = _nearest({**values, a: cheapest}, b, fits_all, fields)
            if second is None:
                continue
            first = _nearest({**values, b[0]: second[1]}, (a, way_a), fits_all, fields)
            return [first or (a, cheapest, way_a), second]
    return []


def _stops(field: Any) -> list[int]:
    """A field's stops within its range, in order (None, the automatic value, is not one)."""
    meta = field.metadata
    return sorted(s for s in meta.get("stops") or () if s is not None
                  and meta["lo"] <= s <= meta["hi"])


def sci(x: float) -> str:
    """1.4e12, 6e11: two significant digits, no '+'."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def duration(work: float) -> str:
    """How long `work` multiply-adds take at RATE, in words ("about 2 minutes")."""
    seconds = work / RATE
    if seconds < 90:
        return f"about {max(1, round(seconds)):,} seconds"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60):,} minutes"
    return f"about {round(seconds / 3600):,} hours"


def _largest(lo: int, hi: int, fits: Callable[[int], bool]) -> int | None:
    if not fits(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def _smallest(lo: int, hi: int, fits: Callable[[int], bool]) -> int | None:
    if not fits(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
    return lo


def _round(value: int, way: str, lo: int, hi: int, fits: Callable[[int], bool]) -> int:
    """Two significant digits, towards the cheaper side (12,345 → 12,000; a batch 37 → 40)."""
    if value < 100:
        nice = value if way == "lower" else min(hi, -(-value // 10) * 10 if value > 10 else value)
    else:
        step = 10 ** (len(str(value)) - 2)
        nice = value // step * step if way == "lower" else min(hi, -(-value // step) * step)
    return nice if lo <= nice <= hi and fits(nice) else value


def _advice(fixes: list[tuple[str, int, str]], joined: str = "or") -> str:
    """'lower epochs to 19, max_train to 10,000 or raise batch_size to 64'."""
    parts, verb = [], None
    for name, value, way in fixes:
        parts.append(f"{way + ' ' if way != verb else ''}{name} to {value:,}")
        verb = way
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" {joined} " + parts[-1]


# --- a sweep ----------------------------------------------------------------------------------
def refuse_sweep(cells: list[Estimate]) -> None:
    """ConfigError if a sweep's cells to train are, alone or together, over the budgets. A
    sweep may compute SWEEP_RUNS runs' worth; its cells train stacked, side by side in memory."""
    for cell in cells:
        refuse(cell)
    refuse_together(cells, f"this sweep's {len(cells)} cells to train", "cells",
                    "use fewer cells, or lower {}", runs=SWEEP_RUNS)


def refuse_together(estimates: list[Estimate], what: str, field: str, advice: str,
                    runs: int = 1) -> None:
    """ConfigError if requests that one page trains together (a sweep's cells, Compare's two
    runs) are over the budgets in all: their work may be `runs` runs' worth; their peaks add
    up (stacked, or the first's result kept while the next trains) within one request's memory.
    `advice`: what to do, with {} for the settings that lower the resource over its limit."""
    compute, memory = runs * budget(), memory_budget()
    work = sum(e.total() for e in estimates)
    if work > compute:
        times = f"{runs} runs at the budget of one" if runs > 1 else "one run's budget"
        raise ConfigError(field, f"{what} need about {sci(work)} multiply-adds together, over "
                                 f"the budget of {sci(compute)} ({times}); "
                                 + advice.format("epochs or max_train"))
    peak = REQUEST_BASE + sum(e.peak() - REQUEST_BASE for e in estimates)   # one request's base
    if peak > memory:
        raise ConfigError(field, f"{what} need about {megabytes(peak)} of memory together, "
                                 f"over the limit of {megabytes(memory)} a request "
                                 "(SATLAB_MAX_MEMORY); " + advice.format("width, depth or "
                                                                         "batch_size"))
