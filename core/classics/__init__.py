"""Classic papers on training dynamics, reproduced on real Lab runs (issue 17).

Each classic (`core.classics.catalogue.CLASSICS`) names its paper and finding, says our setup
and how it differs, lists the Lab runs it needs and computes its verdict and figure from them:

    from core.classics.catalogue import CLASSICS
    classic = CLASSICS["he2015"]
    runs = {name: get_run(cfg) for name, cfg in classic.configs().items()}
    classic.verdict(runs).sentence

`python -m core classics` trains every classic's runs into the run store.
"""
