"""Linear datamodeling score (LDS; Park et al. 2023, the TRAK paper) over groups.

Sample S random subsets, each holding round(alpha k) of the k groups (alpha = 1/2 by default), retrain on
the points of each subset, and measure every target's cross-entropy. The attribution predicts the
target's loss under subset S_j, up to a constant, as

    predicted(j, t) = - sum_{G in S_j} score(t, G)

(every method's score says how much G *helps* t: IF and TracIn predict the loss increase when G is
removed, TRAK the margin decrease, and the cross-entropy is a decreasing function of the margin, so
Spearman correlations are unaffected by the choice). LDS = mean over targets t of the Spearman
correlation, over the S subsets, between predicted(., t) and the measured loss(., t). Targets whose
measured or predicted losses are constant over the subsets give nan and are left out of the mean.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from torch.utils.data import TensorDataset

from ..attribution import Attribution, attribute
from ..grouping import Groups
from .results import LDSResult
from .retraining import Job, base_run, retrain_jobs

log = logging.getLogger(__name__)


def spearman_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 (m,): the Spearman correlation of each column of a (S, m) with the same column of b (S, m);
    nan where a column is constant."""
    ra = rankdata(a, axis=0)
    rb = rankdata(b, axis=0)
    ra -= ra.mean(0)
    rb -= rb.mean(0)
    denom = np.sqrt((ra * ra).sum(0) * (rb * rb).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(0) / denom
    rho[denom == 0] = np.nan
    return np.clip(rho, -1.0, 1.0)


def lds(
    run,
    data,
    method: str | None = None,
    groups: Groups | None = None,
    subsets: int = 32,
    alpha: float = 0.5,
    seed: int = 0,
    targets: TensorDataset | None = None,
    attribution: Attribution | None = None,
    attribution_options: dict[str, Any] | None = None,
    hparams=None,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> LDSResult:
    """Linear datamodeling score of an attribution over groups (module docstring).

    run: the base TrainRun (trak: a list, the ensemble; the first is retrained). data: its DataBundle.
    method: "if", "tracin" or "trak" (the attribution is computed here with ``attribution_options``), or
        None when ``attribution`` (scores (m, k) for ``targets`` and ``groups``) is given.
    groups: a Groups over ``data.train``; None = individual (singletons). Ignored when ``attribution``
        is given (its own groups are used).
    subsets: S, the number of random subsets (each one retrained model; keep S small for big models).
    alpha: fraction of the groups kept in each subset.
    seed: seeds the subsets; subset j is trained with seed ``seed + j``. targets: T (default ``data.test``).
    Returns an LDSResult: score (the LDS), targets (per-target Spearman), predicted and actual (S, m),
    rows (one per subset model: kind "lds", fraction removed, seed, n_removed, accuracy, loss, retrain_s),
    meta (k, alpha, subsets, attribution timing). Several attributions over the same groups share their
    retrained subsets: :func:`lds_many`.
    """
    targets = data.test if targets is None else targets
    if attribution is None:
        if method is None:
            raise ValueError("pass method ('if', 'tracin', 'trak') or a precomputed attribution")
        attribution = attribute(method, run, data.train, targets, groups,
                                **{"progress": progress, "device": device, **dict(attribution_options or {})})
    return lds_many(run, data, {attribution.method: attribution}, subsets=subsets, alpha=alpha, targets=targets,
                    seed=seed, hparams=hparams, device=device, progress=progress)[attribution.method]


def lds_many(
    run,
    data,
    attributions: Mapping[str, Attribution],
    subsets: int = 32,
    alpha: float = 0.5,
    seed: int = 0,
    targets: TensorDataset | None = None,
    hparams=None,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> dict[str, LDSResult]:
    """The LDS of several attributions over the same groups and targets (e.g. IF, TracIn and TRAK of one
    grouping), from one set of S retrained subset models: {name: LDSResult}. The subsets depend only on
    the groups, ``subsets``, ``alpha`` and ``seed``, so each result equals :func:`lds` of that attribution
    alone. Arguments as for :func:`lds`."""
    if not isinstance(subsets, (int, np.integer)) or isinstance(subsets, bool) or subsets < 3:
        raise ValueError(f"subsets must be an integer >= 3 (a Spearman correlation over S subsets), got {subsets!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha (fraction of groups kept) must be in (0, 1), got {alpha!r}")
    if not attributions:
        raise ValueError("attributions is empty: pass {name: Attribution}")
    targets = data.test if targets is None else targets
    n = len(data.train)
    first = next(iter(attributions))
    g = attributions[first].groups
    scores = {}
    for name, attr in attributions.items():
        s = np.asarray(attr.scores, dtype=np.float64)
        if attr.groups.n != n or s.shape != (len(targets), attr.groups.k):
            raise ValueError(f"attribution {name!r} has scores {s.shape} over {attr.groups.n} points; expected "
                             f"({len(targets)}, k) over data.train's {n} points")
        if not np.array_equal(attr.groups.labels, g.labels):
            raise ValueError(f"attribution {name!r} is over other groups than {first!r}: "
                             f"lds_many needs one grouping")
        scores[name] = s
    k = g.k
    n_keep = int(round(alpha * k))
    if not 0 < n_keep < k:
        raise ValueError(f"alpha={alpha} keeps {n_keep} of {k} groups: need at least one kept and one removed")
    rng = np.random.default_rng(seed)
    chosen = [np.sort(rng.choice(k, n_keep, replace=False)) for _ in range(subsets)]
    jobs = []
    for j, c in enumerate(chosen):
        kept_groups = np.zeros(k, dtype=bool)
        kept_groups[c] = True
        removed = np.flatnonzero(~kept_groups[g.labels])
        jobs.append(Job("lds", len(removed) / n, seed + j, removed))
    start = time.perf_counter()
    rows, actual = retrain_jobs(run, data, jobs, targets, hparams, device, progress, "LDS subsets", per_target=True)
    rows.insert(len(rows.columns), "subset", np.arange(len(rows)))
    wall = time.perf_counter() - start
    out = {}
    for name, attr in attributions.items():
        predicted = np.stack([-scores[name][:, c].sum(1) for c in chosen])
        rho = spearman_columns(predicted, actual)
        score = float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan")
        per_target = pd.DataFrame({"target": np.arange(len(rho)), "spearman": rho})
        meta = {"evaluation": "lds", "dataset": getattr(data, "name", None), "model": base_run(run).model_name,
                "method": attr.method, "grouping": g.method, "k": k, "alpha": alpha, "subsets": subsets,
                "seed": seed, "n_train": n, "n_targets": len(targets), "valid_targets": int(np.isfinite(rho).sum()),
                "attribution_timing": dict(attr.timing), "retrain_total_s": float(rows["retrain_s"].sum()),
                "wall_s": wall}
        log.info("LDS %s (%s, k=%d, S=%d): %.4f", attr.method, g.method, k, subsets, score)
        out[name] = LDSResult(rows.copy(), meta, score=score, targets=per_target, predicted=predicted,
                              actual=actual)
    return out
