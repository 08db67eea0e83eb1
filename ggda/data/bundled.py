"""The data sets bundled with scikit-learn: always available, no network.

Also home of `fixed_split`, the fixed train/test split of every data set published without one
(the bundled ones here, and ``affairs`` in `ggda.data.sources`).
"""

from __future__ import annotations

import numpy as np
from .raw import RawData

#: Fraction held out as the test split of the data sets without a published split (seeded,
#: class-stratified): the bundled ones and ``affairs``.
TEST_FRACTION = 0.2
#: That split does not depend on the experiment seed, so that every seed of an experiment
#: attributes the same test points.
SPLIT_SEED = 0
#: How `fixed_split` splits, as recorded in ``RawData.meta["split"]``.
SPLIT_DESCRIPTION = f"stratified, test_size={TEST_FRACTION}, random_state={SPLIT_SEED}"


def fixed_split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """(x_train, x_test, y_train, y_test): class-stratified, `TEST_FRACTION` held out, seed `SPLIT_SEED`."""
    from sklearn.model_selection import train_test_split  # scikit-learn costs ~1 s to import: only when used

    return train_test_split(x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y)


def fetch_digits() -> RawData:
    """8x8 digit images as float (n, 1, 8, 8) with values 0..16; stratified 80/20 split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32)[:, None]
    xtr, xte, ytr, yte = fixed_split(x, d.target.astype(np.int64))
    return RawData(xtr, ytr, xte, yte, [str(c) for c in d.target_names],
                   meta={"source": "sklearn.datasets.load_digits", "files": {},
                         "split": SPLIT_DESCRIPTION})


def fetch_breast_cancer() -> RawData:
    """30 tabular features (n, 30); label 1 = benign, 0 = malignant; stratified 80/20 split."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    xtr, xte, ytr, yte = fixed_split(d.data.astype(np.float64), d.target.astype(np.int64))
    return RawData(xtr, ytr, xte, yte, [str(c) for c in d.target_names],
                   feature_names=[str(f) for f in d.feature_names],
                   meta={"source": "sklearn.datasets.load_breast_cancer", "files": {},
                         "split": SPLIT_DESCRIPTION})
