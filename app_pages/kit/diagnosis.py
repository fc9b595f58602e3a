"""What a run says about itself, as the Training Lab and "Your model" show it: the headline's
flat share and the gradient doctor's box."""

from __future__ import annotations

import math
from typing import Callable

import streamlit as st

from core.lab.doctor import Finding, all_clear
from core.lab.metrics import MOST_FLAT, most_flat
from core.lab.result import RunResult

SHOW = {"error": st.error, "warning": st.warning, "info": st.info}


def flat_share_metric(container, result: RunResult, linear_help: str,
                      width: str = "stretch") -> None:
    """The largest saturated or inactive share of a hidden layer at the end; "–" and
    `linear_help` for a network without a flat region. `width` as st.metric's."""
    if result.flat_metric is None:
        container.metric("Max saturated (end)", "–", help=linear_help, width=width)
        return
    headline, share = MOST_FLAT[result.flat_metric], most_flat(result.end_flat())
    container.metric(headline.label, format(share, headline.fmt) if math.isfinite(share)
                     else "–", help=headline.help, width=width)


def doctor_box(result: RunResult, findings: list[Finding],
               fixes: Callable[[Finding], None] | None = None) -> None:
    """The doctor's findings on `result`, most serious first, each with its evidence (or what
    none means for it). `fixes(finding)` draws what the page offers for a finding's fixes (the
    Lab's retraining buttons); without it they are advice in words, for a run nothing here can
    retrain (a watched loop's)."""
    with st.container(border=True, key="doctor"):
        st.subheader("Gradient doctor", anchor=False)
        if not findings:
            st.success(all_clear(result), icon=":material/check:")
        for finding in findings:
            advice = "; ".join(fix.advice() for fix in finding.fixes) if fixes is None else ""
            SHOW[finding.severity](f"**{finding.title}.** {finding.evidence}"
                                   + (f"\n\n*What may help:* {advice}." if advice else ""))
            if fixes is not None and finding.fixes:
                fixes(finding)
