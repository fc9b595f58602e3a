"""`python -m core classics`: trains a classic's runs into the run store and prints its verdict."""

from core.classics.glorot2010 import GLOROT2010
from core.lab.runs import cached_run
from core.tools.cli import main


def test_it_trains_into_the_store_and_prints_the_verdict(capsys):
    assert main(["classics", "--only", "glorot2010", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert GLOROT2010.title in out
    assert "✓ From step 0 to step 499 the top hidden layer's mean activation went from 0.50 " \
           "to 0.02" in out
    assert all(cached_run(cfg) is not None for cfg in GLOROT2010.configs(0).values())


def test_an_unknown_classic_is_one_line_naming_the_choices(capsys):
    assert main(["classics", "--only", "nope"]) == 2
    err = capsys.readouterr().err
    assert err == ("python -m core classics: error: --only 'nope' is not a classic; choose one "
                   "of: glorot2010, he2015, ioffe2015, saxe2013, pascanu2013, schoenholz2016\n")
