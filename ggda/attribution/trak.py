"""TRAK (Park et al. 2023), individual and group.

For each model m of an ensemble: features phi = P^T grad f (P a seeded random projection to d
dimensions, f the margin output: logit of the label minus logsumexp of the others); Q_i = 1 - p_i(y_i).
Individual score: tau(z, i) = mean_m [phi_z^T K_m^-1 phi_i] * mean_m Q_i, with K = sum_i phi_i phi_i^T.

Group version: phi_G = sum_{i in G} phi_i (a group gradient of the margin, one pass, never per-sample),
the kernel from group features with a size correction, K = sum_G phi_G phi_G^T / |G| (for a group of
similar points phi_G ~ |G| phi, so each group contributes like its |G| members would), and Q_G the
mean of its members' Q. tau(z, G) = mean_m [phi_z^T K_m^-1 phi_G] * mean_m Q_G. With singleton groups
this is individual TRAK exactly.

Kernel (``kernel=``): "groups" (the default, above); "groups-unscaled", K = sum_G phi_G phi_G^T (group
features throughout, no size correction); "individual", K = sum_i phi_i phi_i^T from every point's own
features, and tau(z, G) = sum over the members i of G of the individual score tau(z, i) (needs the
individual features: with the dense projection this costs what individual TRAK costs).

Damping: K + damping * (trace K / d) I (relative to the mean eigenvalue; default 0.1,
:data:`DEFAULT_DAMPING`); the solve is in float64.
With k groups and d feature dimensions the group kernel has rank at most k: when k is near or below d,
the undamped solve interpolates rather than regresses, and a larger damping helps (docs/grouping-study.md).

Projection: dense (a seeded p x d matrix applied to vectorised per-sample or group gradients), per-layer
Kronecker factors (``projection="factored"``, ggda.factored: one batched forward/backward pass for all
training features, Q from the same pass), or none (``proj_dim=None``: the raw gradients, for small
parameter sets).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from ..factored import FactoredEngine
from ..gradients import GradientStore
from ..train import resolve_device, split_batch
from .base import (Attribution, Timer, as_tensors, cached_train_features, make_engine, make_projector,
                   projection_options, resolve_groups)


def _label_probability(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """p(y_i) for every row of logits (B, C), (B,)."""
    return logits.softmax(-1).gather(1, y[:, None]).squeeze(1)


@torch.no_grad()
def correct_class_probability(model, tensors, batch_size: int, device) -> torch.Tensor:
    """p_i(y_i) for every row, (n,)."""
    out = []
    n = len(tensors[0])
    for lo in range(0, n, batch_size):
        xs, y = split_batch(tuple(t[lo:lo + batch_size] for t in tensors), model, device)
        out.append(_label_probability(model(*xs), y))
    return torch.cat(out)


def ensemble(runs, damping: float) -> list:
    """The ensemble as a non-empty list of runs (one run or a list of them); checks the damping."""
    runs = list(runs) if isinstance(runs, (list, tuple)) else [runs]
    if not runs:
        raise ValueError("trak needs at least one trained model")
    if damping < 0:
        raise ValueError(f"damping must be non-negative, got {damping}")
    return runs


def model_features(run, j: int, tensors, groups, *, proj_dim: int | None, proj_kind: str, proj_seed: int, params,
                   store, batch_size: int, device: torch.device, progress: bool, projection: str = "dense"):
    """Model j of the ensemble: its gradient engine, the group features phi_G (k, d) float64 and the
    group Q (k,) = mean of the members' 1 - p(y)."""
    projector = make_projector(run.model, params, proj_dim, proj_kind, proj_seed + j, projection)
    engine = make_engine(run.model, params, "margin", projector, batch_size, device)
    q = None
    if store is not None:
        phi = cached_train_features(engine, tensors, groups.labels, store, run.model.state_dict(), progress,
                                    f"TRAK train model {j}")
    elif isinstance(engine, FactoredEngine):  # Q from the same pass's logits: no second forward pass
        res = engine.pass_over(tensors, groups.labels, progress=progress, desc=f"TRAK train model {j}")
        phi, y = res["features"], tensors[-1].to(device)
        q = 1.0 - _label_probability(res["logits"], y).double()
    else:
        phi = engine.compute(tensors, groups.labels, progress=progress, desc=f"TRAK train model {j}")
    if q is None:
        q = 1.0 - correct_class_probability(engine.model, tensors, 1024, device).double()
    labels = torch.as_tensor(groups.labels, device=device)
    sizes = torch.as_tensor(groups.sizes, dtype=torch.float64, device=device)
    q_group = torch.zeros(groups.k, dtype=torch.float64, device=device).index_add_(0, labels, q) / sizes
    return engine, phi.double(), q_group


