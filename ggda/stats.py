"""Small statistics shared by the evaluation tables and the figures (numpy only)."""

from __future__ import annotations

import numpy as np


def standard_error(values) -> float:
    """Standard error of the mean: sample standard deviation (ddof=1) / sqrt(count), over the finite
    values; nan with fewer than two."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
