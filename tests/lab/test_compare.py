"""Compare: the difference/outcome tables, the overlay charts, and the page through AppTest."""

import json
import math

import pytest

from core.lab import charts as lab_charts, compare_charts, histogram_charts
from core.lab.compare import differences, layer_order, outcome_rows, outcomes
from core.lab.config import RunConfig
from core.lab.runs import get_run
from core.lab.tabs import TABS
from core.lab.trainer import train
from tests.helpers import charts, clean, open_page, walk

A = RunConfig(depth=2, width=16, epochs=2, max_train=300)
B = A.replace(depth=3, activation="tanh")
SMALL = {k: v for k, v in A.to_params().items() if k in ("depth", "width", "epochs", "max_train")}


@pytest.fixture(scope="module")
def results():
    return {"A": train(A), "B": train(B),
            "diverged": train(RunConfig(depth=10, activation="linear", init="normal_large",
                                        optimizer="sgd", lr=0.1, epochs=2))}


def test_differences_lists_only_what_differs_in_config_order():
    diff = differences(A, B)
    assert list(diff.setting) == ["depth", "activation"]
    assert list(diff.A) == ["2", "relu"] and list(diff.B) == ["3", "tanh"]
    assert differences(A, A).empty
    assert list(differences(A, A.replace(clip_norm=1.0)).A) == ["off"]


def test_outcomes_are_the_runs_own_numbers(results):
    table = outcomes({"A": results["A"], "X": results["diverged"]}).set_index("run")
    assert table.loc["A", "val_accuracy"] == results["A"].final("val", "accuracy")
    assert table.loc["A", "depth_ratio"] == pytest.approx(results["A"].depth_ratio(0))
    assert not table.loc["A", "diverged"] and table.loc["X", "diverged"]
    assert table.loc["X", "diverged_at_step"] == results["diverged"].divergence["step"]
    # The most saturated hidden layer at the last record, as the Lab and the Sweep show it;
    # none for a diverged run, whose last record is the blow-up.
    kind = results["A"].flat_metric
    other = next(k for k in ("saturation", "inactive") if k != kind)
    share = results["A"].layers.query("metric == @kind")
    assert table.loc["A", f"max_{kind}"] == pytest.approx(
        share[share.step == share.step.max()].value.max())
    assert math.isnan(table.loc["A", f"max_{other}"])   # the column its activation lacks
    assert math.isnan(table.loc["X", f"max_{kind}"])


def test_outcome_rows_read_each_runs_numbers_side_by_side(results):
    pair = {"A": results["A"], "X": results["diverged"]}
    rows = outcome_rows(outcomes(pair)).set_index("outcome")
    assert list(rows.columns) == ["A", "X"]
    a, x = results["A"], results["diverged"]
    assert rows.loc["Val accuracy", "A"] == f"{100 * a.final('val', 'accuracy'):.2f}%"
    assert rows.loc["Diverged", "A"] == "no"
    assert rows.loc["Diverged", "X"] == f"at step {x.divergence['step']:,}"
    # A diverged run whose record has no step (an older run file) still reads as diverged.
    unknown = outcomes(pair).assign(diverged_at_step=None)
    assert outcome_rows(unknown).set_index("outcome").loc["Diverged", "X"] == "yes"
    assert rows.loc["Training time", "A"] == f"{a.timing['seconds']:.2f} s"
    # A's units are ReLU (inactive), X's linear (neither kind): the saturation row is left out,
    # and X, diverged, has no inactive share to show.
    assert "Max saturated (end)" not in rows.index
    assert rows.loc["Max inactive (end)", "X"] == "–"
    assert rows.loc["Max inactive (end)", "A"] == f"{round(100 * outcomes(pair).max_inactive[0])}%"
    # Two sigmoid-family runs: the saturation row, never an inactive one.
    tanh = outcome_rows(outcomes({"B": results["B"]})).set_index("outcome")
    assert "Max saturated (end)" in tanh.index and "Max inactive (end)" not in tanh.index


@pytest.mark.parametrize("epoch, align", [(0, "left"), (2, "right")])
def test_the_epoch_rules_label_stays_on_the_plot_side_with_room(results, epoch, align):
    """At the last epoch, the right edge, the label goes left of its rule: right of it, it ran
    off the plot and over the last points (seen in Chromium)."""
    spec = compare_charts.loss_accuracy({"A": results["A"]}, epoch).to_dict()
    labels = [n["mark"] for n in walk(spec) if isinstance(n, dict)
              and isinstance(n.get("mark"), dict) and n["mark"]["type"] == "text"]
    assert len(labels) == 2   # one a panel
    assert {m.get("align") for m in labels} == {align}
    assert {m.get("dx") for m in labels} == {3 if align == "left" else -3}


