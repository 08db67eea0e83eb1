"""What the benchmark scripts share: their common options and start, and their ending (write the table
atomically, then print the columns worth reading)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd
import torch

from ggda._io import atomic_path


def parse_args(ap: argparse.ArgumentParser, argv, out: str, repeats_help: str = "timed calls per measurement (median)"):
    """Add ``--repeats``, ``--threads`` and ``--out`` (default ``out``) to ``ap``, parse ``argv``, set up logging
    and torch's thread count; the parsed arguments."""
    ap.add_argument("--repeats", type=int, default=3, help=repeats_help)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--out", default=out, help="the CSV written")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def write_and_show(df: pd.DataFrame, out: str | Path, columns: list[str], header: str) -> None:
    """Write ``df`` to the CSV ``out`` (temporary name, then rename) and print ``header`` and ``columns``."""
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 70,
                           "display.float_format", "{:.3g}".format):
        print(f"\n{header}, written to {out}\n")
        print(df[columns].to_string(index=False))
