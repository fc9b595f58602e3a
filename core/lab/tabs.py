"""The Training Lab's tabs and the charts each one draws, in order: one table for every view.

    for tab, charts in TABS.items():
        for chart in charts:
            chart.build(result, *chart.args(epoch, layer))

The Lab draws the open tab's charts (app_pages.kit.charts.open_tab); a chart given EPOCH
carries every epoch and scrubs in the browser from there; Compare's side-by-side layout draws
those marked `side_by_side` for each run (its overlays are its own, under the same tab names);
the benchmark builds them all; the page tests count them.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from core.lab import charts, histogram_charts, sharpness_chart, trace_charts
from core.lab.network_chart import network_diagram

EPOCH, LAYER = "<epoch>", "<layer>"   # stand for the page's scrubbed epoch and picked layer


class TabChart(NamedTuple):
    build: Callable                   # a core.lab.charts builder: build(result, *args)
    arguments: tuple = ()             # literal values, EPOCH or LAYER
    side_by_side: bool = True         # Compare's side-by-side layout draws it for each run
    when: Callable | None = None      # when(result): whether this run has its records (None: all)

    def applies(self, result) -> bool:
        return self.when is None or self.when(result)

    def args(self, epoch: int, layer: str | None = None) -> tuple:
        """The builder's arguments after the result, with the page's epoch and layer filled in."""
        return tuple(epoch if a == EPOCH else layer if a == LAYER else a for a in self.arguments)

    @property
    def needs_layer(self) -> bool:
        return LAYER in self.arguments


TABS: dict[str, tuple[TabChart, ...]] = {
    "Training": (TabChart(charts.loss_accuracy),
                 TabChart(network_diagram, (EPOCH,), side_by_side=False),
                 TabChart(sharpness_chart.sharpness, side_by_side=False,
                          when=sharpness_chart.measured),
                 TabChart(trace_charts.val_trace, side_by_side=False,
                          when=trace_charts.has_val_trace)),
    "Gradients": (
        TabChart(charts.grad_norm_heatmap),
        TabChart(charts.grad_norm_lines, ("weight_grad_norm", EPOCH), side_by_side=False),
        TabChart(charts.gradient_flow, (EPOCH,)),
        TabChart(charts.grad_norm_lines, ("out_grad_norm", EPOCH), side_by_side=False),
        TabChart(charts.layer_norms)),
    "Activations": (
        TabChart(charts.flat_dead, (EPOCH,)),
        TabChart(histogram_charts.histograms, ("activation", EPOCH)),
        TabChart(histogram_charts.histogram_over_time, ("activation", LAYER),
                 side_by_side=False),
        TabChart(trace_charts.unit_percentiles, (LAYER,), side_by_side=False,
                 when=trace_charts.has_unit_traces),
        TabChart(trace_charts.act_percentile, side_by_side=False,
                 when=trace_charts.has_act_percentiles)),
    "Weights & ratios": (
        TabChart(charts.ratios, (EPOCH,)),
        TabChart(histogram_charts.histograms, ("weight", EPOCH)),
        TabChart(histogram_charts.histograms, ("weight_grad", EPOCH), side_by_side=False)),
    "Clipping": (TabChart(charts.clipping),),
    "Batch norm": (TabChart(histogram_charts.batch_norm_shift, (EPOCH,)),),
}
