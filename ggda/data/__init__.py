"""Data sets: ``ggda.data.load(name, ...)`` returns a :class:`DataBundle` ready for training.

Pipeline: published files (downloaded or under ``root``) -> seeded class-stratified subset
(``n_train``/``n_test``) -> label noise on the training part (``noise_rate``) -> scaling fitted on
the training part only (tabular: median imputation then per-feature standardisation; images:
per-channel standardisation; text: tokenisation) -> torch TensorDatasets whose items end with the label.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from . import bundled, prepare, text
from .errors import ChecksumError, DataError, DownloadError, FormatError
from .custom import as_tensor_dataset, from_datasets
from .table import load_table
from .prepare import target_subset, validation_split
from .raw import RawData
from .store import load_bundle, save_bundle
from .registry import DATA_DIR_ENV, REGISTRY, DatasetInfo, default_root, get_info

__all__ = ["load", "load_table", "assemble", "from_datasets", "as_tensor_dataset", "validation_split", "target_subset", "save_bundle", "load_bundle", "DataBundle", "REGISTRY", "DatasetInfo", "get_info", "default_root", "list_datasets",
           "DATA_DIR_ENV", "DataError", "DownloadError", "ChecksumError", "FormatError", "RawData"]

log = logging.getLogger(__name__)

@dataclass
class DataBundle:
    """A loaded data set.

    train, test: TensorDatasets. Items are (x, y) for tabular data (x float32 (F,)) and images
        (x float32 (C, H, W)); (input_ids, attention_mask, y) for text (int64 (L,)). y is int64.
    flipped: sorted indices into ``train`` whose label was flipped by ``noise_rate``.
    clean_labels: the training labels before noise (equal to the train labels when noise_rate = 0).
    meta: kind, input_shape, num_classes, vocab_size (text), source, files (path, checksums and whether
        they were verified), counts, the indices of the subset in the published splits, the scaling.
    """

    name: str
    train: TensorDataset
    test: TensorDataset
    num_classes: int
    class_names: list[str]
    feature_names: list[str] | None
    flipped: np.ndarray
    clean_labels: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    def __repr__(self) -> str:
        return (f"DataBundle({self.name!r}, train={len(self.train)}, test={len(self.test)}, "
                f"num_classes={self.num_classes}, flipped={len(self.flipped)})")


def _fetch(info: DatasetInfo, root: str | os.PathLike | None, download: bool) -> RawData:
    if info.bundled:
        return getattr(bundled, f"fetch_{info.name}")()
    from . import sources  # urllib, tarfile, zipfile: only needed for the real data sets

    folder = Path(root) if root is not None else default_root(info.name)
    return getattr(sources, f"fetch_{info.name}")(folder, download=download)


def load(
    name: str,
    root: str | os.PathLike | None = None,
    download: bool = True,
    n_train: int | None = None,
    n_test: int | None = None,
    noise_rate: float = 0.0,
    seed: int = 0,
    tokenizer: str | None = None,
    max_length: int = 128,
) -> DataBundle:
    """Load a registered data set (``ggda datasets`` lists them).

    name: registry name, e.g. "digits", "breast_cancer", "heloc", "affairs", "mnist", "cifar10", "qnli".
    root: folder holding the published files; default ``data/raw/<name>`` (see :func:`default_root`).
        Files present there are used without network; missing ones are downloaded into it.
    download: allow downloading missing files; False raises DataError naming the missing files.
    n_train, n_test: size of a seeded, class-stratified subset of each split (None: all).
    noise_rate: fraction in [0, 1) of training labels flipped to another class (seeded); see ``.flipped``.
    seed: seeds the subsets and the label noise.
    tokenizer, max_length: text only; None uses the built-in word tokenizer fitted on the training
        split, otherwise a Hugging Face tokenizer name or folder (needs the ``text`` extra).
    """
    info = get_info(name)
    if not 0.0 <= noise_rate < 1.0:
        raise ValueError(f"noise_rate must be in [0, 1), got {noise_rate!r}")
    if max_length < 4:
        raise ValueError(f"max_length must be at least 4, got {max_length!r}")
    raw = _fetch(info, root, download)
    return assemble(name, info.kind, info.num_classes, raw, n_train=n_train, n_test=n_test,
                    noise_rate=noise_rate, seed=seed, tokenizer=tokenizer, max_length=max_length)


def assemble(name: str, kind: str, num_classes: int, raw: RawData, n_train: int | None = None,
             n_test: int | None = None, noise_rate: float = 0.0, seed: int = 0, tokenizer: str | None = None,
             max_length: int = 128) -> DataBundle:
    """The pipeline after the files are parsed (:func:`load`, :func:`load_table`): seeded class-stratified
    subsets, label noise on the training part, scaling fitted on the training part, tensors."""
    tr = prepare.stratified_subset(raw.y_train, n_train, seed, "n_train")
    te = prepare.stratified_subset(raw.y_test, n_test, seed + 1, "n_test")
    pick = (lambda xs, idx: [xs[i] for i in idx]) if kind == "text" else (lambda xs, idx: xs[idx])
    x_train, x_test = pick(raw.x_train, tr), pick(raw.x_test, te)
    clean = raw.y_train[tr].astype(np.int64)
    y_train, flipped = prepare.flip_labels(clean, noise_rate, num_classes, seed)
    y_test = raw.y_test[te].astype(np.int64)

    meta = {"kind": kind, "num_classes": num_classes, **raw.meta,
            "n_train": len(tr), "n_test": len(te), "train_indices": tr.tolist(), "test_indices": te.tolist(),
            "noise_rate": noise_rate, "seed": seed}
    if kind == "text":
        (ids_tr, mask_tr), (ids_te, mask_te), vocab, tok_name = text.encode(x_train, x_test, tokenizer, max_length)
        train = TensorDataset(ids_tr, mask_tr, torch.from_numpy(y_train))
        test = TensorDataset(ids_te, mask_te, torch.from_numpy(y_test))
        meta.update(input_shape=[max_length], vocab_size=vocab, tokenizer=tok_name, max_length=max_length)
    else:
        scale = prepare.standardise_images if kind == "image" else prepare.standardise_tabular
        x_train, x_test, stats = scale(x_train, x_test)
        train = TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train))
        test = TensorDataset(torch.from_numpy(x_test), torch.from_numpy(y_test))
        meta.update(input_shape=list(x_train.shape[1:]), **stats)
    log.info("loaded %s: %d train, %d test, %d flipped", name, len(tr), len(te), len(flipped))
    return DataBundle(name, train, test, num_classes, list(raw.class_names), raw.feature_names,
                      flipped, clean, meta)


def list_datasets() -> list[dict]:
    """One dict per registered data set (name, kind, classes, models, bundled, source)."""
    return [{"name": i.name, "kind": i.kind, "num_classes": i.num_classes, "models": ",".join(i.models),
             "bundled": i.bundled, "source": i.source} for i in REGISTRY.values()]
