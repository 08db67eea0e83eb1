"""Noisy-label detection: rank training points by suspicion, measure how many flipped labels the top
of the ranking holds, then remove the flagged points and retrain.

Suspicion signals (``signal``):

* ``"self"``: self-influence (:func:`ggda.attribution.self_influence`): every point's share S(G) / |G| of
  its group's self-influence S(G) = sum_{i in G} score(z_i, G). Defined for if, tracin and trak.
* ``"validation"``: negative importance for a clean validation split V (from :func:`validation_split`):
  -sum_{v in V} score(v, G) / |G|; points whose removal is predicted to *lower* V's loss (harmful) rank
  first.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from ..attribution import attribute, self_influence
from ..grouping import Groups
from .results import NoisyLabelResult, empty_rows
from .retraining import (Job, _check_fractions, _check_seeds, base_run, n_to_remove, random_removal,
                         removal_order, retrain_jobs)

log = logging.getLogger(__name__)

SIGNALS = ("self", "validation")


def detection_auroc(suspicion: np.ndarray, flipped: np.ndarray) -> float:
    """AUROC of ``suspicion`` (n,) for the indices ``flipped`` (ties count half)."""
    y = np.zeros(len(suspicion), dtype=bool)
    y[np.asarray(flipped, dtype=np.int64)] = True
    if y.all() or not y.any():
        raise ValueError("AUROC needs both flipped and clean points; load the data with 0 < noise_rate < 1")
    from sklearn.metrics import roc_auc_score  # imported when needed: ~1 s per process

    return float(roc_auc_score(y, suspicion))


def detection_curve(order: np.ndarray, flipped: np.ndarray, fractions: Sequence[float]) -> pd.DataFrame:
    """fraction_inspected, n_inspected, fraction_found: the share of the flipped points among the first
    round(f n) of ``order`` (most suspicious first) for each f in ``fractions``."""
    n = len(order)
    is_flipped = np.zeros(n, dtype=bool)
    is_flipped[np.asarray(flipped, dtype=np.int64)] = True
    found = np.cumsum(is_flipped[order])
    total = max(int(is_flipped.sum()), 1)
    rows = []
    for f in fractions:
        m = n_to_remove(f, n)
        rows.append({"fraction_inspected": float(f), "n_inspected": m,
                     "fraction_found": float(found[m - 1] / total) if m > 0 else 0.0})
    return pd.DataFrame(rows, columns=["fraction_inspected", "n_inspected", "fraction_found"])


def suspicion_scores(run, data, method: str, groups: Groups | None = None, signal: str = "self",
                     validation: TensorDataset | None = None,
                     attribution_options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """(suspicion float64 (n,), timing dict with total_s) for the training points of ``data``.

    signal "self": point share of the group self-influence (``self_influence``); "validation": minus the
    point importance for ``validation`` (``attribute(method, run, data.train, validation, groups).importance()``).
    """
    opts = dict(attribution_options or {})
    if signal == "self":
        si = self_influence(method, run, data.train, groups, **opts)
        return si.point_scores(), si.timing
    if signal == "validation":
        if validation is None:
            raise ValueError("signal='validation' needs a clean validation split: "
                             "bundle, val = ggda.evaluation.validation_split(data, n_val); train on bundle; "
                             "pass validation=val")
        attr = attribute(method, run, data.train, validation, groups, **opts)
        return -attr.importance(), dict(attr.timing)
    raise ValueError(f"signal must be one of {SIGNALS}, got {signal!r}")


_UNSET = object()  # the default of a deprecated alias: None is a meaningful value of remove_fraction


def noisy_label_detection(
    run,
    data,
    method: str,
    groups: Groups | None = None,
    inspect: Sequence[float] = (0.05, 0.1, 0.2, 0.3),
    remove_fraction: float | None = 0.1,
    seeds: Sequence[int] = (0, 1, 2),
    validation: TensorDataset | None = None,
    attribution_options: dict[str, Any] | None = None,
    signal: str | None = None,
    eval_set: TensorDataset | None = None,
    tie_seed: int = 0,
    baselines: bool = True,
    oracle: bool = True,
    hparams=None,
    device: str | torch.device = "auto",
    progress: bool = True,
    remove: Any = _UNSET,
) -> NoisyLabelResult:
    """Detect flipped labels with an attribution method, individual or group, then clean and retrain.

    run: a TrainRun trained on ``data`` (noisy labels; trak: a list of runs, the ensemble, the first is
        the base model retrained here).
    data: a DataBundle loaded with ``noise_rate > 0``; ``data.flipped`` is the ground truth.
    method: "if", "tracin" or "trak". groups: a Groups over ``data.train``; None = individual.
    inspect: fractions of the training set inspected for the detection curve.
    remove_fraction: fraction q of the most suspicious points removed before retraining (None or 0: no
        retraining). ``remove`` is its deprecated old name.
    seeds: retraining seeds.
    validation: a clean validation split (:func:`validation_split`); with it the default signal is
        "validation" (negative importance for it), without it "self" (self-influence; see the module
        docstring and :func:`ggda.attribution.self_influence` for the per-method and group definitions).
    attribution_options: options of the attribution method (damping, proj_dim, params, ...); ``progress``
        and ``device`` default to this function's.
    eval_set: where recovered accuracy is measured (default ``data.test``, whose labels are clean).
    baselines: add "none" (trained on all noisy data) and "random" (remove q at random) rows.
    oracle: add "oracle" rows (exactly the flipped points removed; fraction = their share).
    Returns a NoisyLabelResult: auroc, curve, suspicion (n,), attribution_s (seconds, grouping included),
    rows (the retraining table, columns as :data:`ggda.evaluation.ROW_COLUMNS`), meta.
    """
    n = len(data.train)
    flipped = np.asarray(data.flipped, dtype=np.int64)
    if flipped.size == 0:
        raise ValueError(f"{getattr(data, 'name', 'data')} has no flipped labels: load it with "
                         "ggda.data.load(..., noise_rate=0.1)")
    signal = signal or ("validation" if validation is not None else "self")
    inspect = _check_fractions(inspect, "inspect")
    start = time.perf_counter()
    opts = {"progress": progress, "device": device, **dict(attribution_options or {})}
    suspicion, timing = suspicion_scores(run, data, method, groups, signal, validation, opts)
    attribution_s = float(timing.get("total_s", time.perf_counter() - start))
    if not np.isfinite(suspicion).all():
        raise ValueError(f"{method} {signal} suspicion scores hold non-finite values; check damping / proj_dim")
    auroc = detection_auroc(suspicion, flipped)
    order = removal_order(suspicion, tie_seed)
    curve = detection_curve(order, flipped, inspect)
    grouping = "individual" if groups is None else groups.method
    log.info("noisy labels (%s, %s, %s): AUROC %.4f, found %s after inspecting %s; %.2f s", method, grouping,
             signal, auroc, curve["fraction_found"].round(3).tolist(), inspect, attribution_s)

    rows = empty_rows()
    if remove is not _UNSET:
        warnings.warn("noisy_label_detection(remove=...) is deprecated: use remove_fraction", DeprecationWarning,
                      stacklevel=2)
        remove_fraction = remove
    remove = remove_fraction
    if remove:
        remove = _check_fractions([remove], "remove_fraction")[0]
        seeds = _check_seeds(seeds)
        m = n_to_remove(remove, n)
        jobs = []
        if baselines:
            jobs += [Job("none", 0.0, s, np.zeros(0, dtype=np.int64)) for s in seeds]
        jobs += [Job("attribution", remove, s, order[:m]) for s in seeds]
        if baselines:
            jobs += [Job("random", remove, s, random_removal(n, m, s)) for s in seeds]
        if oracle:
            jobs += [Job("oracle", len(flipped) / n, s, flipped) for s in seeds]
        rows, _ = retrain_jobs(run, data, jobs, data.test if eval_set is None else eval_set, hparams, device,
                               progress, "noisy-label retraining")
    meta = {"evaluation": "noisy_label_detection", "dataset": getattr(data, "name", None),
            "model": base_run(run).model_name, "method": method, "grouping": grouping,
            "k": n if groups is None else groups.k, "signal": signal, "n_train": n, "n_flipped": int(len(flipped)),
            "noise_rate": data.meta.get("noise_rate"), "remove_fraction": remove, "tie_seed": tie_seed,
            "timing": timing, "found_in_removed": float(np.isin(order[:n_to_remove(remove, n)], flipped).sum()
                                                      / len(flipped)) if remove else None}
    return NoisyLabelResult(rows, meta, auroc=auroc, curve=curve, suspicion=suspicion, attribution_s=attribution_s)
