"""Lessons on a page, for every family: the preset buttons and the lesson box of the preset the
settings match, with ✓ or ✗ beside each claim as measured on this run."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import streamlit as st

from core.lessons import Preset, matching
from app_pages.kit.controls import Form, apply_settings

LESSON_KEY = "_kit_lesson"   # the preset whose lesson the page showed last (None: none)


def preset_buttons(presets: Mapping[str, Preset], form: Form, *, title: str = "Lesson presets",
                   caption: str | None = None, columns: int | None = None,
                   widgets: Callable[[Any], dict] = lambda config: config.to_dict()) -> None:
    """One button per preset, in an expander; a click sets the widgets to `widgets(config)`
    (the preset's settings, by default) and the rerun shows its lesson."""
    with st.expander(title, expanded=False, icon=":material/school:"):
        if caption:
            st.caption(caption)
        n = columns or len(presets)
        cols = st.columns(n)
        for i, p in enumerate(presets.values()):
            cols[i % n].button(p.title, icon=p.icon, help=p.hint, width="stretch",
                               on_click=apply_settings,
                               args=(form, widgets(p.config)),
                               key=f"preset_{p.id}")


def lesson_box(presets: Iterable[Preset], config: Any, evidence: Any,
               container=st) -> Preset | None:
    """The box of the preset `config` is (if any): its title, what to look at, and ✓/✗ for each
    claim on `evidence` (the run, or whatever the family's claims read) whose parts are there.
    Returns that preset."""
    preset = matching(presets, config)
    if preset is None:
        return None
    with container.container(border=True):
        st.markdown(f"**{preset.title}** — {preset.look_at}")
        if getattr(evidence, "stopped", False):
            st.caption("You stopped this run before its last epoch: its claims are checked "
                       "on the full run (train all its epochs below).")
        for claim in preset.ready_claims(evidence):
            text, ok = claim.check(evidence)
            st.markdown(f"{':material/check_circle:' if ok else ':material/cancel:'} "
                        f"{text}" + ("" if ok else " *(not true for this run)*"))
    return preset


def open_evidence_tab(preset: Preset | None, tab_key: str) -> None:
    """Open the tab holding `preset`'s evidence when its lesson starts: a preset button, a
    doctor fix or Train landing on it, or a link to it (Home's card, a pasted one). Called before
    the tabs (bound to the link under `tab_key`) are drawn; afterwards the user's tab holds.

    A link's own tab wins on arrival (the tabs are not drawn yet in this session's page): a
    shared link shows what its sender saw."""
    lesson = preset.id if preset is not None else None
    if st.session_state.get(LESSON_KEY, "") == lesson:
        return
    arriving = tab_key not in st.session_state
    st.session_state[LESSON_KEY] = lesson
    if preset is None or preset.tab is None or (arriving and tab_key in st.query_params):
        return
    st.session_state[tab_key] = preset.tab
