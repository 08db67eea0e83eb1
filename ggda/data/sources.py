"""Fetch functions of the real data sets: find or download the published files, parse them.

Each ``fetch_<name>(root, download, progress)`` returns a `RawData`. ``root`` is the folder that holds
(or will receive) the files exactly as published:

- files present in ``root`` are used as they are, with no network access and no writes to ``root``;
- files missing and ``download=True``: downloaded into ``root`` (md5-checked where published);
- files missing and ``download=False``: DataError naming the files, ``root`` and the URLs.

Files already in ``root`` whose md5 differs from the published one (e.g. a user's subset) are
accepted only if they parse consistently; a warning is logged and ``checksum_verified`` is False in
``meta``. The URL/md5 tables below are module-level so that tests (or users behind a mirror) can
replace them.
"""

from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import download as _dl
from .bundled import SPLIT_DESCRIPTION, fixed_split
from .errors import DataError, FormatError
from .parsers import (
    AFFAIRS_CLASSES,
    HELOC_CLASSES,
    QNLI_CLASSES,
    read_affairs,
    read_cifar10_tarball,
    read_heloc,
    read_idx,
    read_qnli,
)
from .raw import RawData

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- URL / checksum tables
# One dict per data set: file name in root -> {"urls": mirrors tried in order, "md5": published md5
# or None when the publisher gives none}.

MNIST_MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's first mirror
    "http://yann.lecun.com/exdb/mnist/",
]
MNIST_FILES: dict[str, dict[str, Any]] = {
    name: {"urls": [m + name for m in MNIST_MIRRORS], "md5": md5}
    for name, md5 in [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ]
}

CIFAR10_FILES: dict[str, dict[str, Any]] = {
    "cifar-10-python.tar.gz": {
        "urls": ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"],
        "md5": "c58f30108f718f92721af3b95e74349a",
    },
}

# OpenXAI's HELOC split on Harvard Dataverse (tab-separated as served); names as OpenXAI stores them.
HELOC_FILES: dict[str, dict[str, Any]] = {
    "heloc-train.csv": {"urls": ["https://dataverse.harvard.edu/api/access/datafile/8550942"],
                        "md5": None},
    "heloc-test.csv": {"urls": ["https://dataverse.harvard.edu/api/access/datafile/8550943"],
                       "md5": None},
}

# Fair (1978) as shipped with statsmodels, pinned to a release tag (the file at a tag never changes).
# statsmodels publishes no checksum: the md5 is that of the file at this tag (sha256
# fd5f3f094a34fc35ca346a14c359e046ed27843038d6921efcd50a7ab21f6af0), so downloads are verified.
AFFAIRS_FILES: dict[str, dict[str, Any]] = {
    "fair.csv": {
        "urls": ["https://raw.githubusercontent.com/statsmodels/statsmodels/v0.14.4/"
                 "statsmodels/datasets/fair/fair.csv"],
        "md5": "614e1af225cd0261334dd2879db3a82f",
    },
}

QNLI_FILES: dict[str, dict[str, Any]] = {
    "QNLIv2.zip": {"urls": ["https://dl.fbaipublicfiles.com/glue/data/QNLIv2.zip"], "md5": None},
}
QNLI_TRAIN_MEMBER = "QNLI/train.tsv"
QNLI_TEST_MEMBER = "QNLI/dev.tsv"  # GLUE's test split has no labels, so dev serves as test


# --------------------------------------------------------------------------------------- helpers


@dataclass
class _LocalFile:
    path: Path
    md5: str
    sha256: str
    checksum_verified: bool | None
    downloaded: bool
    urls: list[str]

    def record(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "md5": self.md5,
                "checksum_verified": self.checksum_verified, "downloaded": self.downloaded,
                "urls": list(self.urls)}


#: How a caller allows downloads, in the terms of both ways in: the Python argument and the workflow's key.
DOWNLOAD_SWITCH = "download=True; in the workflow config, the data set's download: true"


def _missing_error(dataset: str, root: Path, table: dict[str, dict[str, Any]],
                   missing: list[str], extra: str = "") -> DataError:
    urls = "; ".join(f"{n}: {' or '.join(table[n]['urls'])}" for n in missing if n in table)
    return DataError(
        f"{dataset}: file(s) {', '.join(missing)} not found in {root}{extra}. Allow downloading "
        f"({DOWNLOAD_SWITCH}) to fetch them into {root}, or get them by hand ({urls}) and put them there."
    )