def kernel_solve(phi: torch.Tensor, sizes: torch.Tensor, damping: float, rhs: torch.Tensor) -> torch.Tensor:
    """rows of ``rhs`` (r, d) times K^-1, K = sum_G phi_G phi_G^T / |G| + damping * mean(diag K) I."""
    scaled = phi / sizes.sqrt()[:, None]
    kernel = scaled.T @ scaled
    kernel.diagonal().add_(damping * kernel.diagonal().mean())
    return torch.linalg.solve(kernel, rhs.T).T


KERNELS = ("groups", "groups-unscaled", "individual")
#: Default relative damping of the kernel. 0.1 rather than TRAK's near-zero ridge: against
#: leave-one-group-out retraining of logistic regression (benchmarks/trak_group_forms.py) the group
#: kernel's Spearman rises from 0.15 at 1e-6 to 0.76 at 0.1 on breast_cancer, and removal on MNIST and
#: affairs improves for groups (docs/grouping-study.md).
DEFAULT_DAMPING = 0.1


def trak(runs, train, targets, groups=None, *, proj_dim: int | None = 256, projection: str = "auto",
         proj_kind: str = "gaussian",
         proj_seed: int = 0, damping: float = DEFAULT_DAMPING, kernel: str = "groups",
         params: str | Sequence[str] = "all", store=None, batch_size: int = 256, device="auto", progress: bool = True) -> Attribution:
    """TRAK scores (m targets x k groups), averaged over the ensemble ``runs`` (a TrainRun or a list of
    independently trained TrainRuns; their final models are used). Model j uses projection seed
    ``proj_seed + j``. proj_dim: feature size (None: no projection, the raw gradients). projection:
    "dense", "factored" (per-layer Kronecker factors; proj_dim is the total size shared by the layers)
    or "auto" (factored when every selected parameter is in a supported layer, else dense).
    store: a ggda.gradients.GradientStore (or a folder) keeping each model's projected training-side
    features for reuse by later calls (e.g. new targets).
    kernel: "groups", "groups-unscaled" or "individual" (module docstring)."""
    store = GradientStore(store) if isinstance(store, (str, os.PathLike)) else store
    runs = ensemble(runs, damping)
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(map(repr, KERNELS))}, got {kernel!r}")
    dev = resolve_device(device)
    timer = Timer(dev)
    tr, te = as_tensors(train, "train"), as_tensors(targets, "targets")
    groups = resolve_groups(groups, len(tr[0]))
    # the rows the features and the kernel are built from: every point for the individual kernel
    rows = resolve_groups(None, groups.n) if kernel == "individual" else groups
    sizes = torch.as_tensor(rows.sizes if kernel == "groups" else np.ones(rows.k), dtype=torch.float64, device=dev)
    score_sum = torch.zeros(len(te[0]), rows.k, dtype=torch.float64, device=dev)
    q_sum = torch.zeros(rows.k, dtype=torch.float64, device=dev)
    for j, run in enumerate(runs):
        with timer("train_gradients_s"):
            engine, phi, q_group = model_features(run, j, tr, rows, proj_dim=proj_dim, proj_kind=proj_kind,
                                                  proj_seed=proj_seed, params=params, store=store,
                                                  batch_size=batch_size, device=dev, progress=progress,
                                                  projection=projection)
            q_sum += q_group
        with timer("target_gradients_s"):
            phi_z = engine.compute(te, progress=progress, desc=f"TRAK targets model {j}").double()
        with timer("solve_s"):
            x = kernel_solve(phi, sizes, damping, phi_z)  # (m, d): phi_z^T K^-1
        with timer("scoring_s"):
            score_sum += x @ phi.T
    with timer("scoring_s"):
        scores = (score_sum / len(runs)) * (q_sum / len(runs))
        if kernel == "individual" and groups.k < groups.n:  # each group: the sum of its members' scores
            labels = torch.as_tensor(groups.labels, device=dev)
            scores = torch.zeros(len(scores), groups.k, dtype=scores.dtype, device=dev).index_add_(1, labels, scores)
    opts = {"models": len(runs), "proj_dim": proj_dim, "proj_kind": proj_kind, "proj_seed": proj_seed,
            **projection_options(engine.projector), "damping": damping, "kernel": kernel,
            "params": params if isinstance(params, str) else list(params)}
    return Attribution("trak", scores.cpu().numpy(), groups, timer.finish(groups.seconds), opts)
