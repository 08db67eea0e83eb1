"""Seeded subsets, label noise and scaling: the steps from published files to model-ready tensors."""

from __future__ import annotations

import warnings

import numpy as np


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
