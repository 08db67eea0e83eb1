"""TracIn (TracInCP), individual and group: score(z, G) = sum_t eta_t grad L(z; theta_t) . g_G(theta_t),
over the checkpoints theta_t recorded by training with their learning rates eta_t; g_G is the group
gradient (sum of the members' loss gradients). Optionally both sides are randomly projected to d
dimensions (the same seeded projection for targets and training points): densely, or with per-layer
Kronecker factors (``projection="factored"``, ggda.factored: about one epoch per checkpoint for all
training features, no per-sample gradients)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from ..factored import FactoredEngine, factor_inner_products, single_position_layers
from ..gradients import GradientStore
from ..train import resolve_device
from .base import (Attribution, Timer, as_tensors, cached_train_features, make_engine, make_projector,
                   projection_options, resolve_groups, timed)


def checkpoint_ids(run, checkpoints: Sequence[int] | None) -> list[int]:
    """The checkpoint indices to use (default: all), checked against ``run.checkpoints``."""
    ids = list(range(len(run.checkpoints))) if checkpoints is None else list(checkpoints)
    if not ids or any(not 0 <= i < len(run.checkpoints) for i in ids):
        raise ValueError(f"checkpoints must be indices in [0, {len(run.checkpoints)}), got {checkpoints!r}")
    return ids


def tracin(run, train, targets, groups=None, *, checkpoints: Sequence[int] | None = None,
           proj_dim: int | None = None, projection: str = "auto", proj_kind: str = "gaussian", proj_seed: int = 0,
           params: str | Sequence[str] = "all", store=None, batch_size: int = 256, device="auto",
           progress: bool = True) -> Attribution:
    """TracIn scores (m targets x k groups).

    checkpoints: indices into ``run.checkpoints`` (default: all).
    proj_dim: project gradients to this many dimensions (None: exact dot products, streamed so that
        no n x p matrix is held). With projection "auto" and a model whose selected layers are all
        nn.Linear applied once per sample (MLPs, lr), the exact inner products are computed layer by
        layer from activations and output gradients, (delta_z . delta_i)(a_z . a_i), without forming
        any per-sample gradient; "dense" forces vectorised per-sample gradients.
    projection: with proj_dim, "dense" (a seeded p x d matrix applied to vectorised per-sample or group
        gradients), "factored" (per-layer Kronecker factors from one batched forward/backward pass;
        proj_dim is the total size shared by the layers; see ggda.factored) or "auto" (factored when
        every selected parameter is in a supported layer, else dense).
    store: a ggda.gradients.GradientStore (or a folder) where the projected training-side features of
        each checkpoint are kept and reused by later calls (needs proj_dim).
    """
    dev = resolve_device(device)
    timer = Timer(dev)
    tr, te = as_tensors(train, "train"), as_tensors(targets, "targets")
    groups = resolve_groups(groups, len(tr[0]))
    ck_ids = checkpoint_ids(run, checkpoints)
    if store is not None and proj_dim is None:
        raise ValueError("store needs proj_dim: only projected features are kept on disk")
    store = GradientStore(store) if isinstance(store, (str, os.PathLike)) else store
    projector = make_projector(run.model, params, proj_dim, proj_kind, proj_seed, projection)
    exact_layers = (single_position_layers(run.model, params, tr, dev)
                    if proj_dim is None and projection == "auto" else None)
    if exact_layers is not None:
        scores = _exact_factored(run, tr, te, groups, ck_ids, exact_layers, timer, batch_size, dev, progress)
    else:
        scores = _from_gradients(run, tr, te, groups, ck_ids, params, projector, store, timer, batch_size, dev,
                                 progress)
    opts = {"checkpoints": ck_ids, "lrs": [run.checkpoints[i].lr for i in ck_ids], "proj_dim": proj_dim,
            "proj_kind": proj_kind, "proj_seed": proj_seed, **projection_options(projector),
            "inner_products": "factored" if exact_layers is not None else "gradients",
            "params": params if isinstance(params, str) else list(params)}
    return Attribution("tracin", scores.cpu().double().numpy(), groups, timer.finish(groups.seconds), opts)


def _exact_factored(run, tr, te, groups, ck_ids, layers, timer: Timer, batch_size: int, device,
                    progress: bool) -> torch.Tensor:
    """Exact TracIn from per-layer activations and output gradients (see ``proj_dim`` in :func:`tracin`)."""
    labels = torch.as_tensor(groups.labels, device=device)
    scores = None
    for i in ck_ids:
        engine = FactoredEngine(run.model_at(i), layers, "loss", batch_size, device)
        with timer("target_gradients_s"):
            blocks = [f for _, f in engine.iter_factors(te, progress, f"TracIn targets ckpt {i}")]
            lr = run.checkpoints[i].lr
            target = [(torch.cat([b[j][0] for b in blocks]), torch.cat([b[j][1] for b in blocks]) * lr)
                      for j in range(len(layers.layers))]
        if scores is None:
            scores = torch.zeros(len(te[0]), groups.k, dtype=engine.dtype, device=device)
        train = engine.iter_factors(tr, progress, f"TracIn train ckpt {i}")
        for rows, factors in timed(train, timer, "train_gradients_s"):
            with timer("scoring_s"):
                scores.index_add_(1, labels[rows], factor_inner_products(target, factors))
    return scores


def _from_gradients(run, tr, te, groups, ck_ids, params, projector, store, timer: Timer, batch_size: int, dev,
                    progress: bool) -> torch.Tensor:
    """TracIn from (projected) per-sample target gradients and group gradients or features."""
    scores = None
    for i in ck_ids:
        ck = run.checkpoints[i]
        engine = make_engine(run.model_at(i), params, "loss", projector, batch_size, dev)
        with timer("target_gradients_s"):
            gz = engine.compute(te, progress=progress, desc=f"TracIn targets ckpt {i}") * ck.lr
        if scores is None:
            scores = torch.zeros(len(gz), groups.k, dtype=engine.dtype, device=dev)
        if store is not None:
            with timer("train_gradients_s"):
                features = cached_train_features(engine, tr, groups.labels, store, ck.state_dict, progress,
                                                 f"TracIn train ckpt {i}")
            with timer("scoring_s"):
                scores += gz @ features.T
            continue
        blocks = engine.iter_groups(tr, groups.labels, progress=progress, desc=f"TracIn train ckpt {i}")
        for ids, block in timed(blocks, timer, "train_gradients_s"):
            with timer("scoring_s"):
                scores[:, torch.from_numpy(ids).to(dev)] += gz @ block.T
    return scores
