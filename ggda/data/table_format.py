"""How a table file of one's own is read and which of its columns are one-hot encoded, and the size of
what :func:`ggda.data.load_table` makes of it. Needs pandas only (no torch, no relative imports), so the
workflow runs this file on its own when it is parsed, to plan the memory and run time of a table's jobs.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

#: suffix -> reader (pd.read_parquet looked up at call time: it needs an engine, pyarrow)
READERS = {".csv": lambda p: pd.read_csv(p), ".tsv": lambda p: pd.read_csv(p, sep="\t"),
           ".parquet": lambda p: pd.read_parquet(p)}


def default_categorical(frame: pd.DataFrame, columns: list) -> list:
    """The columns one-hot encoded when none are named: the non-numeric and the boolean ones."""
    return [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])]


def encoded_shape(path: str | os.PathLike, label: str, features: list[str] | None = None,
                  categorical: list[str] | None = None, test: str | os.PathLike | None = None,
                  test_fraction: float = 0.2) -> tuple[int, int, int] | None:
    """(training rows, numbers per example, classes) of what load_table makes of the table (arguments as
    there): a numeric column is one number, a categorical one one per distinct value in the file (an upper
    bound on the training part's), the classes the distinct labels. None where the file cannot be read
    (missing, not a table, Parquet without pyarrow) or lacks a named column: load_table says what is wrong."""
    path = Path(path)
    if path.suffix.lower() not in READERS or not path.is_file():
        return None
    try:
        frame = READERS[path.suffix.lower()](path)
    except (ImportError, ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return None
    columns = [c for c in frame.columns if c != label] if features is None else list(features)
    if label not in frame.columns or any(c not in frame.columns for c in columns) or \
            any(c not in columns for c in categorical or ()):
        return None
    if categorical is None:
        categorical = default_categorical(frame, columns)
    width = sum(max(1, frame[c].astype("string").nunique()) if c in categorical else 1 for c in columns)
    # the seeded split holds out ceil(test_fraction x rows), as scikit-learn's train_test_split does
    rows = len(frame) if test is not None else len(frame) - math.ceil(test_fraction * len(frame))
    return max(1, rows), max(1, width), max(2, frame[label].astype("string").nunique())
