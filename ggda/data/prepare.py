"""Seeded subsets, label noise, scaling and validation splits: the steps from published files to
model-ready tensors."""

from __future__ import annotations

import dataclasses
import logging
import warnings

import numpy as np
import torch
from torch.utils.data import TensorDataset

log = logging.getLogger(__name__)


def stratified_subset(y: np.ndarray, n: int | None, seed: int, arg: str = "n") -> np.ndarray:
    """Indices (sorted, int64) of a seeded, class-stratified subset of size ``n`` (all when None; when
    ``n`` exceeds the split, all of it, with a warning naming both sizes)."""
    total = len(y)
    if n is None:
        return np.arange(total, dtype=np.int64)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"{arg} must be a positive integer or None, got {n!r}")
    if n >= total:
        if n > total:
            warnings.warn(f"{arg}={n} exceeds the {total} points of the split: using all {total}", stacklevel=3)
        return np.arange(total, dtype=np.int64)
    classes = np.unique(y)
    if n < len(classes):
        raise ValueError(f"{arg}={n} is smaller than the number of classes ({len(classes)}); "
                         "a stratified subset needs at least one point per class")
    from sklearn.model_selection import train_test_split  # imported when needed: ~1 s per process

    idx, _ = train_test_split(np.arange(total), train_size=n, random_state=seed, stratify=y)
    return np.sort(idx).astype(np.int64)


def flip_labels(y: np.ndarray, rate: float, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``round(rate * n)`` labels, chosen at random, each to a uniformly drawn *other* class.

    Returns the noisy labels and the sorted indices that were flipped.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"noise_rate must be in [0, 1), got {rate!r}")
    rng = np.random.default_rng([seed, 0x6E6F69])  # a stream of its own, apart from the subset's
    y = y.copy()
    n_flip = int(round(rate * len(y)))
    flipped = np.sort(rng.choice(len(y), size=n_flip, replace=False)).astype(np.int64)
    shift = rng.integers(1, num_classes, size=n_flip)  # 1..C-1: never the same class
    y[flipped] = (y[flipped] + shift) % num_classes
    return y, flipped


def standardise_tabular(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Impute NaN with the training median, then scale each feature to zero mean, unit variance on train.

    Features that are constant on the training part are centred but not scaled. Returns float32 arrays
    and the fitted statistics.
    """
    x_train = np.asarray(x_train, dtype=np.float64)
    x_test = np.asarray(x_test, dtype=np.float64)
    median = np.nanmedian(x_train, axis=0) if np.isnan(x_train).any() else np.median(x_train, axis=0)
    median = np.where(np.isnan(median), 0.0, median)  # a column missing everywhere becomes 0
    x_train = np.where(np.isnan(x_train), median, x_train)
    x_test = np.where(np.isnan(x_test), median, x_test)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    stats = {"scaling": "per-feature standardisation fitted on train; NaN imputed with the train median"}
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32), stats


def standardise_images(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Scale channels-first images (n, C, H, W) to zero mean, unit variance per channel, fitted on train."""
    x_train = np.asarray(x_train, dtype=np.float32)
    x_test = np.asarray(x_test, dtype=np.float32)
    axes = (0, 2, 3)
    mean = x_train.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = x_train.std(axis=axes, keepdims=True, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    stats = {"scaling": "per-channel standardisation fitted on train",
             "channel_mean": mean.ravel().tolist(), "channel_std": std.ravel().tolist()}
    return (((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32), stats)


def target_subset(dataset, m: int | None, seed: int):
    """The attribution targets: ``dataset`` itself (m None or at least its size; above it with a warning
    naming both sizes), or a seeded subset of m of its points in their original order.
    Returns (TensorDataset, the subset's indices into ``dataset`` or None)."""
    if m is not None and m > len(dataset):
        warnings.warn(f"m={m} exceeds the {len(dataset)} points of the split: using all {len(dataset)}", stacklevel=2)
    if m is None or m >= len(dataset):
        return dataset, None
    idx = np.sort(np.random.default_rng(seed).choice(len(dataset), m, replace=False))
    return TensorDataset(*(t[torch.from_numpy(idx)] for t in dataset.tensors)), idx


def validation_split(data, n_val: int | float, seed: int = 0):
    """Carve a class-stratified validation split out of the training part of ``data``.

    n_val: the number of points (int) or a fraction of ``data.train`` (float in (0, 1)).
    seed: seeds the stratified draw.
    Returns (bundle, val): ``bundle`` is a copy of ``data`` whose ``train`` lacks the validation points
    (``flipped`` and ``clean_labels`` re-indexed to it; ``meta["validation_indices"]`` holds the removed
    indices into the original ``data.train``), and ``val`` a TensorDataset of those points with their
    *clean* labels (``data.clean_labels``), i.e. a trusted validation split even under label noise.
    The test split is untouched, so the validation split is disjoint from it. Train on ``bundle``, not
    on ``data``: attribution and retraining indices refer to ``bundle.train``. (The feature scaling was
    fitted on the full training part, validation points included.)
    """
    n = len(data.train)
    if isinstance(n_val, float) and not float(n_val).is_integer():
        if not 0.0 < n_val < 1.0:
            raise ValueError(f"n_val as a fraction must be in (0, 1), got {n_val}")
        n_val = int(round(n_val * n))
    n_val = int(n_val)
    if not 0 < n_val < n:
        raise ValueError(f"n_val must be between 1 and {n - 1} (data.train has {n} points), got {n_val}")
    clean = np.asarray(data.clean_labels)
    val_idx = stratified_subset(clean, n_val, seed, "n_val")
    mask = np.ones(n, dtype=bool)
    mask[val_idx] = False
    keep = np.flatnonzero(mask)
    tensors = data.train.tensors
    sel = torch.from_numpy(keep)
    train = TensorDataset(*(t[sel] for t in tensors))
    vsel = torch.from_numpy(val_idx)
    val = TensorDataset(*(t[vsel] for t in tensors[:-1]),
                        torch.as_tensor(clean[val_idx], dtype=tensors[-1].dtype))
    new_pos = np.full(n, -1, dtype=np.int64)
    new_pos[keep] = np.arange(len(keep))
    flipped = np.sort(new_pos[np.asarray(data.flipped, dtype=np.int64)])
    flipped = flipped[flipped >= 0]
    meta = dict(data.meta, n_train=len(keep), validation_indices=val_idx.tolist(), n_val=n_val,
                validation_seed=seed)
    bundle = dataclasses.replace(data, train=train, flipped=flipped, clean_labels=clean[keep], meta=meta)
    log.info("validation split of %s: %d validation points, %d training points left", data.name, n_val, len(keep))
    return bundle, val