def _ensure(dataset: str, table: dict[str, dict[str, Any]], root: Path, download: bool,
            progress: bool) -> dict[str, _LocalFile]:
    """Locate (or download) every file of `table` under `root`; hash each once."""
    root = Path(root)
    missing = [n for n in table if not (root / n).is_file()]
    if missing and not download:
        raise _missing_error(dataset, root, table, missing)
    out: dict[str, _LocalFile] = {}
    for name, spec in table.items():
        path = root / name
        fetched = name in missing
        if fetched:
            _dl.download(spec["urls"], path, md5=spec["md5"], progress=progress)
        md5, sha = _dl.file_digests(path)
        expected = spec["md5"]
        if expected is None:
            verified = None
        else:
            verified = md5 == expected.lower()
            if not verified:
                # Only pre-existing files get here: download() already rejects a bad md5.
                logger.warning(
                    "%s: %s has md5 %s, not the published %s (a subset or a modified copy?); "
                    "it is used only if it parses consistently", dataset, path, md5, expected)
        out[name] = _LocalFile(path, md5, sha, verified, fetched, list(spec["urls"]))
    return out


def _meta(source: str, root: Path, files: dict[str, _LocalFile], **extra: Any) -> dict[str, Any]:
    return {"source": source, "root": str(root),
            "files": {n: f.record() for n, f in files.items()}, **extra}


def _unverified_hint(files: dict[str, _LocalFile]) -> str:
    bad = [str(f.path) for f in files.values() if f.checksum_verified is False]
    if not bad:
        return ""
    return (f" The md5 of {', '.join(bad)} also differs from the published one: delete the files "
            f"and rerun with downloading allowed ({DOWNLOAD_SWITCH}) to get the official ones.")


# ----------------------------------------------------------------------------------------- MNIST


