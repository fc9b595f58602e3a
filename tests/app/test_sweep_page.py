"""The Sweep page (AppTest) and its heatmaps (through the Vega-Lite spec)."""

import json
import math

import pandas as pd
import pytest
from urllib.parse import parse_qsl

from core.lab.config import RunConfig

from core.lab import sweep_charts
from tests.helpers import charts, clean, open_page

@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    """These sweeps take a second: starting worker processes would take longer than they do.
    The page's workers are tested in tests/lab/test_sweep_engines.py."""
    monkeypatch.setenv("SATLAB_MAX_TRAININGS", "1")


SMALL = dict(x="depth", xv="1,2", y="activation", yv="relu,tanh", epochs="1", width="16",
             max_train="200")


def _table(**changes) -> pd.DataFrame:
    rows = [dict(x=x, y=y, key=f"k{x}{y}", val_accuracy=acc, depth_ratio=ratio,
                 flat_metric="inactive" if y == "relu" else "saturation", flat_max=sat,
                 diverged=False, batched=True)
            for (x, y, acc, ratio, sat) in [("2", "relu", 0.9, 0.5, 0.1),
                                            ("4", "relu", 0.8, 1e-3, 0.2),
                                            ("2", "tanh", 0.7, 2e2, 0.6),
                                            ("4", "tanh", math.nan, math.nan, math.nan)]]
    rows[-1]["diverged"] = True
    return pd.DataFrame(rows).assign(**changes)


def test_heatmap_cells_carry_values_labels_and_the_click_selection():
    spec = sweep_charts.heatmap(_table(), "val_accuracy", x_title="depth",
                                y_title="activation").to_dict()  # schema-validated
    text = json.dumps(spec)
    assert '"name": "cell"' in text and '"fields": ["key"]' in text
    rows = [r for d in spec["datasets"].values() for r in d]
    labels = {r["key"]: r["label"] for r in rows}
    assert labels == {"k2relu": "90%", "k4relu": "80%", "k2tanh": "70%", "k4tanh": "NaN"}


def test_flat_share_heatmap_names_what_each_cell_measures():
    mixed = sweep_charts.heatmap(_table(), "flat_max", x_title="depth", y_title="activation")
    assert _title(mixed.to_dict()).startswith("Max saturated (sigmoid, tanh) or inactive")
    relu = _table().query("y == 'relu'")
    assert _title(sweep_charts.heatmap(relu, "flat_max", x_title="depth",
                                       y_title="activation").to_dict()).startswith(
        "Max inactive (end)")


def _title(spec: dict) -> str:
    return " ".join(spec["title"]["text"])


def test_heatmaps_are_readable_in_a_third_of_a_laptop_page():
    six = pd.concat([_table(x=str(x)) for x in (1, 2, 4, 8, 16, 32)], ignore_index=True)
    for metric, heat in sweep_charts.HEATMAPS.items():
        spec = sweep_charts.heatmap(six, metric, x_title="depth", y_title="activation",
                                    x_order=["1", "2", "4", "8", "16", "32"]).to_dict()
        # The whole title, wrapped into lines a third of the page holds; never cut.
        lines = spec["title"]["text"]
        assert all(len(line) <= sweep_charts.TITLE_CHARS for line in lines)
        assert spec["title"]["limit"] == 0   # no "…": the lines are short enough
        assert _title(spec) == (sweep_charts.flat_title(six) if metric == "flat_max"
                                else heat.title)
        # Every tick label drawn, and rows tall enough for the number written in them.
        for channel in ("x", "y"):
            axis = spec["layer"][0]["encoding"][channel]["axis"]
            assert axis["labelOverlap"] is False
        assert spec["layer"][0]["encoding"]["x"]["axis"]["labelAngle"] == -40  # six columns
        assert spec["height"] >= 44 * 2 and spec["width"] >= 56 * 6
        legend = spec["layer"][0]["encoding"]["color"]["condition"]["legend"]
        assert legend["orient"] == "bottom"   # below the grid: the cells keep the width


def test_depth_ratio_heatmap_is_log10_and_centred_on_balance():
    spec = sweep_charts.heatmap(_table(), "log_depth_ratio", x_title="depth",
                                y_title="activation").to_dict()
    rows = {r["key"]: r for d in spec["datasets"].values() for r in d}
    assert rows["k4relu"]["value"] == -3.0 and rows["k2tanh"]["value"] == 2.0 + math.log10(2)
    assert rows["k4relu"]["label"] == "-3.0" and rows["k2tanh"]["label"] == "+2.3"
    near_one = sweep_charts.heatmap(_table(depth_ratio=0.95), "log_depth_ratio",
                                    x_title="depth", y_title="activation").to_dict()
    assert {r["label"] for d in near_one["datasets"].values() for r in d
            if "label" in r} >= {"0.0"}   # log₁₀ 0.95 = -0.02: no "-0.0"
    scale = spec["layer"][0]["encoding"]["color"]["condition"]["scale"]
    lo, hi = scale["domain"]
    assert lo == -hi  # as far to the vanishing side as to the exploding side


def test_the_pages_worker_processes_do_not_run_the_app(monkeypatch, capfd):
    """Two local workers, as on a 2-CPU server. A worker process (forkserver-started or spawned)
    imports the parent's main module, here streamlit_app.py, as `__mp_main__`; before the
    router's `if __name__ == "__main__"` guard each worker ran the router and the Home page in
    bare mode, 23 warnings apiece on the server's stderr, and a sweep took 0.5 s longer."""
    monkeypatch.setenv("SATLAB_MAX_TRAININGS", "2")
    at = open_page("app_pages/sweep.py", **SMALL, seed="11")   # cells no other test trains
    clean(at)
    assert "4 trained now" in " ".join(c.value for c in at.caption)
    err = capfd.readouterr().err
    assert "ScriptRunContext" not in err and "without `streamlit run`" not in err, err[-2000:]


def test_page_trains_every_cell_then_serves_them_from_the_store():
    at = open_page("app_pages/sweep.py", **SMALL)
    clean(at)
    assert len(charts(at)) == 3
    first = " ".join(c.value for c in at.caption)
    assert "4 cells" in first and "4 trained now" in first
    again = open_page("app_pages/sweep.py", **SMALL)
    clean(again)
    assert "4 from the run store" in " ".join(c.value for c in again.caption)
    table = again.dataframe[0].value
    assert list(table.columns[:2]) == ["x", "y"] and len(table) == 4
    assert all(link.startswith("lab?") and "depth=" in link for link in table["lab"])


def test_page_bad_link_warns_and_still_sweeps():
    at = open_page("app_pages/sweep.py", **{**SMALL, "x": "banana", "yv": "relu,banana"})
    clean(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "`x=banana`" in warnings and "banana" in warnings.split("`x=banana`")[1]
    assert len(charts(at)) == 3


def test_every_cell_links_to_its_own_run_in_the_lab():
    at = open_page("app_pages/sweep.py", **SMALL)
    for _, cell in at.dataframe[0].value.iterrows():
        params = dict(parse_qsl(cell["lab"].split("?", 1)[1]))
        cfg = RunConfig.from_params(params)
        assert (str(cfg.depth), cfg.activation) == (cell["x"], cell["y"])
        assert cfg.epochs == 1 and cfg.width == 16  # the sweep's base settings come along
    lab = open_page("app_pages/lab.py", **params)  # the last cell, opened as its link does
    clean(lab)
    assert lab.slider(key="depth").value == cfg.depth
    assert lab.selectbox(key="activation").value == cfg.activation
