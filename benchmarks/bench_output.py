"""Shared ending of the benchmark scripts: write the table atomically, then print the columns worth reading."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ggda._io import atomic_path


def write_and_show(df: pd.DataFrame, out: str | Path, columns: list[str], header: str) -> None:
    """Write ``df`` to the CSV ``out`` (temporary name, then rename) and print ``header`` and ``columns``."""
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 70,
                           "display.float_format", "{:.3g}".format):
        print(f"\n{header}, written to {out}\n")
        print(df[columns].to_string(index=False))