def test_layer_order_merges_depths_with_output_last(results):
    assert layer_order({"A": results["A"], "B": results["B"]}) == [
        "hidden1", "hidden2", "hidden3", "output"]


def _validated(chart) -> dict:
    spec = chart.to_dict()  # validates against the Vega-Lite schema
    json.dumps(spec)        # and is plain JSON
    return spec


@pytest.mark.parametrize("build", [
    lambda r: compare_charts.loss_accuracy(r, 1),
    lambda r: compare_charts.layer_profile(r, "weight_grad_norm", 1),
    lambda r: compare_charts.layer_profile(r, "saturation", 0),
    lambda r: compare_charts.over_training(r),
    lambda r: compare_charts.total_grad_norm(r),
    lambda r: compare_charts.update_ratio_profile(r, 2),
])
def test_overlay_charts_carry_both_runs(results, build):
    both = {"A": results["A"], "B": results["B"]}
    text = json.dumps(_validated(build(both)))
    assert '"A"' in text and '"B"' in text
    # A run that blew up still draws (its non-finite values are gaps).
    _validated(build({"A": results["A"], "B": results["diverged"]}))


@pytest.mark.parametrize("build, args", [
    (lab_charts.grad_norm_heatmap, ()), (lab_charts.gradient_flow, (1,)),
    (lab_charts.layer_norms, ()), (histogram_charts.histograms, ("weight", 1)),
    (lab_charts.loss_accuracy, (1,)), (lab_charts.ratios, (1,)),
])
def test_side_by_side_shares_scales_across_the_runs(results, build, args):
    both = {"A": results["A"], "B": results["B"]}
    spec = _validated(compare_charts.side_by_side(both, build, *args))
    shared = {"x": "shared", "y": "shared", "color": "shared"}
    rows = spec["vconcat"] if "vconcat" in spec else [spec]
    alone = build(results["B"], *args).to_dict()
    assert len(rows) == len([v for v in walk(alone) if isinstance(v, dict)
                             and ("mark" in v or isinstance(v.get("layer"), list)
                                  or "facet" in v) and not _inside_panel(v, alone)])
    for row in rows:
        # One panel of each run per row, on one scale per channel: a 1e-6 and a 0.3 gradient
        # no longer look alike.
        assert row["resolve"]["scale"] == shared
        assert [p["title"] for p in row["hconcat"]] == ["Run A", "Run B"]
        for p in row["hconcat"]:
            assert p["resolve"]["scale"] == shared
            # Narrowed to fit the pair on a laptop's page.
            assert _plot_width(p["vconcat"][0]) <= compare_charts.PAIR_PLOT + 1
    # Each run's chart is built over both runs' layers, so a layer has one colour in both.
    domains = [e["scale"]["domain"] for e in walk(spec) if isinstance(e, dict)
               and e.get("field") == "layer" and "domain" in e.get("scale", {})]
    assert all(d == layer_order(both) for d in domains)


@pytest.mark.parametrize("tab_chart", [c for charts in TABS.values() for c in charts
                                       if c.side_by_side], ids=lambda c: c.build.__name__)
def test_side_by_side_keeps_every_parameter_its_panels_read(results, tab_chart):
    """A chart of several panels holds its parameters (the epoch slider, legend picks) at its
    top; the pair must define each one, once, or the browser fails on 'Unrecognized signal
    name' and draws an empty box (seen in Chromium)."""
    both = {"A": results["A"], "B": results["B"]}
    args = tab_chart.args(1, results["A"].layer_names[0])
    pair = compare_charts.side_by_side(both, tab_chart.build, *args).to_dict()
    alone = tab_chart.build(results["A"], *args).to_dict()

    def defined(spec):
        return [p["name"] for v in walk(spec) if isinstance(v, dict)
                for p in v.get("params", []) if isinstance(p, dict) and "name" in p]
    assert set(defined(alone)) <= set(defined(pair))
    assert len(defined(pair)) == len(set(defined(pair)))


