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

Damping (``relative_damping``): K + relative_damping * (trace K / d) I, relative to the kernel's mean
eigenvalue (default 0.1, :data:`DEFAULT_DAMPING`; IF's ``damping`` is absolute, a different quantity); the
solve is in float64. ``damping`` is accepted as its deprecated old name.
With k groups and d feature dimensions the group kernel has rank at most k: when k is near or below d,
the undamped solve interpolates rather than regresses, and a larger relative damping helps (docs/grouping-study.md).

Projection: dense (a seeded p x d matrix applied to vectorised per-sample or group gradients), per-layer
Kronecker factors (``projection="factored"``, ggda.factored: one batched forward/backward pass for all
training features, Q from the same pass), or none (``proj_dim=None``, or ``projection="auto"`` with proj_dim
at least the number of selected parameters: the raw gradients, for small parameter sets). "auto" (the
default) chooses between them (:func:`trak`).

Featurize, then score (ggda.attribution.features): the targets' phi_z of each model does not depend on
the grouping, nor, with the factored projection, do the training points' own features and Q, from
which every group's feature is the exact sum of its members'.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from ..factored import FactoredProjector
from ..devices import resolve_device, split_batch
from .base import (Attribution, Timer, check_damping, check_finite_scores, checked_tensors, fingerprint,
                   group_sum, make_engine, make_projector, parameter_names, projection_options, resolve_groups)
from ..grouping import Groups
from .features import Features, loaded, pick


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


def ensemble(runs) -> list:
    """The ensemble as a non-empty list of runs (one run or a list of them)."""
    runs = list(runs) if isinstance(runs, (list, tuple)) else [runs]
    if not runs:
        raise ValueError("trak needs at least one trained model")
    return runs


def _relative_damping(relative_damping: float, damping: float | None) -> float:
    """The relative damping, from its deprecated old name ``damping`` when that is given; checked."""
    if damping is not None:
        warnings.warn("TRAK's damping is now called relative_damping (it scales the kernel's mean diagonal; "
                      "IF's damping is absolute): pass relative_damping=", FutureWarning, stacklevel=3)
        relative_damping = damping
    check_damping(relative_damping, name="relative_damping")
    return relative_damping


def kernel_solve(phi: torch.Tensor, sizes: torch.Tensor, relative_damping: float, rhs: torch.Tensor) -> torch.Tensor:
    """rows of ``rhs`` (r, d) times K^-1, K = sum_G phi_G phi_G^T / |G| + relative_damping * mean(diag K) I."""
    scaled = phi / sizes.sqrt()[:, None]
    kernel = scaled.T @ scaled
    kernel.diagonal().add_(relative_damping * kernel.diagonal().mean())
    return torch.linalg.solve(kernel, rhs.T).T


KERNELS = ("groups", "groups-unscaled", "individual")
#: Default relative damping of the kernel. 0.1 rather than TRAK's near-zero ridge: against
#: leave-one-group-out retraining of logistic regression (benchmarks/trak_group_forms.py) the group
#: kernel's Spearman rises from 0.15 at 1e-6 to 0.76 at 0.1 on breast_cancer, and removal on MNIST and
#: affairs improves for groups (docs/grouping-study.md).
DEFAULT_DAMPING = 0.1


class Trak:
    """TRAK for one ensemble and one set of options (see :func:`trak`): ``featurize_targets``,
    ``featurize_train`` (factored projection only), ``group_features`` and ``attribute``."""

    def __init__(self, runs, *, proj_dim: int | None = 256, projection: str = "auto", proj_kind: str = "gaussian",
                 proj_seed: int = 0, relative_damping: float = DEFAULT_DAMPING, kernel: str = "groups",
                 params: str | Sequence[str] = "all", batch_size: int = 256, device="auto", progress: bool = True,
                 damping: float | None = None):
        self.runs = ensemble(runs)
        relative_damping = _relative_damping(relative_damping, damping)
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(map(repr, KERNELS))}, got {kernel!r}")
        self.relative_damping, self.kernel, self.params = relative_damping, kernel, params
        self.proj_dim, self.proj_kind, self.proj_seed = proj_dim, proj_kind, proj_seed
        self.batch_size, self.progress = batch_size, progress
        self.device = resolve_device(device)
        # model j projects with seed proj_seed + j
        self.projectors = [make_projector(run.model, params, proj_dim, proj_kind, proj_seed + j, projection,
                                          relative_damping=relative_damping)
                           for j, run in enumerate(self.runs)]

    @property
    def train_side(self) -> bool:
        """Whether the training side has grouping-independent features: only with the factored projection."""
        return all(isinstance(p, FactoredProjector) for p in self.projectors)

    def feature_options(self) -> dict:
        return {"models": len(self.runs), "proj_dim": self.proj_dim, "proj_kind": self.proj_kind,
                "proj_seed": self.proj_seed, **projection_options(self.projectors[0]),
                "params": parameter_names(self.params)}

    def key(self, tensors) -> dict:
        """What either side's features depend on: the ensemble's parameters, the data, the projection."""
        return {"model": fingerprint([run.model.state_dict() for run in self.runs]),
                "data": fingerprint(list(tensors)), "options": self.feature_options()}

    def _engine(self, j: int):
        return make_engine(self.runs[j].model, self.params, "margin", self.projectors[j], self.batch_size, self.device)

    def featurize_targets(self, targets) -> Features:
        """Per model j, ``model{j}`` = phi_z (m, d) float64."""
        te = checked_tensors(targets, "targets", self.runs[0].model)
        timer = Timer(self.device)
        arrays = {}
        with timer("target_gradients_s"):
            for j in range(len(self.runs)):
                phi_z = self._engine(j).compute(te, progress=self.progress, desc=f"TRAK targets model {j}")
                arrays[f"model{j}"] = phi_z.double().cpu().numpy()
        return Features("trak", "targets", self.key(te), arrays, timer.seconds)

    def featurize_train(self, train) -> Features:
        """Per model j, ``model{j}/q`` (n,) float64, every point's 1 - p(y), and with the factored
        projection ``model{j}/features`` (n, d), every point's feature, from the same pass (otherwise group
        features are computed for each grouping)."""
        tr = checked_tensors(train, "train", self.runs[0].model)
        timer = Timer(self.device)
        arrays = {}
        with timer("train_gradients_s"):
            for j in range(len(self.runs)):
                engine = self._engine(j)
                if self.train_side:
                    res = engine.pass_over(tr, progress=self.progress, desc=f"TRAK train model {j}")
                    q = 1.0 - _label_probability(res["logits"], tr[-1].to(self.device)).double()
                    arrays[f"model{j}/features"] = res["features"].cpu().numpy()
                else:
                    q = 1.0 - correct_class_probability(engine.model, tr, 1024, self.device).double()
                arrays[f"model{j}/q"] = q.cpu().numpy()
        return Features("trak", "train", self.key(tr), arrays, timer.seconds)

    def group_features(self, j: int, tr, groups, train_f: Features | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Model j's group features phi_G (k, d) float64 and group Q (k,) = mean of the members' 1 - p(y),
        from the training features when given, else computed directly."""
        dev = self.device
        if train_f is not None and train_f.has(f"model{j}/features"):
            phi = group_sum(train_f.tensor(f"model{j}/features", dev), groups.labels, groups.k)
        else:
            phi = self._engine(j).compute(tr, groups.labels, progress=self.progress, desc=f"TRAK train model {j}")
        if train_f is not None:
            q = train_f.tensor(f"model{j}/q", dev)
        else:
            q = 1.0 - correct_class_probability(self.runs[j].model, tr, 1024, dev).double()
        labels = torch.as_tensor(groups.labels, device=dev)
        sizes = torch.as_tensor(groups.sizes, dtype=torch.float64, device=dev)
        q_group = torch.zeros(groups.k, dtype=torch.float64, device=dev).index_add_(0, labels, q) / sizes
        return phi.double(), q_group

    def train_features(self, tr, features, timer: Timer) -> Features | None:
        """The training features to score from: the given ones (checked), made now (factored projection),
        or None (dense: group features and Q are computed per grouping)."""
        train_f = pick(loaded(features), "train")
        if train_f is not None:
            train_f.require("trak", "train", self.key(tr), "the training features")
            timer.add(train_f.timing, cached=True)
        elif self.train_side:
            train_f = self.featurize_train(tr)
            timer.add(train_f.timing, cached=False)
        return train_f

    def attribute(self, train, targets, groups=None, features=None) -> Attribution:
        """Scores (m, k); ``features`` (Features or paths, either side) are reused after their check."""
        dev = self.device
        timer = Timer(dev)
        tr, te = checked_tensors(train, "train", self.runs[0].model), checked_tensors(targets, "targets", self.runs[0].model)
        groups = resolve_groups(groups, len(tr[0]))
        features = loaded(features)
        target_f = pick(features, "targets")
        if target_f is not None:
            target_f.require("trak", "targets", self.key(te), "the target features")
            timer.add(target_f.timing, cached=True)
        else:
            target_f = self.featurize_targets(te)
            timer.add(target_f.timing, cached=False)
        train_f = self.train_features(tr, features, timer)
        # the rows the features and the kernel are built from: every point for the individual kernel
        rows = resolve_groups(None, groups.n) if self.kernel == "individual" else groups
        sizes = torch.as_tensor(rows.sizes if self.kernel == "groups" else np.ones(rows.k), dtype=torch.float64,
                                device=dev)
        score_sum = torch.zeros(len(te[0]), rows.k, dtype=torch.float64, device=dev)
        q_sum = torch.zeros(rows.k, dtype=torch.float64, device=dev)
        for j in range(len(self.runs)):
            with timer("train_gradients_s"):
                phi, q_group = self.group_features(j, tr, rows, train_f)
                q_sum += q_group
            with timer("solve_s"):
                x = kernel_solve(phi, sizes, self.relative_damping, target_f.tensor(f"model{j}", dev))  # phi_z^T K^-1
            with timer("scoring_s"):
                score_sum += x @ phi.T
        with timer("scoring_s"):
            scores = (score_sum / len(self.runs)) * (q_sum / len(self.runs))
            if self.kernel == "individual" and groups.k < groups.n:  # each group: the sum of its members' scores
                labels = torch.as_tensor(groups.labels, device=dev)
                scores = torch.zeros(len(scores), groups.k, dtype=scores.dtype, device=dev).index_add_(1, labels, scores)
        check_finite_scores(scores, "trak")
        opts = {**self.feature_options(), "relative_damping": self.relative_damping, "kernel": self.kernel}
        return Attribution("trak", scores.cpu().numpy(), groups, timer.finish(groups.seconds), opts)


def trak(runs, train, targets, groups=None, *, proj_dim: int | None = 256, projection: str = "auto",
         proj_kind: str = "gaussian", proj_seed: int = 0, relative_damping: float = DEFAULT_DAMPING,
         kernel: str = "groups", params: str | Sequence[str] = "all", features=None, batch_size: int = 256,
         device="auto", progress: bool = True, damping: float | None = None) -> Attribution:
    """TRAK scores (m targets x k groups), averaged over the ensemble ``runs`` (a TrainRun or a list of
    independently trained TrainRuns; their final models are used). Model j uses projection seed
    ``proj_seed + j``. proj_dim: feature size (None: no projection, the raw gradients). projection:
    "dense", "factored" (per-layer Kronecker factors; proj_dim is the total size shared by the layers)
    or "auto": the raw gradients when proj_dim >= p, the number of selected parameters (a p x p kernel;
    ``options["projection"]`` "none"); dense when a selected parameter is outside nn.Linear / nn.Conv2d
    layers; else factored when every covered layer keeps its output side whole (lr with up to
    sqrt(proj_dim) classes) and relative_damping >= ggda.attribution.base.AUTO_WHITENING_DAMPING (0.01; the
    default 0.1 qualifies: digits lr at 512, Spearman 0.72 against dense's 0.66), or when the p x
    proj_dim dense matrix exceeds AUTO_DENSE_MAX (2^27 entries); otherwise dense: a nearly unregularised
    kernel solve whitens the features and the dense projection keeps more of the gradients' span
    (relative_damping 1e-6: 0.81 against 0.60), as it keeps more of the inner products where both factors of a
    layer are projected. ``options["projection"]`` records the choice; resolve_projection in
    ggda.attribution.base has the rule and its measurements.
    relative_damping: the kernel's ridge as a multiple of its mean diagonal (module docstring); ``damping``
        is its deprecated old name.
    kernel: "groups", "groups-unscaled" or "individual" (module docstring).
    features: target-side and (factored projection) training-side features made earlier by
    ``ggda.featurize("trak", ...)`` with the same options (Features objects or paths); checked against
    this call's models, data and projection, then reused instead of recomputed."""
    core = Trak(runs, proj_dim=proj_dim, projection=projection, proj_kind=proj_kind, proj_seed=proj_seed,
                relative_damping=relative_damping, kernel=kernel, params=params, batch_size=batch_size,
                device=device, progress=progress, damping=damping)
    return core.attribute(train, targets, groups, features)


def trak_self(runs, tr, groups: Groups, *, timer: Timer, device: torch.device, proj_dim: int | None = 256,
               projection: str = "auto", proj_kind: str = "gaussian", proj_seed: int = 0,
               relative_damping: float = DEFAULT_DAMPING, params: str | Sequence[str] = "all", batch_size: int = 256,
               progress: bool = True, damping: float | None = None):
    """Group self-influence of TRAK, S(G) = mean_m [phi_G^T K_m^-1 phi_G] * mean_m Q_G (group kernel, as in
    :func:`trak`); float64 (k,) and the options used."""
    core = Trak(runs, proj_dim=proj_dim, projection=projection, proj_kind=proj_kind, proj_seed=proj_seed,
                relative_damping=relative_damping, params=params, batch_size=batch_size, device=device,
                progress=progress, damping=damping)
    sizes = torch.as_tensor(groups.sizes, dtype=torch.float64, device=device)
    self_sum = torch.zeros(groups.k, dtype=torch.float64, device=device)
    q_sum = torch.zeros(groups.k, dtype=torch.float64, device=device)
    train_f = core.train_features(tr, None, timer)
    for j in range(len(core.runs)):
        with timer("train_gradients_s"):
            phi, q_group = core.group_features(j, tr, groups, train_f)
            q_sum += q_group
        with timer("solve_s"):
            self_sum += (kernel_solve(phi, sizes, core.relative_damping, phi) * phi).sum(1)  # phi_G^T K^-1 phi_G
    scores = (self_sum / len(core.runs)) * (q_sum / len(core.runs))
    return scores.cpu().numpy(), {**core.feature_options(), "relative_damping": core.relative_damping}
