"""Classics: famous findings about training dynamics, checked on real runs, each with a verdict
computed from its runs."""

import altair as alt
import streamlit as st

from core.budget import RATE, duration
from core.classics.catalogue import CLASSICS
from core.classics.record import cached_classic_run, get_classic_run, progress, refuse_classic
from core.lab.sweep import SweepResult, SweepSpec
from core.settings import ConfigError
from app_pages.kit.charts import chart
from app_pages.kit.controls import labelled_choice, warn
from app_pages.kit.runs import notices, obtain

st.title("Classics")
st.write("Famous results about how networks train, reproduced on real runs here. Pick a classic: "
         "read what the paper found, how we set it up, then see the figure in the paper's form "
         "and whether our run shows the same (the verdict is computed from the run). Every "
         "classic ends with what differs from the paper.")

picked, warnings = labelled_choice(
    "Classic", list(CLASSICS), {c.id: c.title for c in CLASSICS.values()}, key="classic",
    default=next(iter(CLASSICS)), help="Each classic is a paper's finding and the runs that "
                                       "check it.",
    why_not="it is not one of the classics here")
warn(warnings)
classic = CLASSICS[picked]
paper = classic.paper

st.subheader("What the paper found")
st.markdown(f"{paper.authors} ({paper.year}), *{paper.title}*: {paper.finding}")
st.subheader("Our setup")
st.write(classic.setup)
configs = classic.configs(0)
n_runs = sum(len(cfg.cells()) if isinstance(cfg, SweepSpec) else 1 for cfg in configs.values())
its_runs = "its run" if n_runs == 1 else f"its {n_runs} runs"
# The cost model prices each run alone; a sweep's cells train side by side, well under that.
stacked = any(isinstance(cfg, SweepSpec) for cfg in configs.values())
estimate = duration(classic.seconds() * RATE)
st.caption(f"Training {its_runs} takes "
           + (f"at most {estimate} of one CPU core (the cost model's estimate for runs trained "
              "one by one; a sweep trains its cells side by side)" if stacked
              else f"{estimate} of one CPU core")
           + ", once: the run store keeps them (`python -m core classics` trains them ahead).")

try:
    refuse_classic(configs.values())   # all of them, before any trains
except ConfigError as err:
    st.error(f"These runs could not start: {err}", icon=":material/error:")
    st.stop()
results = []
for cfg in configs.values():   # a Lab run, a recurrent one or a sweep, each with its progress bar
    results.append(obtain(cfg, cached=cached_classic_run, train=get_classic_run,
                          progress=progress(cfg)))
    if results[-1] is None:
        st.stop()
runs = dict(zip(configs, results))
shown = set()   # runs on one dataset share its notice: shown once
for result in results:
    if isinstance(result, SweepResult):   # a sweep's cells are summaries, not runs
        continue
    notices(result, data_notice=result.dataset.get("notice") not in shown,
            divergence=len(results) == 1)
    shown.add(result.dataset.get("notice"))
diverged = [name for name, result in runs.items()
            if not isinstance(result, SweepResult) and result.diverged]
if len(results) > 1 and diverged:   # in a learning-rate search, the rates too high to train
    st.info(f"{len(diverged)} of the {len(results)} runs diverged (non-finite values), and the "
            f"verdict counts them so: {'; '.join(diverged)}.", icon=":material/info:")

st.subheader("Figure")
figure = classic.figure(runs)
# A figure of several panels keeps their own sizes ("content"): stretched to the page, Vega-Lite
# widened some panels past its edge (seen in Chromium); a single panel takes the page's width.
chart(figure, width="content" if isinstance(figure, (alt.VConcatChart, alt.HConcatChart))
      else "stretch")
st.caption(classic.figure_caption)
st.subheader("Verdict")
verdict = classic.verdict(runs)
(st.success if verdict.reproduced else st.error)(
    f"{verdict.mark} {'Reproduced' if verdict.reproduced else 'Not reproduced'}: "
    f"{verdict.sentence}", icon=":material/check_circle:" if verdict.reproduced
    else ":material/cancel:")
st.subheader("What differs from the paper")
st.markdown("\n".join(f"- {line}" for line in classic.differs))