def _inside_panel(view: dict, spec: dict) -> bool:
    """Whether `view` sits inside a layered or faceted view of `spec` (not a panel itself)."""
    for outer in walk(spec):
        if isinstance(outer, dict) and outer is not view:
            layers = outer.get("layer")
            inner = (layers if isinstance(layers, list) else []) + (
                [outer["spec"]] if "facet" in outer else [])
            if any(v is view for v in inner):
                return True
    return False


def _plot_width(view: dict) -> float:
    """A panel's plot width read from the spec (an independent answer to _width)."""
    if "facet" in view:
        return _plot_width(view["spec"]) * view.get("columns", 1)
    return max([view.get("width", 0), *(_plot_width(v) for v in view.get("layer", []))])


def test_layer_profile_values_are_the_state_after_the_epoch(results):
    chart = compare_charts.layer_profile({"A": results["A"]}, "weight_grad_norm", 0)
    rows = [r for d in chart.to_dict()["datasets"].values() for r in d]
    step0 = results["A"].at_step("weight_grad_norm", 0)
    assert {r["layer"]: r["value"] for r in rows} == pytest.approx(step0.to_dict())


def test_page_shows_differences_outcomes_and_overlays():
    at = open_page("app_pages/compare.py", **SMALL, **{f"b_{k}": v for k, v in SMALL.items()},
                   b_activation="tanh")
    clean(at)
    diff, table = at.dataframe[0].value, at.dataframe[1].value
    assert set(diff.setting) == {"Activation", "Batch norm"}  # B = A with BN toggled, + tanh
    assert list(table.columns) == ["outcome", "A", "B"]
    assert table.outcome[0] == "Val accuracy"
    assert "● changed" in at.sidebar.selectbox(key="b_activation").label
    assert len(charts(at)) == 1
    for tab, n in {"Gradients": 3, "Activations": 3, "Weights & ratios": 3, "Clipping": 1,
                   "Batch norm": 1}.items():  # side by side: one chart of both runs
        page = open_page("app_pages/compare.py", tab=tab, **SMALL,
                         **{f"b_{k}": v for k, v in SMALL.items()})
        clean(page)
        assert len(charts(page)) == n, tab
    side = open_page("app_pages/compare.py", layout="Side by side", tab="Gradients", **SMALL,
                     **{f"b_{k}": v for k, v in SMALL.items()})
    clean(side)
    # Heatmap, gradient flow and step-0 bars: each one chart of both runs on shared scales.
    assert len(charts(side)) == 3


def test_page_bad_b_link_warns_and_uses_a_fallback():
    at = open_page("app_pages/compare.py", **SMALL, b_depth="-3", b_epochs="2", b_max_train="300",
                   b_width="16")
    clean(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "B: `b_depth=-3`" in warnings


def test_page_compares_two_stored_runs():
    a, b = get_run(A), get_run(B)
    at = open_page("app_pages/compare.py", mode="Stored runs", run_a=a.key, run_b=b.key)
    clean(at)
    assert set(at.dataframe[0].value.setting) == {"Depth", "Activation"}
    assert len(charts(at)) == 1
    picker = at.selectbox(key="run_a")
    assert picker.value == a.key and at.query_params["run_a"] == a.key   # the link: the key
    shown = picker.format_func(a.key)   # the picker: what the run is, in words
    acc = a.final("val", "accuracy")
    assert shown.startswith("digits · MLP 2×16 relu · Adam lr 0.001 · 2 epochs · seed 0 · "
                            "300 training examples — ") and f"{acc:.1%} val" in shown, shown
    assert shown in picker.options and a.key not in " ".join(picker.options)
    gone = open_page("app_pages/compare.py", mode="Stored runs", run_a="0" * 20, run_b=b.key)
    assert not gone.exception
    assert gone.warning[0].value.startswith(f"`run_a={'0' * 20}`: no run in the store has this "
                                            "key (any more); using digits · MLP")


def test_the_labs_link_opens_its_config_as_a_without_warnings():
    lab_cfg = RunConfig(depth=2, width=16, epochs=2, max_train=None, patience=None)
    at = open_page("app_pages/compare.py", **lab_cfg.to_params(only_changed=False))
    clean(at)
    assert not at.warning, [w.value for w in at.warning]
    table = at.dataframe[0].value
    assert list(table.setting) == ["Batch norm"]  # B = A with batch norm toggled, nothing else
    assert at.sidebar.slider(key="depth").value == 2  # A is the Lab's config, not the default
    assert at.sidebar.select_slider(key="max_train").value is None
