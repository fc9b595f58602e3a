"""Drawing charts on a page: every chart goes through `chart` (or `run_chart`, which caches a
finished run's chart specs across reruns)."""

from __future__ import annotations

from typing import Callable

import altair as alt
import streamlit as st

from core import chart_parts
from core.lab.result import RunResult


def chart(spec: alt.TopLevelMixin, container=st, width: str = "stretch") -> None:
    """Draw an Altair chart stretched to the page's width, or at its own size ("content": a
    square that stretching would turn into a strip)."""
    container.vega_lite_chart(spec=spec_dict(spec), width=width)


spec_dict = chart_parts.vega_spec  # what every chart on a page goes through


def run_chart(result: RunResult, builder: Callable, *args, container=st, **kwargs) -> None:
    """Draw `builder(result, *args, **kwargs)`, stretched to the page's width.

    A page reruns on every click (a tab, the epoch scrubber, a selectbox), and Altair takes
    10–170 ms to build and serialise one chart of a run that has not changed (measured on the
    Lab's charts). The specs are cached by the run's identity and the builder's arguments: the
    config key plus the tables' lengths and status, which tell a live partial result from the
    finished one."""
    spec = _run_spec(_identity(result), builder.__module__, builder.__qualname__, args,
                     tuple(sorted(kwargs.items())), lambda: builder(result, *args, **kwargs))
    container.vega_lite_chart(spec=spec, width="stretch")


def runs_chart(results: dict, builder: Callable, *args, container=st,
               width: str = "stretch") -> None:
    """Draw `builder(results, *args)` of several named runs, cached like `run_chart` by every
    run's identity. `args` may hold a single-run builder (Compare's side by side): it is keyed
    by its name, as `builder` is. `width` as for `chart`."""
    run_id = tuple((name, _identity(r)) for name, r in results.items())
    named = tuple(f"{a.__module__}.{a.__qualname__}" if callable(a) else a for a in args)
    spec = _run_spec(run_id, builder.__module__, builder.__qualname__, named, (),
                     lambda: builder(results, *args))
    container.vega_lite_chart(spec=spec, width=width)


def _identity(result: RunResult) -> tuple:
    return (result.key, result.status, len(result.epochs), len(result.steps),
            len(result.layers), len(result.histograms))


@st.cache_data(max_entries=256, show_spinner=False)
def _run_spec(run_id: tuple, module: str, name: str, args: tuple, kwargs: tuple,
              _build: Callable) -> dict:
    # _build (the builder called on the runs) is not hashed (a leading underscore): run_id,
    # module, name and the arguments say which chart it makes.
    return spec_dict(_build())


def open_tab(names: list[str], *, key: str):
    """Draw `st.tabs(names)` (bound to the link as ?{key}=) and yield `(name, tab)` for the open
    one only, whose charts the page then builds.

    Building every tab makes a new browser tab draw ~1.5 MB of specs (6.1 s against ~2 s for one
    tab, measured on the Lab). Keeping the tabs opened before built made a switch slower, not
    faster (median 0.49 s against 0.38 s in Chromium, benchmarks/page_speed.py): every rerun
    sends their specs again. So a switch reruns the page's fragment and builds the open tab from
    the specs cached per run (run_chart)."""
    for name, tab in zip(names, st.tabs(names, key=key, bind="query-params")):
        if tab.open:
            yield name, tab
