"""A user's own table (CSV, TSV or Parquet) as a data set: one row per example, a label column, numeric
and categorical feature columns, missing values allowed.

Categorical columns (non-numeric ones, or those named) are one-hot encoded with the categories seen in
the training part (a category seen only in the test part, or a missing value, sets none of its columns);
numeric missing values are imputed with the training median and every feature is standardised on the
training part (as for the registered tabular data sets, :func:`ggda.data.assemble`). Labels of any type
become class indices in sorted order of their values.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, FormatError
from .raw import RawData
from .table_format import READERS, default_categorical


def read_table(path: str | os.PathLike, what: str = "path") -> pd.DataFrame:
    """The table at ``path`` (.csv, .tsv or .parquet), or a DataError naming the file and the problem."""
    path = Path(path)
    if path.suffix.lower() not in READERS:
        raise DataError(f"{what}: {path} is not a .csv, .tsv or .parquet file")
    if not path.is_file():
        raise DataError(f"{what}: {path} does not exist (relative paths are read from the working directory "
                        f"{Path.cwd()})")
    try:
        frame = READERS[path.suffix.lower()](path)
    except ImportError as err:
        raise DataError(f"{what}: reading {path} needs a Parquet engine: pip install pyarrow ({err})") from None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise FormatError(f"{what}: {path} could not be parsed as a table: {str(err).splitlines()[0]}") from None
    if frame.empty:
        raise FormatError(f"{what}: {path} holds no rows")
    return frame


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of the row indices (class-stratified where every class has two rows or more)."""
    from sklearn.model_selection import train_test_split

    counts = np.unique(y, return_counts=True)[1]
    n_test = round(fraction * len(y))
    stratify = y if counts.min() >= 2 and len(counts) <= min(n_test, len(y) - n_test) else None
    tr, te = train_test_split(np.arange(len(y)), test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(tr), np.sort(te)


def _encode(train: pd.DataFrame, test: pd.DataFrame, categorical: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Feature matrices (float64, NaN for missing numbers) and their names: numeric columns as they are,
    categorical ones one-hot over the categories of the training part."""
    blocks_tr, blocks_te, names = [], [], []
    for col in train.columns:
        if col in categorical:
            values_tr, values_te = train[col].astype("string"), test[col].astype("string")
            for cat in sorted(values_tr.dropna().unique()):
                blocks_tr.append((values_tr == cat).fillna(False).to_numpy(dtype=np.float64))
                blocks_te.append((values_te == cat).fillna(False).to_numpy(dtype=np.float64))
                names.append(f"{col}={cat}")
        else:
            blocks_tr.append(pd.to_numeric(train[col]).to_numpy(dtype=np.float64))
            blocks_te.append(pd.to_numeric(test[col]).to_numpy(dtype=np.float64))
            names.append(str(col))
    if not names:
        raise DataError("the table has no feature columns besides the label")
    return np.stack(blocks_tr, axis=1), np.stack(blocks_te, axis=1), names


def read_table_raw(path: str | os.PathLike, label: str, features: list[str] | None = None,
                   categorical: list[str] | None = None, test: str | os.PathLike | None = None,
                   test_fraction: float = 0.2, split_seed: int = 0) -> RawData:
    """The table as :class:`RawData` (see :func:`load_table` for the arguments)."""
    frame = read_table(path, "path")
    test_frame = read_table(test, "test") if test is not None else None
    columns = [c for c in frame.columns if c != label] if features is None else list(features)
    for where, table in (("path", frame), ("test", test_frame)):
        if table is None:
            continue
        missing = [c for c in [label, *columns] if c not in table.columns]
        if missing:
            raise DataError(f"{where}: column(s) {missing} not in {path if where == 'path' else test} (its columns: "
                            f"{', '.join(map(str, table.columns))})")
    if label in columns:
        raise DataError(f"features: the label column {label!r} cannot also be a feature")
    if frame[label].isna().any():
        raise DataError(f"label: {int(frame[label].isna().sum())} row(s) of {path} have no {label!r}: drop them")
    if test_frame is None:
        if not 0 < test_fraction < 1:
            raise DataError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        classes_all = np.unique(frame[label].astype("string").to_numpy())
        codes = np.searchsorted(classes_all, frame[label].astype("string").to_numpy())
        tr, te = _split(codes, test_fraction, split_seed)
        train_frame, test_frame = frame.iloc[tr], frame.iloc[te]
    else:
        if test_frame[label].isna().any():
            raise DataError(f"label: rows of {test} have no {label!r}: drop them")
        train_frame = frame
    if categorical is None:
        categorical = default_categorical(frame, columns)
    else:
        unknown = [c for c in categorical if c not in columns]
        if unknown:
            raise DataError(f"categorical: {unknown} are not feature columns ({', '.join(map(str, columns))})")
    for c in columns:
        if c not in categorical:
            bad = pd.to_numeric(frame[c], errors="coerce").isna() & frame[c].notna()
            if bad.any():
                raise DataError(f"column {c!r} holds non-numbers (e.g. {frame[c][bad].iloc[0]!r}) although it "
                                f"is not categorical: list it under categorical")
    x_train, x_test, names = _encode(train_frame[columns], test_frame[columns], categorical)
    classes = sorted(train_frame[label].astype("string").unique())
    unseen = sorted(set(test_frame[label].astype("string").unique()) - set(classes))
    if unseen:
        raise DataError(f"label: the test part holds class(es) {unseen} that the training part does not")
    if len(classes) < 2:
        raise DataError(f"label: {label!r} has a single class {classes} in the training part; a classifier needs two")
    index = {c: i for i, c in enumerate(classes)}
    y_train = train_frame[label].astype("string").map(index).to_numpy(dtype=np.int64)
    y_test = test_frame[label].astype("string").map(index).to_numpy(dtype=np.int64)
    files = {Path(p).name: {"path": str(p), "sha256": _sha256(Path(p)), "md5": None, "checksum_verified": None}
             for p in [path, test] if p is not None}
    meta = {"source": f"table {path}" + (f" (test: {test})" if test else f" (seeded split, test_fraction "
                                                                        f"{test_fraction}, split_seed {split_seed})"),
            "files": files, "label": label, "categorical": list(categorical)}
    return RawData(x_train, y_train, x_test, y_test, classes, names, meta)


def load_table(path: str | os.PathLike, label: str, features: list[str] | None = None,
               categorical: list[str] | None = None, test: str | os.PathLike | None = None,
               test_fraction: float = 0.2, split_seed: int = 0, name: str | None = None,
               n_train: int | None = None, n_test: int | None = None, noise_rate: float = 0.0, seed: int = 0):
    """A DataBundle (kind "tabular") from a table file (module docstring).

    path: .csv, .tsv or .parquet file, one row per example (Parquet needs pyarrow).
    label: the label column (any values; classes in sorted order of their string form).
    features: the feature columns (default: every other column).
    categorical: the columns to one-hot encode (default: the non-numeric and boolean ones).
    test: a second file with the same columns as the test split; default a seeded split of ``path``
        holding ``test_fraction`` of its rows (class-stratified, ``split_seed``).
    name: the data set's name (default the file name without suffix).
    n_train, n_test, noise_rate, seed: as in :func:`ggda.data.load`.
    """
    from . import assemble

    raw = read_table_raw(path, label, features, categorical, test, test_fraction, split_seed)
    return assemble(name or Path(path).stem, "tabular", len(raw.class_names), raw, n_train=n_train,
                    n_test=n_test, noise_rate=noise_rate, seed=seed)
