"""Two runs side by side: what differs in their settings and in what came out.

    from core.lab.compare import differences, outcomes
    differences(cfg_a, cfg_b)          # setting, A, B — only the settings that differ
    outcomes({"A": run_a, "B": run_b}) # one row per run: accuracy, gradient ratio, saturation, …
    outcome_rows(outcomes(...))        # the same, one row per outcome, as the page shows it

Pure tables for the Compare page, the CLI and notebooks; the overlay charts are in
`core.lab.compare_charts`.
"""

from __future__ import annotations

import math

import pandas as pd

from core.lab.config import FIELDS, RunConfig
from core.lab.metrics import DEPTH_RATIO, MOST_FLAT, most_flat, readable
from core.lab.result import RunResult


def differences(a: RunConfig, b: RunConfig) -> pd.DataFrame:
    """The settings where A and B differ, in the config's own order (empty when identical).

    A setting neither run uses (momentum of two Adam runs) is no difference; one that only one
    run uses reads "unused" on the other side."""
    inert = a.inert(), b.inert()

    def shown(cfg: RunConfig, unused: dict[str, str], name: str) -> str:
        return "unused" if name in unused else RunConfig.format_setting(name, getattr(cfg, name))

    rows = [(name, shown(a, inert[0], name), shown(b, inert[1], name))
            for name in FIELDS if getattr(a, name) != getattr(b, name)
            and not (name in inert[0] and name in inert[1])]
    return pd.DataFrame(rows, columns=["setting", "A", "B"])


def outcomes(results: dict[str, RunResult]) -> pd.DataFrame:
    """Headline outcomes per run, the numbers one compares first."""
    rows = []
    for label, r in results.items():
        rows.append({
            "run": label,
            "val_accuracy": r.final("val", "accuracy"),
            "test_accuracy": r.final("test", "accuracy"),
            "depth_ratio": r.depth_ratio(0),
            # Each run fills the column its activation has: saturation or inactive.
            **{f"max_{kind}": most_flat(r.end_flat()) if r.flat_metric == kind else math.nan
               for kind in MOST_FLAT},
            "diverged": r.diverged,
            "diverged_at_step": r.divergence["step"] if r.divergence else None,
            "seconds": r.timing["seconds"],
        })
    return pd.DataFrame(rows)


def layer_order(results: dict[str, RunResult]) -> list[str]:
    """All runs' layer names in network order (hidden1…, conv…, dense, output), for one x axis
    when the runs differ in depth."""
    names: list[str] = []
    for r in sorted(results.values(), key=lambda r: -len(r.layer_names)):
        for name in r.layer_names:
            if name not in names:
                names.append(name)
    # The output layer goes last even when a deeper run listed more hidden layers before it.
    return [n for n in names if n != "output"] + (["output"] if "output" in names else [])


def outcome_rows(table: pd.DataFrame) -> pd.DataFrame:
    """`outcomes` turned for reading: one row per outcome, one column per run, each value in
    words. Beside "Settings that differ" (setting, A, B) it reads the same way, and it fits half
    a page: one column per outcome ran past it and hid the last ones (seen in Chromium). A
    share no run has (inactive units of two sigmoid runs) is left out; "–" where one run lacks
    it (its activation has the other kind, or it diverged)."""
    def share(v: float) -> str:
        return f"{v:.0%}" if math.isfinite(v) else "–"

    rows = {"Val accuracy": [f"{v:.2%}" for v in table.val_accuracy],
            "Test accuracy": [f"{v:.2%}" for v in table.test_accuracy],
            f"{DEPTH_RATIO.label} ({DEPTH_RATIO.symbol})": [readable(v) for v in table.depth_ratio]}
    for kind, metric in MOST_FLAT.items():
        values = table[f"max_{kind}"]
        if values.notna().any():
            rows[metric.label] = [share(v) for v in values]
    rows["Diverged"] = ["no" if not diverged else "yes" if pd.isna(step)
                        else f"at step {int(step):,}"
                        for diverged, step in zip(table.diverged, table.diverged_at_step)]
    rows["Training time"] = [f"{s:.2f} s" for s in table.seconds]
    return pd.DataFrame([[name, *values] for name, values in rows.items()],
                        columns=["outcome", *table.run])
