"""Removal-and-retraining experiments: the retraining score, dataset pruning, and the shared loop.

Both rank the n training points, remove a fraction p of them, retrain from scratch for each seed with
the base model's hyper-parameters (``ggda.train.fit(keep=...)``), and measure accuracy and mean loss on
an evaluation set (docs/methods.md, "Removal and retraining score"). They differ in which end of the
ranking is removed:

* :func:`retraining_score` removes the *most* important points for the target set T (a faithful
  attribution makes the loss on T rise and its accuracy drop the most; lower accuracy is better);
* :func:`pruning` removes the *least* important points for a validation split (harmful or useless
  points first; a good attribution keeps test accuracy highest).

Baselines share the table: "none" (no removal, fraction 0, once per seed) and "random" (for each
fraction and seed, the first round(p n) points of a random permutation of the training points drawn
with ``numpy.random.default_rng(seed)``: the sets are nested across fractions and differ across seeds).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from .. import train as _train
from ..devices import resolve_device, split_batch
from .results import ROW_COLUMNS, EvalResult, empty_rows

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- ranking
def as_importance(importance: Any, n: int, what: str = "importance") -> np.ndarray:
    """float64 (n,) from an array, a tensor or an Attribution (its ``.importance()``); checks shape and
    finiteness."""
    if hasattr(importance, "importance") and callable(importance.importance):
        importance = importance.importance()
    if isinstance(importance, torch.Tensor):
        importance = importance.detach().cpu().numpy()
    arr = np.asarray(importance, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{what} must have shape (n,) = ({n},), one value per training point of data.train; "
                         f"got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} holds {int((~np.isfinite(arr)).sum())} non-finite values (nan or inf)")
    return arr


def removal_order(scores: np.ndarray, tie_seed: int = 0) -> np.ndarray:
    """int64 (n,): indices sorted by decreasing score; ties are broken by a random order seeded with
    ``tie_seed`` (so points sharing a group's score are removed in a reproducible random order)."""
    scores = np.asarray(scores, dtype=np.float64)
    perm = np.random.default_rng(tie_seed).permutation(len(scores))
    return perm[np.argsort(-scores[perm], kind="stable")].astype(np.int64)


def n_to_remove(fraction: float, n: int) -> int:
    """round(fraction * n): the number of points removed for a fraction in [0, 1)."""
    return int(round(float(fraction) * n))


def _check_fractions(fractions: Sequence[float], name: str = "fractions") -> list[float]:
    fr = [float(f) for f in np.atleast_1d(np.asarray(fractions, dtype=np.float64))]
    if not fr or any(not 0.0 < f < 1.0 for f in fr):
        raise ValueError(f"{name} must be a non-empty list of fractions in (0, 1), e.g. (0.05, 0.1, 0.2); "
                         f"got {fractions!r}")
    return fr


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    out = [int(s) for s in np.atleast_1d(np.asarray(seeds))]
    if not out:
        raise ValueError("seeds must hold at least one retraining seed, e.g. (0, 1, 2)")
    return out


def random_removal(n: int, m: int, seed: int) -> np.ndarray:
    """The random baseline's removal set: the first m of ``numpy.random.default_rng(seed).permutation(n)``."""
    return np.random.default_rng(seed).permutation(n)[:m].astype(np.int64)


# ----------------------------------------------------------------------------------------- the loop
@dataclasses.dataclass
class Job:
    """One retraining: remove ``removed`` (indices into data.train), train with ``seed``."""

    kind: str
    fraction: float
    seed: int
    removed: np.ndarray


@torch.no_grad()
def per_target_loss(model: torch.nn.Module, dataset: TensorDataset, device="cpu",
                    batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(losses float64 (m,), correct bool (m,)): the cross-entropy (nats) and correctness of each item."""
    dev = resolve_device(device)
    was = model.training
    model.eval()
    tensors = dataset.tensors
    losses, correct = [], []
    for lo in range(0, len(tensors[0]), batch_size):
        inputs, y = split_batch(tuple(t[lo:lo + batch_size] for t in tensors), model, dev)
        logits = model(*inputs)
        losses.append(F.cross_entropy(logits, y, reduction="none").double().cpu())
        correct.append((logits.argmax(-1) == y).cpu())
    model.train(was)
    return torch.cat(losses).numpy(), torch.cat(correct).numpy()


def base_run(run):
    """The base model's TrainRun (the first of an ensemble list, as TRAK takes)."""
    if isinstance(run, (list, tuple)):
        if not run:
            raise ValueError("run is an empty list; pass a TrainRun (or a list of them for TRAK)")
        return run[0]
    return run


def retrain_jobs(run, data, jobs: Sequence[Job], eval_set: TensorDataset, hparams=None, device="auto",
                 progress: bool = True, desc: str = "retrain", per_target: bool = False):
    """Retrain ``run``'s model for each job and measure it on ``eval_set``.

    Returns (rows DataFrame with :data:`ROW_COLUMNS`, per-target losses float64 (len(jobs), m) or None).
    Each model is trained by ``ggda.train.fit(run.model_name, data, hparams or run.hparams, seed=job.seed,
    keep=kept indices, checkpoints=1, model_options=run.model_options)``, or for a ``ggda.ModelRun`` by its
    own ``retrain(kept indices, seed)`` (``hparams`` does not apply there).
    """
    run = base_run(run)
    hp = run.hparams if hparams is None else hparams
    if isinstance(hp, dict):
        hp = run.hparams.replace(**hp)
    n = len(data.train)
    rows, losses = [], []
    for job in tqdm(jobs, desc=desc, unit="model", disable=not progress, leave=False):
        keep = None
        if len(job.removed):
            mask = np.ones(n, dtype=bool)
            mask[job.removed] = False
            keep = np.flatnonzero(mask)
            if keep.size == 0:
                raise ValueError(f"removal of {len(job.removed)} points leaves no training data")
        if hasattr(run, "retrained"):  # a ggda.ModelRun: the user's own training function
            model, wall_s = run.retrained(np.arange(n) if keep is None else keep, job.seed)
        else:
            new = _train.fit(run.model_name, data, hp, seed=job.seed, keep=keep, checkpoints=1, device=device,
                             model_options=run.model_options, progress=False)
            model, wall_s = new.model, new.wall_s
        loss, correct = per_target_loss(model, eval_set, device)
        rows.append({"kind": job.kind, "fraction": float(job.fraction), "seed": int(job.seed),
                     "n_removed": int(len(job.removed)), "accuracy": float(correct.mean()) if len(correct) else np.nan,
                     "loss": float(loss.mean()) if len(loss) else np.nan, "retrain_s": float(wall_s)})
        if per_target:
            losses.append(loss)
    frame = pd.DataFrame(rows, columns=list(ROW_COLUMNS)) if rows else empty_rows()
    if not frame.empty:
        frame = frame.astype({"seed": "int64", "n_removed": "int64"})
    return frame, (np.stack(losses) if per_target and losses else None)


def removal_jobs(order: np.ndarray, fractions: Sequence[float], seeds: Sequence[int],
                 baselines: bool = True, attribution: bool = True) -> list[Job]:
    """Jobs for a ranking: "none" once per seed (with baselines), then per fraction the first
    round(p n) of ``order`` ("attribution", unless ``attribution=False``) and a random set of the same
    size ("random", with baselines)."""
    n = len(order)
    jobs = []
    if baselines:
        jobs += [Job("none", 0.0, s, np.zeros(0, dtype=np.int64)) for s in seeds]
    for f in fractions:
        m = n_to_remove(f, n)
        if attribution:
            jobs += [Job("attribution", f, s, order[:m]) for s in seeds]
        if baselines:
            jobs += [Job("random", f, s, random_removal(n, m, s)) for s in seeds]
    return jobs


def _experiment(run, data, order, fractions, seeds, eval_set, baselines, hparams, device, progress, desc,
                meta, attribution: bool = True) -> EvalResult:
    start = time.perf_counter()
    jobs = removal_jobs(order, fractions, seeds, baselines, attribution)
    rows, _ = retrain_jobs(run, data, jobs, eval_set, hparams, device, progress, desc)
    meta = {"dataset": getattr(data, "name", None), "model": base_run(run).model_name, "n_train": len(data.train),
            "n_eval": len(eval_set), "fractions": list(fractions), "seeds": list(seeds), "retrain_models": len(jobs),
            "retrain_total_s": float(rows["retrain_s"].sum()) if len(rows) else 0.0,
            "wall_s": time.perf_counter() - start, **meta}
    return EvalResult(rows, meta)


#: Options shared by the ranked removal experiments (retraining score and pruning), with their defaults.
REMOVAL_OPTIONS = ("seeds", "tie_seed", "baselines", "hparams", "device", "progress")


def _ranked_removal(run, data, importance, end: str, fractions, eval_set, seeds=(0, 1, 2), tie_seed=0,
                    baselines=True, hparams=None, device="auto", progress=True) -> EvalResult:
    """Remove round(p n) points from the ``end`` ("highest" or "lowest") of ``importance``, retrain, measure
    ``eval_set`` (default ``data.test``): the retraining score and pruning differ only in that end."""
    imp = as_importance(importance, len(data.train))
    order = removal_order(imp if end == "highest" else -imp, tie_seed)
    evaluation = "retraining_score" if end == "highest" else "pruning"
    return _experiment(run, data, order, _check_fractions(fractions), _check_seeds(seeds),
                       data.test if eval_set is None else eval_set, baselines, hparams, device, progress,
                       evaluation.replace("_", " "), {"evaluation": evaluation, "tie_seed": tie_seed,
                                                      "removed_end": end})


# ----------------------------------------------------------------------------------------- public
def retraining_score(
    run,
    data,
    importance,
    fractions: Sequence[float] = (0.05, 0.1, 0.2),
    seeds: Sequence[int] = (0, 1, 2),
    targets: TensorDataset | None = None,
    tie_seed: int = 0,
    baselines: bool = True,
    hparams=None,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> EvalResult:
    """Remove the most important training points for T, retrain, and measure T (docs/methods.md,
    "Removal and retraining score").

    run: the base TrainRun (its model name, hyper-parameters and model options are reused; for TRAK
        ensembles a list whose first run is the base model).
    data: the DataBundle the run was trained on; points are indices into ``data.train`` (n points).
    importance: float (n,), higher = removing the point raises T's loss more (``Attribution.importance()``;
        an Attribution itself is accepted). Group attributions give every member its per-member share,
        so ties are broken by a random order seeded with ``tie_seed``.
    fractions: removal fractions p in (0, 1); round(p n) points are removed.
    seeds: retraining seeds (each model is trained from scratch with ``ggda.train.fit(seed=s)``).
    targets: the evaluation set T (default ``data.test``).
    baselines: add "none" (no removal, fraction 0, once per seed) and "random" (same fractions and seeds)
        rows.
    hparams: training hyper-parameters (an HParams or a dict of overrides of ``run.hparams``); default the
        base model's.
    Returns an EvalResult: rows (kind, fraction, seed, n_removed, accuracy, loss, retrain_s) with accuracy
    a fraction on T, loss the mean cross-entropy on T in nats and retrain_s training seconds.
    """
    return _ranked_removal(run, data, importance, "highest", fractions, targets, seeds=seeds, tie_seed=tie_seed,
                           baselines=baselines, hparams=hparams, device=device, progress=progress)


def baseline_scores(
    run,
    data,
    fractions: Sequence[float] = (0.05, 0.1, 0.2),
    seeds: Sequence[int] = (0, 1, 2),
    targets: TensorDataset | None = None,
    hparams=None,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> EvalResult:
    """The baselines of :func:`retraining_score` alone: "none" (no removal, once per seed) and "random"
    (round(p n) random points per fraction and seed, the same sets as there), so that one computation
    serves every attribution of a model. Arguments and rows as :func:`retraining_score`."""
    targets = data.test if targets is None else targets
    return _experiment(run, data, np.arange(len(data.train)), _check_fractions(fractions), _check_seeds(seeds),
                       targets, True, hparams, device, progress, "baselines",
                       {"evaluation": "baselines"}, attribution=False)


def pruning(run, data, importance, fractions: Sequence[float] = (0.1, 0.2, 0.3, 0.5),
            eval_set: TensorDataset | None = None, **options) -> EvalResult:
    """Dataset pruning: remove the p% *least* important training points, retrain, report accuracy.

    importance: float (n,) over ``data.train``, computed by the caller for a validation split that is
        disjoint from ``eval_set`` (see :func:`ggda.data.validation_split`), e.g.
        ``attribute(method, run, data.train, val, groups).importance()``. Negative values (harmful
        points) are removed first, then the least useful; ties are broken by a seeded random order.
    eval_set: where accuracy and loss are measured (default ``data.test``).
    options: ``seeds``, ``tie_seed``, ``baselines``, ``hparams``, ``device``, ``progress``, as in
        :func:`retraining_score`. A good ranking keeps accuracy above random pruning.
    """
    unknown = sorted(set(options) - set(REMOVAL_OPTIONS))
    if unknown:
        raise TypeError(f"pruning() got unexpected option(s) {', '.join(map(repr, unknown))}; it takes "
                        f"{', '.join(REMOVAL_OPTIONS)} besides run, data, importance, fractions and eval_set")
    return _ranked_removal(run, data, importance, "lowest", fractions, eval_set, **options)
