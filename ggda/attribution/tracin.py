"""TracIn (TracInCP), individual and group: score(z, G) = sum_t eta_t grad L(z; theta_t) . g_G(theta_t),
over the checkpoints theta_t recorded by training with their learning rates eta_t; g_G is the group
gradient (sum of the members' loss gradients). Optionally both sides are randomly projected to d
dimensions (the same seeded projection for targets and training points): densely, or with per-layer
Kronecker factors (``projection="factored"``, ggda.factored: about one epoch per checkpoint for all
training features, no per-sample gradients).

Featurize, then score (ggda.attribution.features): the target side (eta_t grad L(z; theta_t) per
checkpoint) does not depend on the grouping, nor, with the factored projection, do the training points'
own features, from which every group's feature is the exact sum of its members'.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..factored import FactoredEngine, FactoredProjector, factor_inner_products, single_position_layers
from ..devices import resolve_device
from .base import (Attribution, Timer, check_finite_scores, checked_tensors, fingerprint, group_sum,
                   make_engine, make_projector, parameter_names, projection_options, resolve_groups, timed)
from ..grouping import Groups
from .features import Features, loaded, pick


def checkpoint_ids(run, checkpoints: Sequence[int] | None) -> list[int]:
    """The checkpoint indices to use (default: all), checked against ``run.checkpoints``."""
    ids = list(range(len(run.checkpoints))) if checkpoints is None else list(checkpoints)
    if not ids or any(not 0 <= i < len(run.checkpoints) for i in ids):
        raise ValueError(f"checkpoints must be indices in [0, {len(run.checkpoints)}), got {checkpoints!r}")
    return ids


class TracIn:
    """TracIn for one run and one set of options (see :func:`tracin`): ``featurize_targets``,
    ``featurize_train`` (factored projection only) and ``attribute``."""

    def __init__(self, run, *, checkpoints: Sequence[int] | None = None, proj_dim: int | None = None,
                 projection: str = "auto", proj_kind: str = "gaussian", proj_seed: int = 0,
                 params: str | Sequence[str] = "all", batch_size: int = 256, device="auto", progress: bool = True):
        self.run, self.params, self.batch_size, self.progress = run, params, batch_size, progress
        self.device = resolve_device(device)
        self.ck_ids = checkpoint_ids(run, checkpoints)
        self.projector = make_projector(run.model, params, proj_dim, proj_kind, proj_seed, projection)
        self.proj_dim, self.proj_kind, self.proj_seed, self.projection = proj_dim, proj_kind, proj_seed, projection
        self._layers: FactoredProjector | None | bool = False  # resolved on the first data seen

    def exact_layers(self, tensors) -> FactoredProjector | None:
        """The layer map of exact layer-wise inner products (projection "auto" with no projection made:
        proj_dim None or at least the parameter count; MLP layers), else None."""
        if self._layers is False:
            self._layers = (single_position_layers(self.run.model, self.params, tensors, self.device)
                            if self.projector is None and self.projection == "auto" else None)
        return self._layers

    @property
    def train_side(self) -> bool:
        """Whether the training side has grouping-independent features: only with the factored projection."""
        return isinstance(self.projector, FactoredProjector)

    def options(self, tensors) -> dict:
        return {"checkpoints": self.ck_ids, "lrs": [self.run.checkpoints[i].lr for i in self.ck_ids],
                "proj_dim": self.proj_dim, "proj_kind": self.proj_kind, "proj_seed": self.proj_seed,
                **projection_options(self.projector),
                "inner_products": "factored" if self.exact_layers(tensors) is not None else "gradients",
                "params": parameter_names(self.params)}

    def key(self, tensors) -> dict:
        """What either side's features depend on: the checkpoints, the data, the options."""
        return {"model": fingerprint([self.run.checkpoints[i].state_dict for i in self.ck_ids]),
                "data": fingerprint(list(tensors)), "options": self.options(tensors)}

    def _engine(self, i: int, layers=None):
        model = self.run.model_at(i)
        if layers is not None:
            return FactoredEngine(model, layers, "loss", self.batch_size, self.device)
        return make_engine(model, self.params, "loss", self.projector, self.batch_size, self.device)

    # ------------------------------------------------------------------------------------ featurize
    def featurize_targets(self, targets) -> Features:
        """Per checkpoint i, ``ckpt{i}`` = eta_i grad L(z; theta_i) (m, d); with exact layer-wise inner
        products, the per-layer factors ``ckpt{i}/layer{j}/a`` and ``.../delta`` (delta scaled by eta_i)."""
        te = checked_tensors(targets, "targets", self.run.model)
        timer = Timer(self.device)
        layers = self.exact_layers(te)
        arrays = {}
        with timer("target_gradients_s"):
            for i in self.ck_ids:
                lr = self.run.checkpoints[i].lr
                engine = self._engine(i, layers)
                if layers is not None:
                    blocks = [f for _, f in engine.iter_factors(te, self.progress, f"TracIn targets ckpt {i}")]
                    for j in range(len(layers.layers)):
                        arrays[f"ckpt{i}/layer{j}/a"] = torch.cat([b[j][0] for b in blocks]).cpu().numpy()
                        arrays[f"ckpt{i}/layer{j}/delta"] = (torch.cat([b[j][1] for b in blocks]) * lr).cpu().numpy()
                else:
                    gz = engine.compute(te, progress=self.progress, desc=f"TracIn targets ckpt {i}") * lr
                    arrays[f"ckpt{i}"] = gz.cpu().numpy()
        return Features("tracin", "targets", self.key(te), arrays, timer.seconds)

    def featurize_train(self, train) -> Features:
        """Per checkpoint i, ``ckpt{i}`` = every training point's factored feature (n, d). Without the
        factored projection there is nothing grouping-independent on this side: the artifact is empty
        and group gradients are computed for each grouping."""
        tr = checked_tensors(train, "train", self.run.model)
        timer = Timer(self.device)
        arrays = {}
        with timer("train_gradients_s"):
            for i in (self.ck_ids if self.train_side else []):
                feats = self._engine(i).compute(tr, progress=self.progress, desc=f"TracIn train ckpt {i}")
                arrays[f"ckpt{i}"] = feats.cpu().numpy()
        return Features("tracin", "train", self.key(tr), arrays, timer.seconds)

    # ---------------------------------------------------------------------------------------- score
    def attribute(self, train, targets, groups=None, features=None) -> Attribution:
        """Scores (m, k); ``features`` (Features or paths, either side) are reused after their check."""
        tr, te = checked_tensors(train, "train", self.run.model), checked_tensors(targets, "targets", self.run.model)
        groups = resolve_groups(groups, len(tr[0]))
        timer = Timer(self.device)
        features = loaded(features)
        target_f, train_f = pick(features, "targets"), pick(features, "train")
        if target_f is not None:
            target_f.require("tracin", "targets", self.key(te), "the target features")
        if train_f is not None:
            train_f.require("tracin", "train", self.key(tr), "the training features")
        reused = target_f is not None
        target_f = target_f if reused else self.featurize_targets(te)
        timer.add(target_f.timing, cached=reused)
        scores = self._score(tr, te, groups, target_f, train_f, timer)
        check_finite_scores(scores, "tracin")
        return Attribution("tracin", scores.cpu().double().numpy(), groups, timer.finish(groups.seconds),
                           self.options(tr))

    def _score(self, tr, te, groups, target_f: Features, train_f: Features | None, timer: Timer) -> torch.Tensor:
        dev, m = self.device, len(te[0])
        layers = self.exact_layers(tr)
        scores = None
        if train_f is not None:
            timer.add(train_f.timing, cached=True)
        elif self.train_side:
            train_f = self.featurize_train(tr)
            timer.add(train_f.timing, cached=False)
        for i in self.ck_ids:
            if layers is not None:
                target = [(target_f.tensor(f"ckpt{i}/layer{j}/a", dev), target_f.tensor(f"ckpt{i}/layer{j}/delta", dev))
                          for j in range(len(layers.layers))]
                if scores is None:
                    scores = torch.zeros(m, groups.k, dtype=target[0][0].dtype, device=dev)
                labels = torch.as_tensor(groups.labels, device=dev)
                train = self._engine(i, layers).iter_factors(tr, self.progress, f"TracIn train ckpt {i}")
                for rows, factors in timed(train, timer, "train_gradients_s"):
                    with timer("scoring_s"):
                        scores.index_add_(1, labels[rows], factor_inner_products(target, factors))
                continue
            gz = target_f.tensor(f"ckpt{i}", dev)
            if scores is None:
                scores = torch.zeros(m, groups.k, dtype=gz.dtype, device=dev)
            if train_f is not None and train_f.has(f"ckpt{i}"):
                with timer("scoring_s"):
                    scores += gz @ group_sum(train_f.tensor(f"ckpt{i}", dev), groups.labels, groups.k).T
                continue
            blocks = self._engine(i).iter_groups(tr, groups.labels, progress=self.progress,
                                                 desc=f"TracIn train ckpt {i}")
            for ids, block in timed(blocks, timer, "train_gradients_s"):
                with timer("scoring_s"):
                    scores[:, torch.from_numpy(ids).to(dev)] += gz @ block.T
        return scores


