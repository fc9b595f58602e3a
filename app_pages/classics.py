"""Classics: famous findings about training dynamics, checked on real runs, each with a verdict
computed from its runs."""

import streamlit as st

from core.budget import RATE, duration
from core.classics.catalogue import CLASSICS
from app_pages.kit.charts import runs_chart
from app_pages.kit.controls import labelled_choice, warn
from app_pages.kit.runs import notices, obtain_all

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
its_runs = "its run" if len(configs) == 1 else f"its {len(configs)} runs"
st.caption(f"Training {its_runs} takes {duration(classic.seconds() * RATE)} of one CPU core, "
           "once: the run store keeps them (`python -m core classics` trains them ahead).")

results = obtain_all(list(configs.values()))
if any(r is None for r in results):
    st.stop()
runs = dict(zip(configs, results))
for result in results:
    notices(result)

st.subheader("Figure")
runs_chart(runs, classic.figure)
st.caption(classic.figure_caption)
st.subheader("Verdict")
verdict = classic.verdict(runs)
(st.success if verdict.reproduced else st.error)(
    f"{verdict.mark} {'Reproduced' if verdict.reproduced else 'Not reproduced'}: "
    f"{verdict.sentence}", icon=":material/check_circle:" if verdict.reproduced
    else ":material/cancel:")
st.subheader("What differs from the paper")
st.markdown("\n".join(f"- {line}" for line in classic.differs))
