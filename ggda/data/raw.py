"""The contract between a data set's source (files on disk) and `ggda.data.load`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RawData:
    """A data set as parsed from its published files, before subsetting, noise and scaling.

    x_train, x_test: numeric arrays (n, ...) for tabular and image data (images as uint8 or float,
        channels first: (n, C, H, W)); for text, a list of (question, sentence) string pairs.
        Tabular features may hold NaN for missing values (imputed later with the training median).
    y_train, y_test: int64 arrays (n,) of class indices 0..num_classes-1.
    feature_names: column names of tabular data, else None.
    class_names: name of each class index.
    meta: provenance: {"source": str, "files": {name: {"path", "sha256", "md5",
        "checksum_verified": True | False | None}}, ...}.
    """

    x_train: Any
    y_train: np.ndarray
    x_test: Any
    y_test: np.ndarray
    class_names: list[str]
    feature_names: list[str] | None = None
    meta: dict = field(default_factory=dict)