def tracin(run, train, targets, groups=None, *, checkpoints: Sequence[int] | None = None,
           proj_dim: int | None = None, projection: str = "auto", proj_kind: str = "gaussian", proj_seed: int = 0,
           params: str | Sequence[str] = "all", features=None, batch_size: int = 256, device="auto",
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
        proj_dim is the total size shared by the layers; see ggda.factored) or "auto": no projection
        when proj_dim >= p, the number of selected parameters (exact inner products, as with
        proj_dim=None; ``options["projection"]`` is then "none"); dense when a selected parameter is
        outside nn.Linear / nn.Conv2d layers; else factored when every covered layer keeps its output
        side whole (lr with up to sqrt(proj_dim) classes: each score's error is then relative to the
        score; digits lr at 512: Spearman 0.99 against dense's 0.80) or when the p x proj_dim dense
        matrix exceeds ggda.attribution.base.AUTO_DENSE_MAX (2^27 entries); otherwise dense, which
        keeps more where both factors of a layer are projected (MLP hidden layers, convolutions).
        ``options["projection"]`` records the choice; ggda.attribution.base.resolve_projection has
        the rule and its measurements.
    features: target-side and (factored projection) training-side features made earlier by
        ``ggda.featurize("tracin", ...)`` with the same options (Features objects or paths); checked
        against this call's model, data and options, then reused instead of recomputed.
    """
    core = TracIn(run, checkpoints=checkpoints, proj_dim=proj_dim, projection=projection, proj_kind=proj_kind,
                  proj_seed=proj_seed, params=params, batch_size=batch_size, device=device, progress=progress)
    return core.attribute(train, targets, groups, features)


def tracin_self(run, tr, groups: Groups, *, timer: Timer, device: torch.device,
                 checkpoints: Sequence[int] | None = None, proj_dim: int | None = None, projection: str = "auto",
                 proj_kind: str = "gaussian", proj_seed: int = 0, params: str | Sequence[str] = "all",
                 batch_size: int = 256, progress: bool = True):
    """Group self-influence of TracIn, S(G) = sum_t eta_t |g_G(theta_t)|^2 (projected when ``proj_dim`` is
    set); float64 (k,) and the options used."""
    # the attribution's own core: the same checkpoints, projection and parameter selection
    core = TracIn(run, checkpoints=checkpoints, proj_dim=proj_dim, projection=projection, proj_kind=proj_kind,
                  proj_seed=proj_seed, params=params, batch_size=batch_size, device=device, progress=progress)
    scores = torch.zeros(groups.k, dtype=torch.float64)
    for i in core.ck_ids:
        lr = run.checkpoints[i].lr
        blocks = core._engine(i).iter_groups(tr, groups.labels, progress=progress, desc=f"TracIn self ckpt {i}")
        for ids, block in timed(blocks, timer, "train_gradients_s"):
            with timer("scoring_s"):
                scores[torch.from_numpy(ids)] += lr * (block * block).sum(1).double().cpu()
    opts = {"checkpoints": core.ck_ids, "proj_dim": proj_dim, "proj_kind": proj_kind, "proj_seed": proj_seed,
            **projection_options(core.projector), "params": parameter_names(params)}
    return scores.numpy(), opts
