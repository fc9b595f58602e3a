"""Reading a page's link: what it asked for, before and after the page's widgets took it.

A link is read by the settings' own checks before any widget sees it (`tidy_link`): a value a
widget offers is rewritten as its option's text (``lr=1e1`` → ``10.0``), any other value
(``?depth=-3&seed=inf&activation=banana``) is removed, and the warnings say which values were
dropped and what is used instead; a repeated setting's last value counts.

Entering a page (`enter_page`, the router's call before every page) also drops what the session
held from another page when a link brings settings of its own, and tells a training script run
that this session's rerun stopped that its successor has begun (app_pages.kit.runs: Stop).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import streamlit as st
from streamlit.errors import StreamlitAPIException

from core.settings import ConfigError, inline

if TYPE_CHECKING:
    from app_pages.kit.controls import Form

PAGE_KEY = "_kit_page"   # the page the session ran last (its URL path)
LINK_ASKED_KEY = "_kit_link_asked"   # the link as the page was opened: key → its texts
LINK_RERUN_KEY = "_kit_link_rerun"   # `tidy_link` reran the page with the link rewritten
# An event a training script run leaves (app_pages.kit.runs.obtain): set when the session's next
# script run reaches the router, its widget callbacks (the Stop button's among them) run.
NEXT_RUN_KEY = "_kit_next_run"


def enter_page(path: str) -> None:
    """Called by the router before page `path` runs. Reached from another page through a link
    that carries settings (a Home card, Compare's link), the page shows exactly the link's:
    what the session holds from an earlier visit is dropped, or the widgets the link leaves at
    their defaults would keep that visit's values (measured: the vanishing lesson's sigmoid in
    the overfitting card's run). Without settings in the link (the sidebar's menu) the earlier
    visit's settings stay."""
    next_run = st.session_state.pop(NEXT_RUN_KEY, None)
    if next_run is not None:
        next_run.set()
    if st.session_state.get(PAGE_KEY, path) != path and len(st.query_params):
        for key in list(st.session_state):
            del st.session_state[key]
    st.session_state[PAGE_KEY] = path
    if not st.session_state.pop(LINK_RERUN_KEY, False):  # not `tidy_link`'s rerun: a new link
        st.session_state[LINK_ASKED_KEY] = {key: st.query_params.get_all(key)
                                            for key in st.query_params}


def tidy_link(form: Form, names: Iterable[str], defaults: Any,
              options: Mapping[str, Iterable] | None = None, prefix: str = "") -> None:
    """Rewrite the link's values of the widgets of `names` as the widgets read them, and rerun.

    Streamlit seeds a bound widget from the link text itself, before our checks: `seed=inf`
    raises inside an integer number box, and a select slider matches the text against its
    labels, so `lr=10` or `1e1` misses the option `10.0`. So the link is read here first, by
    the settings' own parser: a value a widget offers is written as its option's text, any
    other value is removed (the widget starts at its default, which the warning names), and a
    repeated setting keeps its last value. The warnings read the link as opened (`link_texts`).
    Streamlit seeds widgets from the link as the run began, hence the rerun."""
    rewritten = {}
    for name in names:
        key = prefix + name
        texts = st.query_params.get_all(key)
        if texts:
            text = _widget_text(form, name, texts[-1], getattr(defaults, name),
                                (options or {}).get(name))
            if texts != [text]:
                rewritten[key] = text
    written = False
    for key, text in rewritten.items():
        try:
            if text is None:
                del st.query_params[key]
            else:
                st.query_params[key] = text
            written = True
        except StreamlitAPIException:  # bound: its widget holds a value and ignores the link
            pass
    if written:
        st.session_state[LINK_RERUN_KEY] = True
        st.rerun()


def _widget_text(form: Form, name: str, text: str, default: Any,
                 choices: Iterable | None) -> str | None:
    """The text under which field `name`'s widget offers the value `text` means; None if it
    offers no such value."""
    try:
        value = form.settings.parse_setting(name, text)
    except ConfigError:
        return None
    spec = form.spec(name, default, choices)
    offered = (value in spec.options if spec.options
               else spec.lo is None or spec.lo <= value <= spec.hi)
    return form.settings.format_setting(name, value) if offered else None


def link_texts(keys: Iterable[str]) -> dict[str, list[str]]:
    """Each of `keys` the link holds → its texts, as the page was opened (before `tidy_link`
    rewrote it, and before a bound widget dropped what it could not take)."""
    asked = st.session_state.get(LINK_ASKED_KEY)
    found = {key: st.query_params.get_all(key) if asked is None else asked.get(key, [])
             for key in keys}
    return {key: texts for key, texts in found.items() if texts}


def repeated_warnings(texts: Mapping[str, list[str]]) -> list[str]:
    """One warning per setting the link gives more than once: the last one counts."""
    return [f"`{key}` is in the link {len(values)} times "
            f"({', '.join(inline(v) for v in values[:5])}{', …' if len(values) > 5 else ''}); "
            f"the last counts."
            for key, values in texts.items() if len(values) > 1]


def link_problems(settings: type, raw: Mapping[str, str], used: Any, *, prefix: str = "",
                  offered: Mapping[str, Sequence] | None = None,
                  skip: Iterable[str] = ()) -> list[str]:
    """What the link (`raw`: name → text) asked for that the page could not use, and what it
    used instead. `skip`: widget keys a callback has just set (`just_set()`): the link read at
    the start of this run still holds their old values."""
    skip = set(skip)
    raw = {name: text for name, text in raw.items() if prefix + name not in skip}
    return settings.url_problems(raw, used, offered, prefix=prefix)
