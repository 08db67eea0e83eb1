"""Self-influence of training points and groups, for noisy-label detection.

Definition (the same for every method): the self-influence of a group G is the method's own score of G
for the targets that are G's members, summed over them,

    S(G) = sum_{i in G} score(z_i, G),

i.e. the predicted effect of removing G on G's own summed output. Each point inherits the per-member
share S(G) / |G| (DESIGN.md section 4). With singleton groups this is the usual individual
self-influence. Because every method's score is linear in the target's gradient, and the members'
gradients sum to the group gradient, S(G) needs only the k group gradients, never per-sample ones:

=======  ==============================================================================================
method   S(G)
=======  ==============================================================================================
if       (H^-1 g_G)^T (g_G - |G| g_bar): the predicted increase of the members' summed loss when G is
         removed and the model retrained (H, g_G, g_bar and the centring as in ggda.attribution.influence;
         ``centre=False`` gives the classic g_G^T H^-1 g_G).
tracin   sum_t eta_t |g_G(theta_t)|^2 over the checkpoints (projected gradients when ``proj_dim`` is set).
trak     mean_m [phi_G^T K_m^-1 phi_G] * mean_m Q_G, with phi_G the projected margin group gradient, K_m the
         size-corrected group kernel and Q_G the mean of 1 - p(y_i) over G (as in ggda.attribution.trak).
=======  ==============================================================================================

Mislabelled points are fitted against the rest of the data: their gradients are large and specific, so
they have high self-influence. A group that collects them (e.g. gradient-space K-Means) keeps that
signal; a group mixing them with clean points dilutes it.

The options (damping, params, proj_dim, ...) mean the same as in ``ggda.attribute`` for that method, so
that ``self_influence(method, run, train, groups, **opts)`` equals the group-summed diagonal of
``attribute(method, run, train, train, groups, **opts)`` (tested).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..attribution.base import Timer, checked_tensors, make_engine, make_projector, projection_options, resolve_groups, timed
from ..attribution.influence import InverseCurvature
from ..attribution.tracin import checkpoint_ids
from ..attribution.trak import DEFAULT_DAMPING, Trak, kernel_solve
from ..gradients import GradientEngine
from ..grouping import Groups
from ..train import resolve_device

log = logging.getLogger(__name__)

METHODS = ("if", "tracin", "trak")


@dataclass
class SelfInfluence:
    """Group self-influence S(G) (see the module docstring).

    scores: float64 (k,). groups: the grouping (singletons for individual). timing: seconds, with the
    keys of ``Attribution.timing`` (grouping_s, train_gradients_s, solve_s, scoring_s, total_s, ...).
    """

    method: str
    scores: np.ndarray
    groups: Groups
    timing: dict[str, float] = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    def point_scores(self) -> np.ndarray:
        """float64 (n,): each point's share S(G) / |G| of its group's self-influence."""
        return self.groups.point_scores(self.scores)


def self_influence(method: str, run, train, groups: Groups | None = None, **options) -> SelfInfluence:
    """Self-influence S(G) of every group of the training points (module docstring).

    method: "if", "tracin" or "trak". run: a TrainRun (trak: one or a list, the ensemble).
    train: the training data (TensorDataset or DataBundle). groups: None = individual.
    options: as for ``ggda.attribute(method, ...)`` (e.g. damping, params, proj_dim, batch_size, device,
        progress).
    """
    try:
        fn = {"if": _if_self, "tracin": _tracin_self, "trak": _trak_self}[method]
    except KeyError:
        raise ValueError(f"unknown attribution method {method!r}: choose one of {', '.join(METHODS)}") from None
    model = (run[0] if isinstance(run, (list, tuple)) and run else run).model
    tr = checked_tensors(train, "train", model)
    groups = resolve_groups(groups, len(tr[0]))
    device = resolve_device(options.pop("device", "auto"))
    timer = Timer(device)
    scores, opts = fn(run, tr, groups, timer=timer, device=device, **options)
    return SelfInfluence(method, scores, groups, timer.finish(groups.seconds), opts)


def _if_self(run, tr, groups: Groups, *, timer: Timer, device: torch.device, params: str | Sequence[str] = "all",
             centre: bool = True, batch_size: int = 256, progress: bool = True, **solver_options):
    n = len(tr[0])
    engine = GradientEngine(run.model, params, "loss", None, batch_size, device)
    with timer("solve_s"):
        inverse = InverseCurvature(run, engine, tr, batch_size=batch_size, progress=progress, **solver_options)
    u = None
    if centre:  # H^-1 g_bar, with g_bar the mean training gradient (one pass as a single group)
        with timer("train_gradients_s"):
            g_bar = engine.compute(tr, np.zeros(n, dtype=np.int64)) / n
        with timer("solve_s"):
            u = inverse.solve(g_bar)[0]
    scores = torch.zeros(groups.k, dtype=torch.float64)
    sizes = torch.as_tensor(groups.sizes, dtype=engine.dtype, device=device)
    blocks = engine.iter_groups(tr, groups.labels, progress=progress, desc="IF self-influence")
    for ids, block in timed(blocks, timer, "train_gradients_s"):
        with timer("scoring_s"):
            val = (inverse.solve(block) * block).sum(1)
            if u is not None:
                val = val - sizes[torch.from_numpy(ids).to(device)] * (block @ u)
            scores[torch.from_numpy(ids)] = val.double().cpu()
    opts = {**inverse.describe(), "centre": centre, "params": params if isinstance(params, str) else list(params)}
    return scores.numpy(), opts


def _tracin_self(run, tr, groups: Groups, *, timer: Timer, device: torch.device,
                 checkpoints: Sequence[int] | None = None, proj_dim: int | None = None, projection: str = "auto",
                 proj_kind: str = "gaussian", proj_seed: int = 0, params: str | Sequence[str] = "all",
                 batch_size: int = 256, progress: bool = True):
    ck_ids = checkpoint_ids(run, checkpoints)
    projector = make_projector(run.model, params, proj_dim, proj_kind, proj_seed, projection)
    scores = torch.zeros(groups.k, dtype=torch.float64)
    for i in ck_ids:
        engine = make_engine(run.model_at(i), params, "loss", projector, batch_size, device)
        lr = run.checkpoints[i].lr
        blocks = engine.iter_groups(tr, groups.labels, progress=progress, desc=f"TracIn self ckpt {i}")
        for ids, block in timed(blocks, timer, "train_gradients_s"):
            with timer("scoring_s"):
                scores[torch.from_numpy(ids)] += lr * (block * block).sum(1).double().cpu()
    opts = {"checkpoints": ck_ids, "proj_dim": proj_dim, "proj_kind": proj_kind, "proj_seed": proj_seed,
            **projection_options(projector), "params": params if isinstance(params, str) else list(params)}
    return scores.numpy(), opts


def _trak_self(runs, tr, groups: Groups, *, timer: Timer, device: torch.device, proj_dim: int | None = 256,
               projection: str = "auto", proj_kind: str = "gaussian", proj_seed: int = 0, damping: float = DEFAULT_DAMPING,
               params: str | Sequence[str] = "all", batch_size: int = 256, progress: bool = True):
    core = Trak(runs, proj_dim=proj_dim, projection=projection, proj_kind=proj_kind, proj_seed=proj_seed,
                damping=damping, params=params, batch_size=batch_size, device=device, progress=progress)
    sizes = torch.as_tensor(groups.sizes, dtype=torch.float64, device=device)
    self_sum = torch.zeros(groups.k, dtype=torch.float64, device=device)
    q_sum = torch.zeros(groups.k, dtype=torch.float64, device=device)
    train_f = core.train_features(tr, None, timer)
    for j in range(len(core.runs)):
        with timer("train_gradients_s"):
            phi, q_group = core.group_features(j, tr, groups, train_f)
            q_sum += q_group
        with timer("solve_s"):
            self_sum += (kernel_solve(phi, sizes, damping, phi) * phi).sum(1)  # phi_G^T K^-1 phi_G
    scores = (self_sum / len(core.runs)) * (q_sum / len(core.runs))
    return scores.cpu().numpy(), {**core.feature_options(), "damping": damping}