def _read_mnist_pair(images: _LocalFile, labels: _LocalFile,
                     hint: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        x = read_idx(images.path, ndim=3)
        y = read_idx(labels.path, ndim=1)
    except FormatError as exc:
        raise FormatError(f"{exc}.{hint}") from exc
    if x.shape[1:] != (28, 28) or x.dtype != np.uint8:
        raise FormatError(f"{images.path}: images are {x.dtype} {x.shape[1:]}, expected uint8 "
                          f"28x28.{hint}")
    if len(x) != len(y):
        raise FormatError(f"{images.path} holds {len(x)} images but {labels.path} holds {len(y)} "
                          f"labels: the two files do not belong together.{hint}")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise FormatError(f"{labels.path}: labels outside 0..9.{hint}")
    return x[:, None, :, :], y.astype(np.int64)


def fetch_mnist(root: str | os.PathLike, download: bool, progress: bool = True) -> RawData:
    """MNIST from the four IDX gzip files in `root` (downloaded from `MNIST_MIRRORS` if allowed).

    Returns RawData with x_train (n_train, 1, 28, 28) uint8 (0 = background, 255 = ink; 60,000
    officially), y_train (n_train,) int64, x_test (10,000, 1, 28, 28) uint8, y_test int64,
    class_names "0".."9". Downloads must match the published md5 (else ChecksumError); files already
    in `root` with another md5 are used if images and labels agree in count (warning,
    ``checksum_verified`` False).
    """
    root = Path(root)
    files = _ensure("mnist", MNIST_FILES, root, download, progress)
    hint = _unverified_hint(files)
    x_train, y_train = _read_mnist_pair(files["train-images-idx3-ubyte.gz"],
                                        files["train-labels-idx1-ubyte.gz"], hint)
    x_test, y_test = _read_mnist_pair(files["t10k-images-idx3-ubyte.gz"],
                                      files["t10k-labels-idx1-ubyte.gz"], hint)
    logger.info("mnist: %d train, %d test images from %s", len(x_train), len(x_test), root)
    return RawData(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        class_names=[str(d) for d in range(10)], feature_names=None,
        meta=_meta("MNIST (LeCun, Cortes & Burges), IDX files", root, files),
    )


# --------------------------------------------------------------------------------------- CIFAR-10


def fetch_cifar10(root: str | os.PathLike, download: bool, progress: bool = True) -> RawData:
    """CIFAR-10 from ``cifar-10-python.tar.gz`` in `root` (read in memory, never extracted).

    Returns RawData with x_train (50,000, 3, 32, 32) uint8 RGB channels first, y_train int64,
    x_test (10,000, 3, 32, 32) uint8, y_test int64, class_names from ``batches.meta`` (airplane ..
    truck). Same checksum policy as `fetch_mnist`.
    """
    root = Path(root)
    files = _ensure("cifar10", CIFAR10_FILES, root, download, progress)
    f = files["cifar-10-python.tar.gz"]
    try:
        x_train, y_train, x_test, y_test, class_names = read_cifar10_tarball(f.path)
    except FormatError as exc:
        raise FormatError(f"{exc}.{_unverified_hint(files)}") from exc
    logger.info("cifar10: %d train, %d test images from %s", len(x_train), len(x_test), root)
    return RawData(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        class_names=class_names, feature_names=None,
        meta=_meta("CIFAR-10 (Krizhevsky 2009), python tarball", root, files),
    )


# ------------------------------------------------------------------------------------------ HELOC


def fetch_heloc(root: str | os.PathLike, download: bool, progress: bool = True) -> RawData:
    """FICO HELOC as split by OpenXAI: ``heloc-train.csv`` and ``heloc-test.csv`` in `root`.

    Returns RawData with x_train (n_train, d) float64 (NaN where FICO's special values -7/-8/-9
    stood; rows with all features -9 dropped, see `read_heloc`), y_train int64 (0 = Bad, 1 = Good),
    x_test, y_test likewise, feature_names from the header, class_names ["Bad", "Good"].
    No published checksum: ``checksum_verified`` is None.
    """
    root = Path(root)
    files = _ensure("heloc", HELOC_FILES, root, download, progress)
    train_path, test_path = files["heloc-train.csv"].path, files["heloc-test.csv"].path
    X_train, y_train, names = read_heloc(train_path)
    X_test, y_test, test_names = read_heloc(test_path)
    if set(test_names) != set(names):
        raise FormatError(
            f"{test_path} and {train_path} have different feature columns: only in train "
            f"{sorted(set(names) - set(test_names))}, only in test {sorted(set(test_names) - set(names))}"
        )
    X_test = X_test[names]  # same column order as train
    logger.info("heloc: %d train, %d test rows, %d features from %s",
                len(X_train), len(X_test), len(names), root)
    return RawData(
        x_train=X_train.to_numpy(dtype=np.float64), y_train=y_train,
        x_test=X_test.to_numpy(dtype=np.float64), y_test=y_test,
        class_names=list(HELOC_CLASSES), feature_names=list(names),
        meta=_meta("FICO HELOC as prepared by OpenXAI (Harvard Dataverse)", root, files,
                   dropped_no_record_rows={"train": X_train.attrs.get("n_dropped_no_record", 0),
                                           "test": X_test.attrs.get("n_dropped_no_record", 0)}),
    )


# ---------------------------------------------------------------------------------------- AFFAIRS


def fetch_affairs(root: str | os.PathLike, download: bool, progress: bool = True) -> RawData:
    """Fair's (1978) extramarital affairs data: statsmodels' ``fair.csv`` in `root`.

    No published split: the 6,366 rows are split 80/20, class-stratified, with the fixed seed of the
    bundled data sets (`ggda.data.bundled.fixed_split`), giving 5,092 train and 1,274 test rows.
    Returns RawData with x_train (n_train, 8) float64, y_train int64 (1 = affair, i.e.
    ``affairs`` > 0; 0 = no affair), x_test, y_test likewise, feature_names from the header,
    class_names ["no affair", "affair"]. Same checksum policy as `fetch_mnist` (the md5 is that of
    the file at the pinned statsmodels tag).
    """
    root = Path(root)
    files = _ensure("affairs", AFFAIRS_FILES, root, download, progress)
    path = files["fair.csv"].path
    try:
        X, y, names = read_affairs(path)
    except FormatError as exc:
        raise FormatError(f"{exc}.{_unverified_hint(files)}") from exc
    try:
        x_train, x_test, y_train, y_test = fixed_split(X.to_numpy(dtype=np.float64), y)
    except ValueError as exc:  # too few rows of a class for a stratified split
        raise FormatError(
            f"{path}: cannot split {len(y)} row(s) with class counts "
            f"{np.bincount(y, minlength=2).tolist()} (no affair, affair) 80/20 by class ({exc})."
            f"{_unverified_hint(files)}") from exc
    logger.info("affairs: %d train, %d test rows, %d features from %s",
                len(x_train), len(x_test), len(names), root)
    return RawData(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        class_names=list(AFFAIRS_CLASSES), feature_names=list(names),
        meta=_meta("Fair (1978), A Theory of Extramarital Affairs, J. Political Economy 86(1), "
                   "45-61; fair.csv as distributed with statsmodels (package BSD-3 licensed; the "
                   "data included with permission of the author)", root, files,
                   split=SPLIT_DESCRIPTION),
    )


# ------------------------------------------------------------------------------------------- QNLI


def _zip_member(zf: zipfile.ZipFile, zip_path: Path, wanted: str) -> str:
    names = zf.namelist()
    if wanted in names:
        return wanted
    base = wanted.rsplit("/", 1)[-1]
    candidates = [n for n in names if n == base or n.endswith("/" + base)]
    if len(candidates) == 1:
        return candidates[0]
    raise FormatError(f"{zip_path}: member {wanted} not found (members: {names[:10]}); "
                      f"is it GLUE's QNLIv2.zip?")


def _pairs(df: Any) -> list[tuple[str, str]]:
    return list(zip(df["question"].tolist(), df["sentence"].tolist()))


def fetch_qnli(root: str | os.PathLike, download: bool, progress: bool = True) -> RawData:
    """GLUE QNLI: train = ``QNLI/train.tsv``, test = ``QNLI/dev.tsv`` (GLUE's test has no labels).

    `root` may hold ``QNLIv2.zip`` (read in memory), or ``QNLI/train.tsv`` + ``QNLI/dev.tsv``, or
    ``train.tsv`` + ``dev.tsv``; checked in that order. Returns RawData with x_train/x_test lists of
    (question, sentence) string pairs (104,743 / 5,463 officially), y int64 (entailment = 0,
    not_entailment = 1), class_names ["entailment", "not_entailment"]. No published checksum.
    """
    root = Path(root)
    zip_name = next(iter(QNLI_FILES))
    layouts = [(root / "QNLI" / "train.tsv", root / "QNLI" / "dev.tsv"),
               (root / "train.tsv", root / "dev.tsv")]
    source = "GLUE QNLI (Wang et al. 2019; from SQuAD v1.1)"
    if not (root / zip_name).is_file():
        for train_path, test_path in layouts:
            if train_path.is_file() and test_path.is_file():
                files = {}
                for key, p in [("train.tsv", train_path), ("dev.tsv", test_path)]:
                    md5, sha = _dl.file_digests(p)
                    files[key] = _LocalFile(p, md5, sha, None, False, [])
                train, test = read_qnli(train_path), read_qnli(test_path)
                return _qnli_raw(train, test, _meta(source, root, files))
        if not download:
            raise _missing_error("qnli", root, QNLI_FILES, [zip_name],
                                 " (nor QNLI/train.tsv + QNLI/dev.tsv, nor train.tsv + dev.tsv)")
    files = _ensure("qnli", QNLI_FILES, root, download, progress)
    zip_path = files[zip_name].path
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = {}
            for role, wanted in [("train", QNLI_TRAIN_MEMBER), ("test", QNLI_TEST_MEMBER)]:
                member = _zip_member(zf, zip_path, wanted)
                with zf.open(member) as f:
                    members[role] = read_qnli(f, name=f"{zip_path}!{member}")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise FormatError(f"{zip_path}: corrupt or truncated zip archive ({exc})") from exc
    return _qnli_raw(members["train"], members["test"],
                     _meta(source, root, files, members=[QNLI_TRAIN_MEMBER, QNLI_TEST_MEMBER]))


def _qnli_raw(train: Any, test: Any, meta: dict[str, Any]) -> RawData:
    logger.info("qnli: %d train, %d test pairs from %s", len(train), len(test), meta["root"])
    return RawData(
        x_train=_pairs(train), y_train=train["label"].to_numpy(dtype=np.int64),
        x_test=_pairs(test), y_test=test["label"].to_numpy(dtype=np.int64),
        class_names=list(QNLI_CLASSES), feature_names=None, meta=meta,
    )
