"""The Classics page through AppTest: a link opens its classic, with the verdict computed from
the run; a bad link warns and opens the first classic."""

from core.classics.catalogue import CLASSICS
from tests.helpers import charts, clean, open_page

PAGE = "app_pages/classics.py"


def test_a_link_opens_its_classic_with_finding_setup_figure_verdict_and_differences():
    at = open_page(PAGE, classic="glorot2010")
    clean(at)
    classic = CLASSICS["glorot2010"]
    assert at.selectbox(key="classic").value == "glorot2010"
    text = " ".join(m.value for m in at.markdown)
    assert classic.paper.finding in text and classic.differs[0] in text
    assert [s.value for s in at.subheader] == ["What the paper found", "Our setup", "Figure",
                                              "Verdict", "What differs from the paper"]
    assert len(charts(at)) == 1 and "hidden4" in charts(at)[0]
    (verdict,) = at.success
    assert verdict.value.startswith("✓ Reproduced: From step 0 to step 499 the top hidden "
                                    "layer's mean activation went from 0.50 to 0.02")


def test_a_bad_link_warns_and_opens_the_first_classic():
    at = open_page(PAGE, classic="banana")
    clean(at)
    assert at.selectbox(key="classic").value == next(iter(CLASSICS))
    assert [w.value for w in at.warning] == [
        "`classic=banana`: it is not one of the classics here; using "
        f"{next(iter(CLASSICS.values())).title}."]
