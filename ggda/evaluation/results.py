"""Result objects of the evaluations: tidy row tables (one row per measurement) and their summaries."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._io import atomic_path
from ..stats import standard_error

#: The columns of every retraining table, in order (retraining score, pruning, noisy-label removal, LDS).
#: kind: "attribution" (the ranking under test), "random" (a seeded random removal set of the same size),
#:     "none" (no removal, fraction 0), "oracle" (noisy labels only: exactly the flipped points removed),
#:     "lds" (LDS only: one random subset of groups kept);
#: fraction: the removal fraction asked for (in [0, 1]); seed: the retraining seed;
#: n_removed: training points removed; accuracy: fraction correct on the evaluation set;
#: loss: mean cross-entropy (nats) on the evaluation set; retrain_s: training seconds of the retrained model.
ROW_COLUMNS = ("kind", "fraction", "seed", "n_removed", "accuracy", "loss", "retrain_s")

#: The columns of :meth:`EvalResult.summary`.
SUMMARY_COLUMNS = ("kind", "fraction", "n_removed", "accuracy_mean", "accuracy_se", "loss_mean", "loss_se",
                   "seeds")


def empty_rows() -> pd.DataFrame:
    """A row table with the documented columns and no rows."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
        ROW_COLUMNS, ("object", "float64", "int64", "int64", "float64", "float64", "float64"))})


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error over seeds per kind x fraction (columns :data:`SUMMARY_COLUMNS`).

    n_removed is the mean over seeds (it is the same for every seed except where removal sets differ
    in size). Kinds keep the order of their first appearance in ``rows``; fractions are ascending.
    """
    if rows.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    out = []
    kinds = list(dict.fromkeys(rows["kind"]))
    for kind in kinds:
        sub = rows[rows["kind"] == kind]
        for fraction, g in sub.groupby("fraction", sort=True):
            out.append({"kind": kind, "fraction": float(fraction), "n_removed": float(g["n_removed"].mean()),
                        "accuracy_mean": float(g["accuracy"].mean()), "accuracy_se": standard_error(g["accuracy"]),
                        "loss_mean": float(g["loss"].mean()), "loss_se": standard_error(g["loss"]),
                        "seeds": int(g["seed"].nunique())})
    return pd.DataFrame(out, columns=list(SUMMARY_COLUMNS))


@dataclass
class EvalResult:
    """The outcome of a retraining experiment.

    rows: tidy DataFrame, one row per retrained model, columns :data:`ROW_COLUMNS`.
    meta: what was run and how long it took (seconds), e.g. ``n_train``, ``fractions``, ``seeds``,
        ``tie_seed``, ``retrain_total_s``, ``model``, ``dataset`` (and the attribution timing where the
        evaluation computed the attribution itself).
    """

    rows: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """The tidy rows (the same object as ``rows``)."""
        return self.rows

    def summary(self) -> pd.DataFrame:
        """Mean and standard error over seeds per kind x fraction: columns kind, fraction, n_removed,
        accuracy_mean, accuracy_se, loss_mean, loss_se, seeds (see :func:`summarise`)."""
        return summarise(self.rows)

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the rows as CSV to exactly ``path``, atomically."""
        path = Path(path)
        with atomic_path(path) as tmp:
            self.rows.to_csv(tmp, index=False)
        return path

    def __repr__(self) -> str:
        kinds = ", ".join(f"{k}: {v}" for k, v in self.rows["kind"].value_counts(sort=False).items()) \
            if not self.rows.empty else "no rows"
        return f"{type(self).__name__}({len(self.rows)} rows; {kinds})"


@dataclass(repr=False, kw_only=True)
class NoisyLabelResult(EvalResult):
    """Noisy-label detection (see :func:`ggda.evaluation.noisy_label_detection`).

    auroc: area under the ROC curve of the suspicion scores against the flipped labels, in [0, 1]
        (0.5 = chance; tied scores count half, so groups are not credited for an arbitrary tie order).
    curve: DataFrame (fraction_inspected, n_inspected, fraction_found): the fraction of all flipped points
        among the ``n_inspected = round(fraction_inspected * n)`` most suspicious points (ties broken by a
        seeded random order).
    suspicion: float64 (n,), the score of every training point (higher = more suspicious).
    attribution_s: seconds spent computing the suspicion scores, grouping time included.
    rows: the retraining after removing the flagged points (kinds "attribution", "random", "none",
        "oracle"); empty when no retraining was asked for.
    """

    auroc: float = float("nan")
    curve: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["fraction_inspected", "n_inspected", "fraction_found"]))
    suspicion: np.ndarray = field(default_factory=lambda: np.zeros(0))
    attribution_s: float = 0.0

    def __repr__(self) -> str:
        return (f"NoisyLabelResult(auroc={self.auroc:.4f}, attribution_s={self.attribution_s:.3g}, "
                f"{len(self.rows)} retraining rows)")


@dataclass(repr=False, kw_only=True)
class LDSResult(EvalResult):
    """Linear datamodeling score over groups (see :func:`ggda.evaluation.lds`).

    score: the LDS, the mean over targets of the per-target Spearman correlation (in [-1, 1]) across the
        retrained subsets; nan targets (constant actual or predicted losses) are left out of the mean.
    targets: DataFrame (target, spearman), one row per target (index into the target set).
    predicted, actual: float64 (S, m): the predicted (``-`` sum of the kept groups' scores, up to a constant)
        and the measured cross-entropy of each target under each subset model.
    rows: one row per subset model (kind "lds", fraction = share of training points removed).
    """

    score: float = float("nan")
    targets: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["target", "spearman"]))
    predicted: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    actual: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def summary(self) -> pd.DataFrame:
        """One row: lds (mean Spearman), lds_se (standard error over targets), targets (counted),
        subsets, k (groups), alpha (fraction of groups kept), accuracy_mean and loss_mean of the subset models."""
        rho = self.targets["spearman"].to_numpy(dtype=np.float64)
        ok = rho[np.isfinite(rho)]
        return pd.DataFrame([{"lds": self.score, "lds_se": standard_error(ok), "targets": int(len(ok)),
                              "subsets": int(len(self.rows)), "k": self.meta.get("k"),
                              "alpha": self.meta.get("alpha"),
                              "accuracy_mean": float(self.rows["accuracy"].mean()) if len(self.rows) else np.nan,
                              "loss_mean": float(self.rows["loss"].mean()) if len(self.rows) else np.nan}])

    def __repr__(self) -> str:
        return f"LDSResult(score={self.score:.4f}, subsets={len(self.rows)}, targets={len(self.targets)})"
