"""Chart builders for the Initialization page: `core.init.probe`'s tables in, Altair charts out.

No Streamlit, no training. The page draws them with `st.altair_chart(chart, on_select=…)`:

    profile(p.layers)                           measured (solid) and mean-field (dashed) per layer
    profile(p.layers, ("grad_factor",))         the per-layer gradient factor beside χ
    phase_heatmap(d.cells, d.critical)          log10 ‖δ_1‖/‖δ_L‖ over (σ_w², σ_b²); click = "cell"
    spectrum(spectra(cfg))                      Jacobian singular values, one panel per setting

`phase_heatmap` declares a point selection named "cell" over sigma_w2 and sigma_b2: with
`st.altair_chart(chart, on_select="rerun")` the page reads the clicked cell from
`event.selection["cell"]` (a list with one {"sigma_w2": …, "sigma_b2": …}).

Every table may carry a `setting` column (several probes concatenated); the charts colour by it.
Non-finite values and, on log scales, values ≤ 0 are dropped (see `chart_parts.finite`).
"""

from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd

from core.chart_parts import ALERT, LOG_AXIS, MUTED, PANEL_H, PANEL_W, SPLITS, ZERO, finite, \
    no_data, rule, source, tips
from core.init.probe import METRICS

SOURCES = ("measured", "mean-field theory")
ONE = "#4c9f70"        # the reference at 1: critical χ, isometric singular values
PHASE_SCHEME = "blueorange"   # diverging: vanishing blue, exploding orange, 0 (ratio 1) white


def _setting_color(df: pd.DataFrame) -> alt.Color | alt.ColorValue:
    if "setting" in df.columns and df["setting"].nunique() > 1:
        return alt.Color("setting:N", title="Setting", sort=list(dict.fromkeys(df["setting"])),
                         legend=alt.Legend(orient="bottom"))
    return alt.ColorValue(SPLITS["train"])


