"""The Initialization page through AppTest: theory beside measurement, links, bad input."""

from tests.helpers import charts, clean, open_page

SMALL = dict(depth="12", width="64")


def _metrics(at) -> dict:
    return {m.label: m.value for m in at.metric}


def test_default_page_is_critical_and_draws_profile_phase_diagram_and_spectra():
    at = open_page("app_pages/initialization.py", **SMALL)
    clean(at)
    assert len(charts(at)) == 4
    m = _metrics(at)
    assert float(m["χ₁ theory"]) == 1.0  # σ_w² on the critical line for σ_b² = 0.05
    assert "critical phase" in " ".join(m.value for m in at.markdown)  # st.badge is markdown


def test_lower_sigma_w2_is_ordered_and_the_measurement_follows_theory():
    at = open_page("app_pages/initialization.py", sigma_w2="0.5", **SMALL)
    clean(at)
    m = _metrics(at)
    theory, measured = float(m["χ₁ theory"]), float(m["χ measured"])
    assert theory < 0.6 and abs(measured - theory) < 0.15 * theory
    assert at.number_input(key="sigma_w2").value == 0.5  # the link set the control


def test_bad_link_warns_and_uses_defaults():
    at = open_page("app_pages/initialization.py", depth="-3", activation="banana", width="64")
    clean(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "depth=-3" in warnings and "activation=banana" in warnings
    assert at.slider(key="depth").value == 50


def test_the_page_opens_with_its_plain_summary_and_the_network_behaves_as_it_says():
    at = open_page("app_pages/initialization.py", **SMALL)
    clean(at)
    assert at.info[0].value.startswith("**In short.**")   # before q*, χ₁ and ξ
    assert "q*" not in at.info[0].value and "χ" not in at.info[0].value
    # "below one it shrinks …, above one it grows": the first/last gradient ratio, measured.
    ordered = _metrics(open_page("app_pages/initialization.py", sigma_w2="0.5", **SMALL))
    chaotic = _metrics(open_page("app_pages/initialization.py", sigma_w2="4.0", **SMALL))
    assert float(ordered["χ₁ theory"]) < 1 and float(ordered["First/last gradient"]) < 0.1
    assert float(chaotic["χ₁ theory"]) > 1 and float(chaotic["First/last gradient"]) > 1
