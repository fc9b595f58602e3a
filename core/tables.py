"""Tidy result tables to and from the run store's JSON columns, for every family's results."""

from __future__ import annotations

import pandas as pd

TEXT_COLUMNS = ("split", "metric", "layer", "kind")


def table_to_dict(df: pd.DataFrame) -> dict[str, list]:
    """A tidy table as JSON-ready columns (the run store's payload)."""
    return {col: df[col].tolist() for col in df.columns}


def table_from_dict(columns: dict[str, list]) -> pd.DataFrame:
    """Stored columns back to a table; JSON's null (a NaN when stored) is NaN again."""
    df = pd.DataFrame(columns)
    for col in df.columns:
        if df[col].dtype == object and col not in TEXT_COLUMNS:
            df[col] = pd.to_numeric(df[col], errors="coerce")  # null -> NaN
    return df
