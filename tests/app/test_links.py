"""Links are read by our own checks before a widget sees them (issue 14, findings 9 and 11).

Streamlit seeds a bound widget from the link text itself: `seed=inf` raised inside the integer
number box of every page with a seed ("This app has encountered an error"), and a select slider
matched `lr=10` against its option labels and missed `10.0`. The kit rewrites the link first.
"""

import pytest

from tests.helpers import clean, open_page

SEED_PAGES = ["lab", "compare", "sweep", "playground", "initialization", "recurrent",
              "attention"]
ALLOWED = "an integer from 0 to 2147483647"
BAD_SEEDS = {"inf": "inf", "1e309": "1e309", "5,000 digits": "9" * 5000, "-1": "-1"}


def _named(at, param: str) -> list[str]:
    return [w.value for w in at.warning if f"`{param}" in w.value]


@pytest.mark.parametrize("page", SEED_PAGES)
@pytest.mark.parametrize("value", BAD_SEEDS.values(), ids=BAD_SEEDS)
def test_a_bad_seed_opens_the_page_with_one_warning(page, value):
    param = "b_seed" if page == "compare" and value == "-1" else "seed"  # Compare's B seed too
    at = open_page(f"app_pages/{page}.py", **{param: value})
    clean(at)
    named = _named(at, param)
    assert len(named) == 1 and ALLOWED in named[0] and "using 0" in named[0], named
    assert param not in at.query_params  # the widget shows 0, the link says so too


@pytest.mark.parametrize("page", SEED_PAGES)
def test_a_repeated_setting_takes_its_last_value_and_says_so(page):
    at = open_page(f"app_pages/{page}.py", seed=["3", "5"])
    clean(at)
    named = _named(at, "seed")
    assert len(named) == 1 and named[0].endswith(
        "`seed` is in the link 2 times (3, 5); the last counts."), named
    assert at.number_input(key="seed").value == 5


@pytest.mark.parametrize("param,text,value", [
    ("lr", "10", 10.0), ("lr", "1e1", 10.0), ("lr", ".1", 0.1), ("batch_size", "0128", 128)])
def test_a_number_written_another_way_selects_its_option(param, text, value):
    at = open_page("app_pages/lab.py", **{param: text})
    clean(at)
    assert at.select_slider(key=param).value == value
    assert not _named(at, param), _named(at, param)


def test_the_optimizers_page_reads_its_link_the_same_way():
    """Its widgets are drawn by hand (a start window per surface), through the same tidying."""
    at = open_page("app_pages/optimizers.py", adam_lr=".1", decay="1", sgd="0",
                   iterations=["100", "200"])
    clean(at)
    assert at.select_slider(key="adam_lr").value == 0.1
    assert at.select_slider(key="decay").value == 1.0
    assert at.toggle(key="sgd").value is False
    assert at.select_slider(key="iterations").value == 200
    assert [w.value for w in at.warning] == [
        "`iterations` is in the link 2 times (100, 200); the last counts."]