# --- per-layer profile ------------------------------------------------------------------------
def profile(layers: pd.DataFrame, metrics=("activation_std", "preact_grad_norm"), *,
            title: str = "At initialisation, layer by layer: measured (solid) and mean-field "
                         "theory (dashed)") -> alt.HConcatChart | alt.LayerChart | alt.Chart:
    """Each metric against the hidden layer on a log axis, the prediction dashed over it.

    On a log axis a geometric fall or growth is a straight line whose slope is the per-layer
    factor: theory's √χ₁ for the gradient norm.
    """
    panels = []
    for metric in metrics:
        label = METRICS.get(metric, metric)
        d = layers[layers["metric"] == metric]
        long = pd.concat([d.assign(source=SOURCES[0]),
                          d.assign(source=SOURCES[1], value=d["predicted"])], ignore_index=True)
        long = finite(long.drop(columns=["predicted"]), ["value"], positive=True)
        if long.empty:
            panels.append(no_data(label))
            continue
        if "setting" not in long.columns:
            long = long.assign(setting="this network")
        color = _setting_color(long)
        # The legend below the panels: at the right it went past a laptop's page (seen in
        # Chromium at 1280 px).
        dash = alt.StrokeDash("source:N", title=None, legend=alt.Legend(orient="bottom"),
                              scale=alt.Scale(domain=list(SOURCES), range=[[1, 0], [6, 4]]))
        base = alt.Chart(source(long)).encode(
            x=alt.X("layer:Q", title="Hidden layer (input → output)",
                    axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("value:Q", title=f"{label} (log)", scale=alt.Scale(type="log"),
                    axis=LOG_AXIS),
            color=color,
            tooltip=tips("setting:N", "name:N", "source:N", alt.Tooltip("value:Q", format=".4g")))
        lines = base.mark_line(strokeWidth=1.8).encode(strokeDash=dash,
                                                      detail=alt.Detail("setting:N"))
        few = long["layer"].nunique() <= 40   # points only where they do not become a smear
        layer_list = [lines]
        if few:
            layer_list.append(base.transform_filter(alt.datum.source == SOURCES[0])
                              .mark_point(filled=True, size=28))
        if metric == "grad_factor":
            layer_list = [*rule("y", "value", 1.0, "1: critical (χ₁ = 1)", ONE), *layer_list]
        panels.append(alt.layer(*layer_list, title=label, width=PANEL_W, height=PANEL_H))
    if len(panels) == 1:
        return panels[0].properties(title=title)
    return alt.hconcat(*panels, title=title)


# --- phase diagram ----------------------------------------------------------------------------
def _edges(values: np.ndarray, log: bool) -> tuple[dict, dict]:
    """Cell edges half way to each neighbour (geometric half way on a log axis)."""
    v = np.unique(values)
    t = np.log(v) if log else v
    if len(t) > 1:
        mid = (t[:-1] + t[1:]) / 2
        lo = np.concatenate([[t[0] - (mid[0] - t[0])], mid])
        hi = np.concatenate([mid, [t[-1] + (t[-1] - mid[-1])]])
    else:
        half = abs(t[0]) * 0.1 if t[0] != 0 else 0.05
        lo, hi = t - half, t + half
    back = np.exp if log else (lambda a: a)
    return dict(zip(v, back(lo))), dict(zip(v, back(hi)))


def _looks_geometric(v: np.ndarray) -> bool:
    v = np.unique(v)
    if len(v) < 3 or (v <= 0).any():
        return False
    return np.ptp(np.diff(np.log(v))) < 1e-6 * np.log(v[-1] / v[0])


def phase_heatmap(cells: pd.DataFrame, critical: pd.DataFrame | None = None, *,
                  current: tuple[float, float] | None = None, log_w: bool | None = None,
                  title: str = "Phase diagram: first/last layer gradient ratio ‖δ₁‖/‖δ_L‖ "
                               "(log10; blue vanishes, orange explodes)") -> alt.FacetChart:
    """Predicted and measured log10 ‖δ₁‖/‖δ_L‖ side by side over (σ_w², σ_b²).

    The critical line (χ₁ = 1) is drawn over both, `current` (σ_w², σ_b²) is ringed, and a
    click selects a cell: the point selection "cell" over sigma_w2 and sigma_b2.
    """
    if cells is None or cells.empty:
        return no_data(title)
    log_w = _looks_geometric(cells["sigma_w2"].to_numpy()) if log_w is None else log_w
    w_lo, w_hi = _edges(cells["sigma_w2"].to_numpy(), log_w)
    b_lo, b_hi = _edges(cells["sigma_b2"].to_numpy(), False)
    base = cells.assign(w0=cells["sigma_w2"].map(w_lo), w1=cells["sigma_w2"].map(w_hi),
                        b0=cells["sigma_b2"].map(b_lo), b1=cells["sigma_b2"].map(b_hi))
    panels = {"mean-field prediction": "log10_predicted", "measured": "log10_measured"}
    heat = pd.concat([base.assign(panel=p, log10_ratio=base[col], ratio=10.0 ** base[col])
                      for p, col in panels.items()], ignore_index=True)
    heat = finite(heat[["panel", "sigma_w2", "sigma_b2", "w0", "w1", "b0", "b1", "log10_ratio",
                        "ratio", "chi1", "phase"]], ["log10_ratio"]).assign(kind="cell")
    if heat.empty:
        return no_data(title, "no finite gradient ratio in any cell")
    # Symmetric about 0 (ratio 1), at most ±10 decades so that one runaway cell does not wash
    # out the rest (beyond, the colour saturates).
    m = min(10.0, max(1.0, float(np.abs(heat["log10_ratio"]).max())))
    x_dom = [float(min(w_lo.values())), float(max(w_hi.values()))]
    y_dom = [float(min(b_lo.values())), float(max(b_hi.values()))]
    parts = [heat]
    line = pd.DataFrame()
    if critical is not None and len(critical):
        line = finite(critical, ["sigma_w2", "sigma_b2"])
        line = line[(line["sigma_w2"] >= x_dom[0]) & (line["sigma_w2"] <= x_dom[1])]
        parts += [line.assign(panel=p, kind="critical", label="critical line χ₁ = 1")
                  for p in panels]
    if current is not None:
        parts += [pd.DataFrame({"panel": list(panels), "sigma_w2": float(current[0]),
                                "sigma_b2": float(current[1]), "kind": "current",
                                "label": "this network"})]
    data = pd.concat(parts, ignore_index=True)
    # One table for every layer (a facet needs that); each kind's rows leave the others'
    # columns empty, and a spec without nulls is cleaner to ship.
    text = [c for c in ("panel", "phase", "kind", "label") if c in data]
    data = data.fillna({c: "" for c in text}).fillna(0.0)

    cell = alt.selection_point(name="cell", fields=["sigma_w2", "sigma_b2"], on="click",
                               clear="dblclick")
    x = alt.X("w0:Q", title="σ_w² (weight variance × fan-in)",
              scale=alt.Scale(domain=x_dom, nice=False, type="log" if log_w else "linear"))
    y = alt.Y("b0:Q", title="σ_b² (bias variance)", scale=alt.Scale(domain=y_dom, nice=False))
    rects = alt.Chart().transform_filter(alt.datum.kind == "cell").mark_rect(
        stroke="#222222").encode(
        x=x, x2=alt.X2("w1:Q"), y=y, y2=alt.Y2("b1:Q"),
        # The legend below: at the right, two panels and it went past a laptop's page.
        color=alt.Color("log10_ratio:Q", title="log10 ‖δ₁‖/‖δ_L‖", scale=alt.Scale(
            scheme=PHASE_SCHEME, domain=[-m, m], domainMid=0, clamp=True),
                        legend=alt.Legend(orient="bottom", gradientLength=220)),
        strokeWidth=alt.condition(cell, alt.value(2.5), alt.value(0), empty=False),
        tooltip=tips(alt.Tooltip("sigma_w2:Q", title="σ_w²", format=".3g"),
                     alt.Tooltip("sigma_b2:Q", title="σ_b²", format=".3g"),
                     alt.Tooltip("ratio:Q", title="‖δ₁‖/‖δ_L‖", format=".3g"),
                     alt.Tooltip("chi1:Q", title="χ₁ (theory)", format=".4f"),
                     alt.Tooltip("phase:N", title="phase (theory)")),
    ).add_params(cell)
    layers = [rects]
    if len(line):
        layers.append(alt.Chart().transform_filter(alt.datum.kind == "critical")
                      .mark_line(color="#222222", strokeDash=[5, 3], strokeWidth=2, clip=True)
                      .encode(x=alt.X("sigma_w2:Q"), y=alt.Y("sigma_b2:Q"),
                              order=alt.Order("sigma_b2:Q"),
                              tooltip=tips("label:N", alt.Tooltip("sigma_w2:Q", format=".4g"),
                                           alt.Tooltip("sigma_b2:Q", format=".4g"))))
    if current is not None:
        layers.append(alt.Chart().transform_filter(alt.datum.kind == "current")
                      .mark_point(shape="circle", size=160, strokeWidth=2.5, color=ALERT,
                                  clip=True)
                      .encode(x=alt.X("sigma_w2:Q"), y=alt.Y("sigma_b2:Q"),
                              tooltip=tips("label:N", alt.Tooltip("sigma_w2:Q", format=".4g"),
                                           alt.Tooltip("sigma_b2:Q", format=".4g"))))
    return alt.layer(*layers, data=source(data), width=PANEL_W, height=PANEL_H).facet(
        column=alt.Column("panel:N", title=None, sort=list(panels)), title=title)


# --- Jacobian spectrum ------------------------------------------------------------------------
N_BINS = 40


def spectrum(table: pd.DataFrame, *, relative: bool = False,
             title: str | None = None) -> alt.VConcatChart | alt.Chart:
    """The singular values of J = ∂x_L/∂x_1, one histogram per setting on a shared log axis.

    A rule marks 1 (isometry) and, where theory applies, the predicted RMS singular value.
    `relative` divides each setting's values by their RMS: the shape without the overall scale.
    Values below float64's resolution (`zero`) cannot sit on a log axis; each panel counts them.
    """
    title = title or ("Singular values of the input–output Jacobian at initialisation"
                      + (" (÷ RMS)" if relative else ""))
    if table is None or table.empty:
        return no_data(title, "no Jacobian: it needs depth ≥ 2 and finite values")
    df = table if "setting" in table.columns else table.assign(setting="this network")
    order = list(dict.fromkeys(df["setting"]))
    scaled = []
    for name in order:
        d = df[df["setting"] == name]
        s = d["singular_value"].to_numpy(dtype=float)
        rms = float(np.sqrt(np.mean(s ** 2))) if len(s) else math.nan
        div = rms if relative and rms > 0 else 1.0
        pred = d["predicted_rms"].iloc[0] / div if "predicted_rms" in d and len(d) else math.nan
        scaled.append((name, d.assign(x=s / div), int(d["zero"].sum()), len(d), pred))
    nz = np.concatenate([d.loc[~d["zero"].astype(bool), "x"].to_numpy() for _, d, *_ in scaled])
    nz = nz[np.isfinite(nz) & (nz > 0)]
    if not len(nz):
        return no_data(title, "every singular value is numerically zero")
    lo = math.floor(min(np.log10(nz).min(), -0.5))
    hi = math.ceil(max(np.log10(nz).max(), 0.5))
    edges = np.linspace(lo, hi, N_BINS + 1)
    x_dom = [10.0 ** lo, 10.0 ** hi]
    panels = []
    for name, d, zeros, total, pred in scaled:
        v = d.loc[~d["zero"].astype(bool), "x"].to_numpy(dtype=float)
        v = v[np.isfinite(v) & (v > 0)]
        counts, _ = np.histogram(np.log10(v), bins=edges)
        bins = pd.DataFrame({"lo": 10.0 ** edges[:-1], "hi": 10.0 ** edges[1:],
                             "share": counts / max(total, 1) * 100, "count": counts})
        bins = bins[bins["count"] > 0]
        label = name + (f" — {zeros} of {total} numerically zero" if zeros else "")
        bars = alt.Chart(bins).mark_rect(color=SPLITS["train"], opacity=0.85).encode(
            x=alt.X("lo:Q", title="Singular value" + (" ÷ RMS" if relative else "") + " (log)",
                    scale=alt.Scale(type="log", domain=x_dom, nice=False), axis=LOG_AXIS),
            x2=alt.X2("hi:Q"), y=alt.Y("share:Q", title="% of values"), y2=ZERO,
            tooltip=tips(alt.Tooltip("lo:Q", format=".3g"), alt.Tooltip("hi:Q", format=".3g"),
                         "count:Q", alt.Tooltip("share:Q", title="%", format=".1f")))
        # The rules only, their words in the subtitle: a label in the plot sat on the bars.
        layers = [bars, rule("x", "lo", 1.0, "1: isometry", ONE)[0]]
        if np.isfinite(pred) and pred > 0:
            layers.append(rule("x", "lo", float(pred), "theory's RMS", MUTED)[0])
        panels.append(alt.layer(*layers, title=label, width=2 * PANEL_W, height=PANEL_H // 2))
    title = alt.TitleParams(title, subtitle=SPECTRUM_RULES)
    if len(panels) == 1:
        return panels[0].properties(title=title)
    return alt.vconcat(*panels, title=title)


SPECTRUM_RULES = "Dashed lines: green at 1 (isometry), grey at theory's RMS singular value"
