"""Pure parsers of the published file formats (no network, no writes).

Each parser raises `FormatError` naming the file and the problem when a file is corrupt, truncated or
of the wrong kind, so that a bad download or a wrong file under ``root`` is reported, not mis-read.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import os
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from .errors import FormatError

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------- IDX

# IDX type byte -> big-endian dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (MNIST format), gzip-compressed or plain (detected by the magic bytes).

    Layout: big-endian magic ``0x00 0x00 <type> <ndim>`` (0x00000803 = uint8 images (n, rows, cols),
    0x00000801 = uint8 labels (n,)), then one big-endian uint32 per dimension, then the data in C
    order. Types 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.

    ndim: if given, the number of dimensions the caller expects (3 for images, 1 for labels).
    Returns an array of shape given by the header, native byte order (uint8 stays uint8).
    Raises FormatError for a bad gzip stream, a wrong magic, or a data size that does not match the
    header (truncated or trailing bytes).
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise FormatError(f"{path}: corrupt or truncated gzip data ({exc})") from exc
    if len(raw) < 4:
        raise FormatError(f"{path}: not an IDX file (only {len(raw)} bytes, shorter than the header)")
    zero1, zero2, type_code, dims_n = raw[0], raw[1], raw[2], raw[3]
    if zero1 != 0 or zero2 != 0 or type_code not in _IDX_DTYPES or dims_n == 0:
        raise FormatError(
            f"{path}: not an IDX file (magic bytes {raw[:4].hex()}; expected 0000 0803 for images or "
            f"0000 0801 for labels); is it the right file, or an HTML error page?"
        )
    if ndim is not None and dims_n != ndim:
        raise FormatError(
            f"{path}: IDX magic {raw[:4].hex()} says {dims_n} dimension(s), expected {ndim} "
            f"(magic 0x0000080{ndim:x})"
        )
    header_len = 4 + 4 * dims_n
    if len(raw) < header_len:
        raise FormatError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header_len})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=dims_n, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise FormatError(
            f"{path}: IDX data {what}: header dims {dims} need {expected} bytes, file holds {actual}"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(dims)
    # astype copies into a writable array in native byte order.
    return arr.astype(dtype.newbyteorder("="))


# ------------------------------------------------------------------------------------------ CIFAR

# The CIFAR batches are pickles; only the globals numpy arrays need are allowed, so a malicious
# or wrong file cannot run code when unpickled.
_PICKLE_ALLOWED = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes in protocol-2 pickles; harmless
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # The published batches (numpy 1.x, Python 2) name numpy.core, which numpy 2 renamed _core.
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core"):]
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _unpickle(data: bytes) -> Any:
    return _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()


_CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_CIFAR_TEST = "test_batch"
_CIFAR_META = "batches.meta"


def read_cifar10_tarball(
    path: str | os.PathLike,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Read CIFAR-10 from ``cifar-10-python.tar.gz`` in memory (nothing is extracted to disk).

    Reads members ``cifar-10-batches-py/data_batch_1`` .. ``data_batch_5``, ``test_batch`` and
    ``batches.meta`` (pickles of dicts with bytes keys: ``b"data"`` (n, 3072) uint8 rows of
    1024 red, 1024 green, 1024 blue values, ``b"labels"`` list of n ints; meta ``b"label_names"``).

    Returns (x_train (n_train, 3, 32, 32) uint8, y_train (n_train,) int64, x_test (n_test, 3, 32, 32)
    uint8, y_test (n_test,) int64, class_names). The official file gives n_train = 50,000 and
    n_test = 10,000; smaller batches (test files) are accepted.
    Raises FormatError for a corrupt/truncated archive, missing members or inconsistent batches.
    """
    path = Path(path)
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            missing = [n for n in [*_CIFAR_TRAIN, _CIFAR_TEST, _CIFAR_META] if n not in members]
            if missing:
                raise FormatError(
                    f"{path}: not a CIFAR-10 python archive: members {missing} missing "
                    f"(expected under cifar-10-batches-py/)"
                )

            def load(name: str) -> Any:
                f = tar.extractfile(members[name])
                assert f is not None  # regular files always have a file object
                try:
                    return _unpickle(f.read())
                except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
                        AttributeError, IndexError) as exc:
                    raise FormatError(f"{path}: member {members[name].name} is not a valid "
                                      f"CIFAR batch pickle ({exc})") from exc

            meta = load(_CIFAR_META)
            train = [load(n) for n in _CIFAR_TRAIN]
            test = load(_CIFAR_TEST)
    except FormatError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise FormatError(f"{path}: corrupt or truncated tar.gz archive ({exc})") from exc

    try:
        class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"label_names"]]
    except (KeyError, TypeError) as exc:
        raise FormatError(f"{path}: batches.meta has no label_names") from exc

    def arrays(batch: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            data = np.asarray(batch[b"data"])
            labels = np.asarray(batch[b"labels"], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{path}: {name} lacks data/labels ({exc})") from exc
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise FormatError(f"{path}: {name} data is {data.dtype} {data.shape}, "
                              f"expected uint8 (n, 3072)")
        if labels.shape != (data.shape[0],):
            raise FormatError(f"{path}: {name} has {data.shape[0]} images "
                              f"but {labels.size} labels")
        if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise FormatError(f"{path}: {name} has labels outside 0..{len(class_names) - 1}")
        return data.reshape(-1, 3, 32, 32), labels

    parts = [arrays(b, n) for b, n in zip(train, _CIFAR_TRAIN)]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = arrays(test, _CIFAR_TEST)
    return x_train, y_train, x_test, y_test, class_names


# ------------------------------------------------------------------------------------------ HELOC

HELOC_LABEL = "RiskPerformance"
HELOC_CLASSES = ["Bad", "Good"]
"""Class index -> name: 0 = Bad (a payment 90+ days late within 2 years), 1 = Good."""

# FICO special values: -7 condition not met (e.g. no delinquency ever), -8 no usable/valid trades
# or inquiries, -9 no bureau record or no investigation.
HELOC_SPECIAL_VALUES = (-7.0, -8.0, -9.0)
_HELOC_LABEL_MAP = {"good": 1, "bad": 0, "1": 1, "0": 0, "1.0": 1, "0.0": 0}


def _sniff_separator(path: Path) -> str:
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        header = f.readline()
    return "\t" if header.count("\t") >= header.count(",") else ","


def read_heloc(path: str | os.PathLike) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Read a FICO HELOC table (OpenXAI's ``heloc-train.csv`` / ``heloc-test.csv`` or FICO's CSV).

    The separator is sniffed from the header line (tab as published on Dataverse, or comma).
    Label column ``RiskPerformance``: "Good"/"Bad" (any case) or 1/0; mapped to 1 = Good, 0 = Bad.
    Preparation (FICO's documented special values):
    - rows whose features are all -9 (no bureau record: nothing to learn from) are dropped;
    - the remaining -7 (condition not met), -8 (no usable trades) and -9 (no record) become NaN;
      they are imputed later with the training median, then standardised (in ``ggda.data``).
    Columns named ``Unnamed: k`` (an index written out by pandas) are dropped.

    Returns (X: DataFrame (n, d) float64 with a fresh 0..n-1 index, y: (n,) int64,
    feature_names: the d column names in file order). ``X.attrs["n_dropped_no_record"]`` counts the
    dropped all -9 rows. Raises FormatError naming the file for an unreadable table, a missing label
    column (listing the columns found), an unknown label or a non-numeric feature.
    """
    path = Path(path)
    sep = _sniff_separator(path)
    try:
        df = pd.read_csv(path, sep=sep, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"{path}: not a readable HELOC table ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    if HELOC_LABEL not in df.columns:
        raise FormatError(
            f"{path}: no label column {HELOC_LABEL!r}; columns found: {list(df.columns)} "
            f"(separator {sep!r}). Is this the HELOC file?"
        )
    index_cols = [c for c in df.columns if c.startswith("Unnamed:")]
    if index_cols:
        logger.info("%s: dropping index column(s) %s", path, index_cols)
        df = df.drop(columns=index_cols)

    labels = df[HELOC_LABEL]
    as_text = labels.astype("string").str.strip().str.lower()
    y_series = as_text.map(_HELOC_LABEL_MAP)
    bad = y_series.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise FormatError(
            f"{path}: unknown {HELOC_LABEL} value {labels.iloc[row]!r} in data row {row + 1} "
            f"(line {row + 2}); expected Good/Bad or 1/0"
        )
    feature_names = [c for c in df.columns if c != HELOC_LABEL]
    if not feature_names:
        raise FormatError(f"{path}: no feature columns besides {HELOC_LABEL}")
    X = df[feature_names]
    try:
        X = X.apply(pd.to_numeric, errors="raise").astype(np.float64)
    except (ValueError, TypeError) as exc:
        raise FormatError(f"{path}: non-numeric feature value ({exc})") from exc
    y = y_series.to_numpy(dtype=np.int64)

    no_record = (X == -9).all(axis=1).to_numpy()
    n_dropped = int(no_record.sum())
    if n_dropped:
        logger.info("%s: dropping %d row(s) with all features -9 (no bureau record)", path, n_dropped)
    X = X.loc[~no_record].reset_index(drop=True)
    y = y[~no_record]
    X = X.mask(X.isin(HELOC_SPECIAL_VALUES))
    X.attrs["n_dropped_no_record"] = n_dropped
    return X, y, feature_names


# ---------------------------------------------------------------------------------------- AFFAIRS

AFFAIRS_TARGET = "affairs"
"""Column of the yearly time spent in extramarital affairs (a non-negative float); the label is
whether it is positive."""
AFFAIRS_FEATURES = ["rate_marriage", "age", "yrs_married", "children", "religious", "educ",
                    "occupation", "occupation_husb"]
"""The 8 feature columns of statsmodels' ``fair.csv``, in file order."""
AFFAIRS_CLASSES = ["no affair", "affair"]
"""Class index -> name: 0 = ``affairs`` is 0, 1 = ``affairs`` > 0."""


def read_affairs(path: str | os.PathLike) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Read Fair's (1978) extramarital affairs table, statsmodels' ``fair.csv``.

    Comma-separated with a header naming at least the 8 columns of `AFFAIRS_FEATURES` and
    ``affairs``; other columns (e.g. a pandas index) are ignored. The official file has 6,366 data rows.
    Label: 1 (affair) if ``affairs`` > 0, else 0 (no affair).

    Returns (X: DataFrame (n, 8) float64 with a fresh 0..n-1 index, columns in file order,
    y: (n,) int64, feature_names: the 8 column names in file order). Raises FormatError naming the
    file for an unreadable or empty table, a missing column (listing the columns found), an empty
    or non-numeric value (naming column, row and line) or a negative ``affairs``.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, sep=",", encoding="utf-8-sig", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"{path}: not a readable affairs table ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    wanted = [*AFFAIRS_FEATURES, AFFAIRS_TARGET]
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise FormatError(
            f"{path}: column(s) {missing} missing; columns found: {list(df.columns)}. "
            f"Is this statsmodels' fair.csv (comma-separated, header {wanted})?"
        )
    if df.empty:
        raise FormatError(f"{path}: no data rows after the header")
    extra = [c for c in df.columns if c not in wanted]
    if extra:
        logger.info("%s: ignoring column(s) %s", path, extra)
    feature_names = [c for c in df.columns if c in AFFAIRS_FEATURES]  # file order

    values = {}
    for col in wanted:
        text = df[col].str.strip()
        num = pd.to_numeric(text, errors="coerce")
        bad = num.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            what = "empty" if text.iloc[row] == "" else "non-numeric"
            raise FormatError(
                f"{path}: {what} value {df[col].iloc[row]!r} in column {col!r}, data row {row + 1} "
                f"(line {row + 2}); every value must be a number"
            )
        values[col] = num.to_numpy(dtype=np.float64)
    affairs = values[AFFAIRS_TARGET]
    negative = np.flatnonzero(affairs < 0)
    if negative.size:
        row = int(negative[0])
        raise FormatError(
            f"{path}: negative {AFFAIRS_TARGET} value {float(affairs[row])!r} in data row {row + 1} "
            f"(line {row + 2}); it is a time spent in affairs, so it must be >= 0"
        )
    X = pd.DataFrame({c: values[c] for c in feature_names})
    y = (affairs > 0).astype(np.int64)
    return X, y, feature_names


# ------------------------------------------------------------------------------------------- QNLI

QNLI_CLASSES = ["entailment", "not_entailment"]
"""Class index -> name, the GLUE / Hugging Face convention: entailment = 0, not_entailment = 1."""
_QNLI_HEADER = ["index", "question", "sentence", "label"]


def read_qnli(path_or_fileobj: str | os.PathLike | IO[bytes] | IO[str],
              name: str | None = None) -> pd.DataFrame:
    """Read a labelled GLUE QNLI split (``train.tsv`` or ``dev.tsv``).

    Tab-separated, UTF-8, header ``index question sentence label``, parsed with quoting off
    (csv.QUOTE_NONE): the text holds literal unbalanced ``"`` characters, and default CSV quoting
    would merge rows (the real dev file gives 5,463 rows only with quoting off).
    path_or_fileobj: a path, or an open binary/text file (e.g. a member of QNLIv2.zip).
    name: how to name the source in errors (defaults to the path).

    Returns a DataFrame with columns index (int64), question (str), sentence (str), label (int64:
    entailment = 0, not_entailment = 1, the GLUE / Hugging Face convention).
    Raises FormatError naming the file and row for a wrong header, a row without 4 fields, a
    non-integer index or an unknown label (e.g. GLUE's unlabelled test.tsv).
    """
    if isinstance(path_or_fileobj, (str, os.PathLike)):
        src = name or str(path_or_fileobj)
        with open(path_or_fileobj, "rb") as f:
            return _read_qnli_stream(f, src)
    src = name or str(getattr(path_or_fileobj, "name", "<file object>"))
    return _read_qnli_stream(path_or_fileobj, src)


def _read_qnli_stream(f: IO[bytes] | IO[str], src: str) -> pd.DataFrame:
    text = f if isinstance(f, io.TextIOBase) else io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
    label_ids = {n: i for i, n in enumerate(QNLI_CLASSES)}
    index, questions, sentences, labels = [], [], [], []
    try:
        reader = csv.reader(text, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise FormatError(f"{src}: empty file, expected a QNLI header {_QNLI_HEADER}")
        if [h.strip() for h in header] != _QNLI_HEADER:
            raise FormatError(f"{src}: header is {header[:6]}, expected {_QNLI_HEADER} "
                              f"(tab-separated GLUE QNLI train/dev file)")
        for row in reader:
            line = reader.line_num
            if not row:
                continue  # a trailing blank line
            if len(row) != 4:
                raise FormatError(f"{src}: line {line} has {len(row)} tab-separated fields, expected 4")
            idx, question, sentence, label = row
            try:
                index.append(int(idx))
            except ValueError:
                raise FormatError(f"{src}: line {line}: index {idx!r} is not an integer") from None
            if label not in label_ids:
                raise FormatError(f"{src}: line {line} (index {idx}): unknown label {label!r}; "
                                  f"expected one of {QNLI_CLASSES}")
            questions.append(question)
            sentences.append(sentence)
            labels.append(label_ids[label])
    except UnicodeDecodeError as exc:
        raise FormatError(f"{src}: not UTF-8 text ({exc})") from exc
    except (EOFError, OSError, zlib.error) as exc:
        raise FormatError(f"{src}: corrupt or truncated ({exc})") from exc
    finally:
        if text is not f:
            text.detach()  # leave the caller's file object open
    if not index:
        raise FormatError(f"{src}: no data rows after the header")
    return pd.DataFrame({
        "index": np.asarray(index, dtype=np.int64),
        "question": pd.Series(questions, dtype=object),
        "sentence": pd.Series(sentences, dtype=object),
        "label": np.asarray(labels, dtype=np.int64),
    })
