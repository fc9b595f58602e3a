"""Lessons on a page, for every family: the preset buttons and the lesson box of the preset the
settings match, with ✓ or ✗ beside each claim as measured on this run; and the lessons of every
family as one ordered path (`PATH`, drawn by Home), each opened by a link to its page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import streamlit as st

from core.attention.presets import ATTENTION_PRESETS
from core.lab.presets import PRESETS
from core.lessons import Preset, matching
from core.optimizers.race import PRESETS as RACE_PRESETS
from core.recurrent.presets import RECURRENT_PRESETS
from app_pages.kit.controls import Form, apply_settings

LESSON_KEY = "_kit_lesson"   # the preset whose lesson the page showed last (None: none)


def preset_buttons(presets: Mapping[str, Preset], form: Form, *, title: str = "Lesson presets",
                   caption: str | None = None,
                   widgets: Callable[[Any], dict] = lambda config: config.to_dict()) -> None:
    """One button per preset, in an expander; a click sets the widgets to `widgets(config)`
    (the preset's settings, by default) and the rerun shows its lesson.

    The buttons flow in rows, each as wide as its title: in equal columns a laptop's page (820
    px beside the sidebar) cut titles short ("Fix: residual connect…", all four of
    Attention's)."""
    with st.expander(title, expanded=False, icon=":material/school:"):
        if caption:
            st.caption(caption)
        with st.container(horizontal=True):
            for p in presets.values():
                st.button(p.title, icon=p.icon, help=p.hint, width="content",
                          on_click=apply_settings, args=(form, widgets(p.config)),
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


def lesson_notice(preset: Preset | None, tab: str | None = None) -> None:
    """The lesson's one line on what to notice, drawn beside its evidence chart: in `tab` when
    that is the lesson's evidence tab (or on a page without tabs)."""
    if preset is not None and preset.notice and tab == preset.tab:
        st.info(f"**Notice:** {preset.notice}", icon=":material/visibility:")


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


# --- the path through every family's lessons ------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """One stretch of the path: lessons of one page, in order."""
    title: str
    why: str                      # one line: what this stretch teaches
    page: str                     # the page script the lessons open
    opens: str                    # the link's words ("Open in the Lab"): a laptop's page
    #                               fits ~120 px of them in a card ("Open in the Training…")
    presets: tuple[Preset, ...]

    def link(self, preset: Preset) -> dict[str, str]:
        """The link's settings: the same experiment as the page's own preset button, on its
        evidence tab. Every setting is written where a lesson is the page's own defaults
        (Recurrent's first): a link without settings would keep an earlier visit's."""
        if self.page == "app_pages/lab.py":
            return {**preset.config.to_params(), "tab": preset.tab}
        params = preset.config.to_params(only_changed=False)
        if self.page == "app_pages/optimizers.py":   # its button also puts the scrubber at the end
            params["iteration"] = str(preset.config.iterations)
        return params


def _lab(*ids: str) -> tuple[Preset, ...]:
    return tuple(PRESETS[i] for i in ids)


PATH = (
    Stage("Gradients through depth", "Why deep networks stop learning, and the fixes that "
          "let the gradient through.", "app_pages/lab.py", "Open in the Lab",
          _lab("vanishing", "exploding", "relu_he", "batch_norm", "clipping", "residual", "cnn")),
    Stage("Step size", "One optimizer on a 2-D valley: what the learning rate does to each "
          "step.", "app_pages/optimizers.py", "Open in Optimizers", tuple(RACE_PRESETS.values())),
    Stage("Adaptive steps", "Adam rescales every weight's step, until its gradients fall below "
          "ε.", "app_pages/lab.py", "Open in the Lab", _lab("adam", "adam_eps")),
    Stage("Fitting and generalising", "A network that memorises its training images, and three "
          "ways to stop it.", "app_pages/lab.py", "Open in the Lab",
          _lab("overfitting", "dropout", "weight_decay", "early_stopping")),
    Stage("Through time", "Recurrent networks: the gradient through many time steps.",
          "app_pages/recurrent.py", "Open in Recurrent", tuple(RECURRENT_PRESETS.values())),
    Stage("Attention", "The softmax saturates when its logits spread: why attention divides "
          "by √d.", "app_pages/attention.py", "Open in Attention",
          tuple(ATTENTION_PRESETS.values())),
)
