"""Groups of training points: individual, random, K-Means on inputs, representations or gradients.

``make(method, run, data, group_size)`` partitions ``data.train`` (n points) into k = ceil(n / group_size)
groups (docs/methods.md, "Groupings and group sizes") and returns a :class:`Groups`:

=============  ==========================================================================================
method         features clustered
=============  ==========================================================================================
individual     none: singleton groups (k = n), the individual-attribution baseline
random         none: a seeded random partition into k groups whose sizes differ by at most one
kmeans         the flattened inputs, standardised per feature (tabular and image data only), projected to
               ``proj_dim`` dims when longer
repr-kmeans    the model's penultimate representation ``run.model.features(*inputs)``
grad-kmeans    per-sample loss gradients at the head in closed form (``gradient``: of the head's parameters,
               of the logits or of the penultimate activations; by default the logits with three or more
               classes, the head's parameters with two), optionally normalised to unit length, projected
               to ``proj_dim`` dims, each class clustered separately by default
=============  ==========================================================================================

K-Means groups are not equal in size; ``max_group_size`` caps them, either by splitting the large ones
into random pieces (``oversize="split"``) or by moving their farthest members to the nearest centre
with room (``oversize="reassign"``). ``within_class=True`` groups each class separately, so that every
group is label-pure (the default of grad-kmeans). Every point then inherits its group's score divided by
the group size (:meth:`Groups.point_scores`); :func:`fidelity` measures how well that share tracks
individual scores.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._io import load_npz, save_npz
from .gradients import random_matrix

log = logging.getLogger(__name__)

METHODS = ("individual", "random", "kmeans", "repr-kmeans", "grad-kmeans")
#: What grad-kmeans clusters (:func:`last_layer_gradients`): the loss gradient with respect to the head's
#: parameters, to the logits, or to the penultimate activations (the head's input); "auto" = "logits" for
#: three or more classes, "head" for two (:func:`resolve_gradient`).
GRADIENTS = ("auto", "head", "logits", "penultimate")
#: How ``max_group_size`` treats a larger group: random pieces, or its farthest members moved elsewhere.
OVERSIZE = ("split", "reassign")
#: Methods that need a trained model (``run``).
MODEL_METHODS = ("repr-kmeans", "grad-kmeans")
#: Methods that cluster with K-Means (scikit-learn).
KMEANS_METHODS = ("kmeans", "repr-kmeans", "grad-kmeans")

#: K-Means restarts (k-means++ initialisations). One keeps grouping cheap next to attribution; the
#: paper's point is speed, and more restarts changed fidelity little in our measurements.
N_INIT = 1
#: Above this many points (per clustering problem: per class with ``within_class``), MiniBatchKMeans
#: replaces exact (Lloyd) KMeans, whose cost grows as n * k * d per iteration with k = n / group_size.
MINIBATCH_THRESHOLD = 20_000
#: MiniBatchKMeans batch size: at least this, and at least 3 * k (so every centre sees points per step).
MINIBATCH_SIZE = 4096
#: Default number of points per forward pass when computing features.
BATCH_SIZE = 1024

_FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------- Groups


@dataclass(eq=False, repr=False)
class Groups:
    """A partition of n training points into k non-empty groups.

    labels: int64 (n,), the group of each point, in [0, k) with every id used.
    method, group_size, seed, within_class, max_group_size, proj_dim: how it was made
        (group_size is 1 for ``individual``; None for custom labels).
    k_requested: the number of groups asked of the clustering (sum over classes with ``within_class``);
        ``k`` is the number obtained (fewer when K-Means left clusters empty, more after
        ``max_group_size`` splits).
    seconds: wall seconds of the whole :func:`make` call, features included; feature_seconds and
        cluster_seconds are its two parts.
    """

    labels: np.ndarray
    method: str = "custom"
    group_size: int | None = None
    seed: int | None = None
    within_class: bool = False
    k_requested: int | None = None
    max_group_size: int | None = None
    proj_dim: int | None = None
    gradient: str | None = None
    normalize: bool = False
    oversize: str | None = None
    seconds: float = 0.0
    feature_seconds: float = 0.0
    cluster_seconds: float = 0.0

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
            raise ValueError(f"labels must be a 1-d integer array, got shape {labels.shape} and dtype "
                             f"{labels.dtype}")
        labels = labels.astype(np.int64, copy=False)
        if labels.size == 0:
            raise ValueError("labels is empty: a grouping needs at least one training point")
        if labels.min() < 0 or np.bincount(labels).min() == 0:
            raise ValueError("labels must be consecutive group ids 0..k-1 with no empty group; "
                             "use Groups.from_labels(labels) to relabel arbitrary ids")
        self.labels = labels
        if self.k_requested is None:
            self.k_requested = self.k

    # ---- derived
    @property
    def n(self) -> int:
        """Number of training points."""
        return int(self.labels.size)

    @property
    def k(self) -> int:
        """Number of groups."""
        return int(self.labels.max()) + 1

    @functools.cached_property
    def sizes(self) -> np.ndarray:
        """int64 (k,): the number of points in each group."""
        return np.bincount(self.labels, minlength=self.k).astype(np.int64)

    @functools.cached_property
    def members(self) -> list[np.ndarray]:
        """k sorted int64 index arrays: the points of each group."""
        order = np.argsort(self.labels, kind="stable")
        return np.split(order, np.cumsum(self.sizes)[:-1])

    def size_summary(self) -> dict[str, float]:
        """k and the min, median, max and mean group size (for tables)."""
        s = self.sizes
        return {"k": self.k, "min": int(s.min()), "median": float(np.median(s)), "max": int(s.max()),
                "mean": float(s.mean())}

    def __repr__(self) -> str:
        s = self.size_summary()
        return (f"Groups({self.method!r}, n={self.n}, k={s['k']}, group_size={self.group_size}, "
                f"sizes min/median/max={s['min']}/{s['median']:g}/{s['max']}, within_class={self.within_class}, "
                f"seed={self.seed}, seconds={self.seconds:.3g})")

    # ---- scores
    def point_scores(self, group_scores):
        """Each point's share of its group's score: (m, k) -> (m, n), or (k,) -> (n,).

        Point i of group G gets score(G) / |G| (docs/methods.md, "From group scores to point scores").
        Works on numpy arrays and torch tensors (on their device); integer scores are promoted to
        floating point.
        """
        if isinstance(group_scores, torch.Tensor):
            scores = group_scores if group_scores.is_floating_point() else group_scores.double()
            self._check_scores(scores.shape)
            lab = torch.as_tensor(self.labels, device=scores.device)
            sizes = torch.as_tensor(self.sizes, device=scores.device, dtype=scores.dtype)
            return scores[..., lab] / sizes[lab]
        scores = np.asarray(group_scores)
        if not np.issubdtype(scores.dtype, np.floating):
            scores = scores.astype(np.float64)
        self._check_scores(scores.shape)
        return scores[..., self.labels] / self.sizes[self.labels].astype(scores.dtype)

    def _check_scores(self, shape) -> None:
        if len(shape) not in (1, 2) or shape[-1] != self.k:
            raise ValueError(f"group_scores must have shape (m, k) or (k,) with k = {self.k} groups, "
                             f"got {tuple(shape)}")

    # ---- construction and files
    @classmethod
    def from_labels(cls, labels, method: str = "custom", **fields: Any) -> Groups:
        """Groups from any 1-d integer group ids (e.g. a user's own grouping), relabelled to 0..k-1
        in increasing order of the given ids. ``fields`` set the other attributes (group_size, seed, ...)."""
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(f"labels must be a non-empty 1-d array, got shape {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must hold integer group ids, got dtype {labels.dtype}")
        return cls(_relabel(labels), method=method, **fields)

    _TIMING = ("seconds", "feature_seconds", "cluster_seconds")

    @property
    def feature_dim(self) -> int | None:
        """Deprecated old name of :attr:`proj_dim`."""
        warnings.warn("Groups.feature_dim is deprecated: use Groups.proj_dim", DeprecationWarning, stacklevel=2)
        return self.proj_dim

    def _meta(self) -> dict[str, Any]:
        return {"format": _FORMAT_VERSION, "method": self.method, "group_size": self.group_size,
                "seed": self.seed, "within_class": self.within_class, "k_requested": self.k_requested,
                "max_group_size": self.max_group_size, "oversize": self.oversize,
                "proj_dim": self.proj_dim, "gradient": self.gradient, "normalize": self.normalize}

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` (``labels``, ``sizes``, a JSON header and a checksum) to exactly ``path``, and
        the timings beside it (``<name>.timing.json``), atomically: the same groups are the same bytes."""
        path = Path(path)
        save_npz(path, {"labels": self.labels, "sizes": self.sizes}, self._meta(),
                 {key: getattr(self, key) for key in self._TIMING})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Groups:
        """Read a file written by :meth:`save` (timings 0 without the sidecar); a truncated or altered
        file is refused, naming it."""
        arrays, meta, timing = load_npz(path, "ggda groups")
        if meta.pop("format", None) != _FORMAT_VERSION:
            raise ValueError(f"{path} is not a groups file of format {_FORMAT_VERSION}: make it again")
        if "feature_dim" in meta:  # written before proj_dim got its name
            meta["proj_dim"] = meta.pop("feature_dim")
        return cls(arrays["labels"], **meta, **{key: timing.get(key, 0.0) for key in cls._TIMING})


# --------------------------------------------------------------------------------------------- make


def make(
    method: str,
    run,
    data,
    group_size: int,
    seed: int = 0,
    within_class: bool | None = None,
    max_group_size: int | None = None,
    proj_dim: int = 64,
    gradient: str = "auto",
    normalize: bool = False,
    oversize: str = "split",
    device: str | torch.device = "auto",
    batch_size: int = BATCH_SIZE,
    feature_dim: int | None = None,
) -> Groups:
    """Partition ``data.train`` into groups of about ``group_size`` points.

    method: one of :data:`METHODS` (see the module docstring).
    run: a trained :class:`ggda.train.TrainRun` (or a bare ``Classifier``) for repr-kmeans and
        grad-kmeans (its final model is used); ignored (may be None) otherwise.
    data: a DataBundle; the groups are over ``data.train``.
    group_size: positive integer s; k = ceil(n / s) groups (ignored by ``individual``).
    seed: seeds the random partition, the K-Means initialisation, the gradient projection and the
        ``max_group_size`` splits.
    within_class: group each class separately (k_c = ceil(n_c / s) groups for class c), so that every
        group holds a single label. None (the default) means True for grad-kmeans, whose gradient
        features depend on the label (gradients of different classes cancel in a mixed group's sum), and
        False for random, kmeans and repr-kmeans (the paper's groupings). ``individual`` ignores it (its
        singletons are pure anyway) and records False. The evidence: docs/grouping-study.md.
    max_group_size: cap on the number of points in a group (None: no cap); see ``oversize``.
    oversize: what happens to a group above ``max_group_size``: "split" cuts it into ceil(size / max)
        random pieces of sizes differing by at most one (more groups than asked); "reassign" (K-Means
        methods only; needs max_group_size >= group_size) keeps the k clusters and moves the members
        farthest from a full cluster's centre to the nearest centre that has room (:func:`cap_clusters`).
    proj_dim: grad-kmeans and kmeans project their features (gradients; standardised inputs) to this
        many dimensions (seeded Gaussian) when they are longer (64: K-Means on 64 dimensions costs a third
        of 256 at equal fidelity, measured).
    gradient: grad-kmeans only: the loss gradient clustered, "head" (the head's weight and bias,
        C * (H + 1) values), "logits" (C values), "penultimate" (the head's input, H values) or "auto"
        (the default: "logits" with three or more classes, "head" with two, where the logit gradient of
        a class is a single number, the loss level); see :func:`last_layer_gradients` and
        docs/grouping-study.md for the evidence.
    normalize: grad-kmeans only: scale every gradient feature to unit length, so that points cluster
        by the direction of their gradient and not by how well they are fitted.
    device: where features are computed ("auto": CUDA when available); the model is moved there for
        the call and moved back afterwards.
    batch_size: points per forward pass for the feature computation.
    feature_dim: the deprecated old name of ``proj_dim``.
    """
    start = time.perf_counter()
    proj_dim = _renamed(proj_dim, feature_dim, 64)
    if method not in METHODS:
        raise ValueError(f"unknown grouping method {method!r}: choose one of {', '.join(METHODS)}")
    group_size = _positive_int(group_size, "group_size")
    proj_dim = _positive_int(proj_dim, "proj_dim")
    batch_size = _positive_int(batch_size, "batch_size")
    if max_group_size is not None:
        max_group_size = _positive_int(max_group_size, "max_group_size")
    _choice(gradient, GRADIENTS, "gradient")
    _choice(oversize, OVERSIZE, "oversize")
    if within_class is None:
        within_class = method == "grad-kmeans"
    if not isinstance(within_class, (bool, np.bool_)):
        raise ValueError(f"within_class must be True, False or None (the method's default), got {within_class!r}")
    if not isinstance(normalize, (bool, np.bool_)):
        raise ValueError(f"normalize must be True or False, got {normalize!r}")
    if oversize == "reassign" and max_group_size is not None:
        if method not in KMEANS_METHODS:
            raise ValueError(f"oversize='reassign' moves points between K-Means clusters; grouping method "
                             f"{method!r} has none: use oversize='split'")
        if max_group_size < group_size:
            raise ValueError(f"oversize='reassign' keeps the k = ceil(n / group_size) clusters, which cannot "
                             f"hold every point under max_group_size={max_group_size} < group_size="
                             f"{group_size}: raise max_group_size or use oversize='split'")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    seed = int(seed)
    if method in MODEL_METHODS and run is None:
        raise ValueError(f"grouping method {method!r} needs a trained model: pass run=a TrainRun "
                         f"(or a Classifier), or use 'random' or 'kmeans'")
    tensors = data.train.tensors
    n = len(tensors[0])
    if n == 0:
        raise ValueError("data.train is empty: nothing to group")
    y = tensors[-1].cpu().numpy()
    if method != "individual" and group_size > n:
        warnings.warn(f"group_size={group_size} exceeds the {n} training points: using group_size={n} "
                      "(a single group of every point, per class with within_class)", stacklevel=2)
        group_size = n

    feats = None
    if method == "kmeans":
        feats = input_features(data, proj_dim=proj_dim, seed=seed)
    elif method == "repr-kmeans":
        feats = representation_features(run, data, device=device, batch_size=batch_size)
    elif method == "grad-kmeans":
        feats = last_layer_gradients(run, data, proj_dim=proj_dim, seed=seed, device=device,
                                     batch_size=batch_size, gradient=gradient, normalize=normalize)
    feature_seconds = time.perf_counter() - start

    t0 = time.perf_counter()
    reassign = oversize == "reassign" and max_group_size is not None
    if method == "individual":
        labels, k_req = np.arange(n, dtype=np.int64), n
        group_size, within_class, max_group_size = 1, False, None
    else:
        rng = np.random.default_rng(seed)
        parts = [np.flatnonzero(y == c) for c in np.unique(y)] if within_class else [np.arange(n)]
        labels = np.empty(n, dtype=np.int64)
        offset, k_req = 0, 0
        for idx in parts:
            k = min(math.ceil(len(idx) / group_size), len(idx))
            k_req += k
            if method == "random":
                sub = _random_labels(len(idx), k, rng)
            else:
                sub = kmeans_labels(feats[idx], k, seed)
                if reassign:
                    sub = cap_clusters(feats[idx], sub, max_group_size)
            labels[idx] = sub + offset
            offset += int(sub.max()) + 1
        if max_group_size is not None and not reassign:
            labels = split_large(labels, max_group_size, seed)
        labels = _relabel(labels)
    cluster_seconds = time.perf_counter() - t0

    grad = method == "grad-kmeans"
    groups = Groups(labels, method=method, group_size=group_size, seed=seed, within_class=bool(within_class),
                    k_requested=k_req, max_group_size=max_group_size,
                    oversize=oversize if max_group_size is not None else None,
                    proj_dim=proj_dim if method in ("grad-kmeans", "kmeans") else None,
                    gradient=resolve_gradient(gradient, _model_of(run).head) if grad else None,
                    normalize=bool(normalize) and grad,
                    feature_seconds=feature_seconds, cluster_seconds=cluster_seconds)
    groups.seconds = time.perf_counter() - start
    log.info("grouping %s on %s: %r", method, getattr(data, "name", "data"), groups)
    return groups


def _choice(value, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Map arbitrary integer ids to 0..k-1 (in increasing order of the ids)."""
    return np.unique(labels, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _random_labels(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A random assignment of n points to k groups whose sizes differ by at most one."""
    return (rng.permutation(n) % k).astype(np.int64)


def split_large(labels: np.ndarray, max_group_size: int, seed: int = 0) -> np.ndarray:
    """Split every group larger than ``max_group_size`` into ceil(size / max) random pieces whose sizes
    differ by at most one (the first piece keeps the group's id, the others get new ids after the
    largest). Not relabelled: pass the result through ``Groups.from_labels`` for consecutive ids."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    max_group_size = _positive_int(max_group_size, "max_group_size")
    rng = np.random.default_rng([seed, 1])  # a stream apart from the one that drew the groups
    sizes = np.bincount(labels)
    next_id = len(sizes)
    for g in np.flatnonzero(sizes > max_group_size):
        idx = np.flatnonzero(labels == g)
        pieces = math.ceil(len(idx) / max_group_size)
        piece = _random_labels(len(idx), pieces, rng)
        labels[idx] = np.where(piece == 0, g, next_id + piece - 1)
        next_id += pieces - 1
    return labels


def cap_clusters(features: np.ndarray, labels: np.ndarray, max_group_size: int) -> np.ndarray:
    """Labels with no cluster above ``max_group_size``, the number of clusters unchanged.

    Centres are the means of the given clusters. Every cluster keeps its ``max_group_size`` members
    nearest to its centre (a cluster within the cap keeps all of them); the others, nearest to their
    own centre first, each move to the nearest centre that still has room. Needs
    k * max_group_size >= n. Every cluster id stays in use.
    """
    labels = np.asarray(labels, dtype=np.int64)
    max_group_size = _positive_int(max_group_size, "max_group_size")
    n = len(labels)
    k = int(labels.max()) + 1
    if k * max_group_size < n:
        raise ValueError(f"{k} clusters of at most {max_group_size} points cannot hold {n} points")
    sizes = np.bincount(labels, minlength=k)
    if sizes.max() <= max_group_size:
        return labels
    x = torch.as_tensor(np.ascontiguousarray(features), dtype=torch.float64)
    lab = torch.as_tensor(labels)
    centres = torch.zeros(k, x.shape[1], dtype=torch.float64).index_add_(0, lab, x)
    centres /= torch.as_tensor(sizes, dtype=torch.float64)[:, None]
    own = (x - centres[lab]).norm(dim=1).numpy()
    # rank of each point within its cluster by distance to the centre (0 = most central)
    order = np.lexsort((own, labels))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, sizes)
    moved = np.flatnonzero(rank >= max_group_size)
    moved = moved[np.argsort(own[moved], kind="stable")]
    room = max_group_size - np.minimum(sizes, max_group_size)
    out = labels.copy()
    prefs = torch.argsort(torch.cdist(x[moved], centres), dim=1, stable=True).numpy()
    for i, pref in zip(moved, prefs):
        c = pref[np.argmax(room[pref] > 0)]  # the nearest centre with room (one exists: k * cap >= n)
        out[i] = c
        room[c] -= 1
    return out


def kmeans_labels(features: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """K-Means labels (0..k'-1, k' <= k, no empty cluster) of the rows of ``features``.

    scikit-learn ``KMeans`` (k-means++, :data:`N_INIT` restarts, ``random_state=seed``), or
    ``MiniBatchKMeans`` when there are more than :data:`MINIBATCH_THRESHOLD` rows. k >= n gives
    singletons; clusters K-Means leaves empty (duplicate points) are dropped by relabelling.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning

    n = len(features)
    k = _positive_int(k, "k")
    if k >= n:
        return np.arange(n, dtype=np.int64)
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    x = np.ascontiguousarray(features)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct points than k: handled below
        if n > MINIBATCH_THRESHOLD:
            bs = max(MINIBATCH_SIZE, 3 * k)
            km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=N_INIT, batch_size=bs,
                                 init_size=min(n, max(3 * bs, 3 * k)))
        else:
            km = KMeans(n_clusters=k, random_state=seed, n_init=N_INIT)
        return _relabel(km.fit_predict(x))


# --------------------------------------------------------------------------------------------- features


def _renamed(proj_dim, feature_dim, default):
    """``proj_dim``, or the value given under its deprecated old name ``feature_dim`` (with a warning)."""
    if feature_dim is None:
        return proj_dim
    warnings.warn("feature_dim is deprecated: use proj_dim (the same meaning as in ggda.attribute)",
                  DeprecationWarning, stacklevel=3)
    if proj_dim != default:
        raise ValueError(f"give proj_dim only (feature_dim={feature_dim} is its deprecated old name)")
    return feature_dim


def input_features(data, proj_dim: int | None = None, seed: int = 0, feature_dim: int | None = None) -> np.ndarray:
    """float32 (n, F): ``data.train``'s inputs flattened and standardised per feature (constant
    features become 0), projected to ``proj_dim`` dimensions (seeded Gaussian,
    :func:`projection_matrix`, which preserves distances in expectation) when F is larger; None keeps
    all F. Text inputs (token ids) have no meaningful geometry: a ValueError says to use repr-kmeans."""
    proj_dim = _renamed(proj_dim, feature_dim, None)
    tensors = data.train.tensors
    kind = getattr(data, "meta", {}).get("kind")
    if kind == "text" or len(tensors) != 2 or not tensors[0].is_floating_point():
        raise ValueError(f"grouping method 'kmeans' clusters raw inputs, which {getattr(data, 'name', 'this')!r} "
                         f"({kind or 'non-numeric'} data) does not have in a usable form: use 'repr-kmeans' "
                         f"(the model's representations) or 'grad-kmeans' instead")
    x = tensors[0].reshape(len(tensors[0]), -1).to(torch.float64)
    mean, std = x.mean(0), x.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    x = (x - mean) / std
    if proj_dim is not None and x.shape[1] > proj_dim:
        x = x @ projection_matrix(x.shape[1], _positive_int(proj_dim, "proj_dim"), seed, dtype=torch.float64)
    return x.to(torch.float32).numpy()


def _model_of(run) -> nn.Module:
    model = run if isinstance(run, nn.Module) else getattr(run, "model", None)
    if not isinstance(model, nn.Module) or not hasattr(model, "features") or not hasattr(model, "head"):
        raise ValueError(f"run must be a TrainRun or a Classifier (with features and head), got {type(run).__name__}")
    return model


def _batches(model: nn.Module, data, device, batch_size: int):
    """Yield (inputs on device, y on device) over data.train with the model in eval mode on ``device``;
    the model's device and mode are restored when the generator finishes (callers disable autograd)."""
    from .devices import resolve_device, split_batch

    dev = resolve_device(device)
    tensors = data.train.tensors
    n = len(tensors[0])
    first = next(model.parameters())
    old_device, was_training = first.device, model.training
    model.to(dev).eval()
    try:
        for s in range(0, n, batch_size):
            yield split_batch(tuple(t[s:s + batch_size] for t in tensors), model, dev)
    finally:
        model.to(old_device).train(was_training)


@torch.no_grad()
def representation_features(run, data, device: str | torch.device = "auto",
                            batch_size: int = BATCH_SIZE) -> np.ndarray:
    """(n, H): the penultimate representation ``model.features(*inputs)`` of every training point
    (eval mode, no gradients, batched), in the model's dtype."""
    model = _model_of(run)
    out = [model.features(*inputs).reshape(len(y), -1).cpu() for inputs, y in _batches(model, data, device, batch_size)]
    return torch.cat(out).numpy()


def projection_matrix(dim_in: int, dim_out: int, seed: int = 0, dtype: torch.dtype = torch.float32,
                      device: str | torch.device = "cpu") -> torch.Tensor:
    """A seeded Gaussian projection (dim_in, dim_out) with entries N(0, 1 / dim_out), drawn on the CPU
    (so it is the same on every device) and moved to ``device``."""
    p = random_matrix(dim_in, dim_out, "gaussian", int(seed), torch.float64) / math.sqrt(dim_out)
    return p.to(device=device, dtype=dtype)


def resolve_gradient(gradient: str, head: nn.Linear) -> str:
    """The gradient grad-kmeans clusters for ``head``: "auto" is "logits" for three or more classes and
    "head" for two (one logit, or two: a class's logit gradient is then one number, the loss level, which
    cannot tell apart what two points teach); any other choice is returned as it is."""
    _choice(gradient, GRADIENTS, "gradient")
    if gradient != "auto":
        return gradient
    return "logits" if head.out_features >= 3 else "head"


@torch.no_grad()
def last_layer_gradients(run, data, proj_dim: int | None = 256, seed: int = 0,
                         device: str | torch.device = "auto", batch_size: int = BATCH_SIZE,
                         gradient: str = "head", normalize: bool = False,
                         feature_dim: int | None = None) -> np.ndarray:
    """Per-sample gradients of the cross-entropy loss at the model's head, in closed form.

    With h the penultimate representation and the multiclass head's logits z = W h + b (C outputs), the
    error e = softmax(z) - onehot(y) = dL/dz, and ``gradient`` picks the row of each point:

    - "head": the head's parameters, [dL/dW = e outer h flattened (C x H, row-major), dL/db = e] (the
      order of ``head.weight``, ``head.bias``), length C * (H + 1);
    - "logits": e, length C;
    - "penultimate": dL/dh = W^T e, length H;
    - "auto": "logits" for three or more classes, "head" for two (:func:`resolve_gradient`).

    For the one-logit binary head (logits [0, z]) e = sigmoid(z) - y is a single value: "head" gives
    e * [h, 1], "logits" e, "penultimate" e * w.

    proj_dim: project (seeded Gaussian, :func:`projection_matrix`) to this many dimensions when the
        gradient is longer; None returns the unprojected gradients. Only one batch of unprojected
        gradients exists at a time.
    normalize: scale every row (after the projection) to unit Euclidean length; an all-zero row stays 0.
    Returned in the model's dtype, shape (n, min(D, proj_dim)). ``feature_dim``: deprecated old name of
    ``proj_dim``.
    """
    proj_dim = _renamed(proj_dim, feature_dim, 256)
    if proj_dim is not None:
        proj_dim = _positive_int(proj_dim, "proj_dim")
    model = _model_of(run)
    head: nn.Linear = model.head
    gradient = resolve_gradient(gradient, head)
    c_out, h_dim = head.out_features, head.in_features
    dim = {"head": c_out * (h_dim + (head.bias is not None)), "logits": c_out, "penultimate": h_dim}[gradient]
    proj = None
    out = []
    for inputs, y in _batches(model, data, device, batch_size):
        h = model.features(*inputs).reshape(len(y), -1)
        z = head(h)
        if c_out == 1:
            err = torch.sigmoid(z) - y.to(z.dtype).unsqueeze(1)          # (B, 1)
        else:
            err = torch.softmax(z, dim=1) - F.one_hot(y, c_out).to(z.dtype)  # (B, C)
        if gradient == "logits":
            g = err
        elif gradient == "penultimate":
            g = err @ head.weight                                       # (B, H)
        else:
            g = (err.unsqueeze(2) * h.unsqueeze(1)).reshape(len(y), -1)  # (B, C*H)
            if head.bias is not None:
                g = torch.cat([g, err], dim=1)
        if proj_dim is not None and dim > proj_dim:
            if proj is None:
                proj = projection_matrix(dim, proj_dim, seed, dtype=g.dtype, device=g.device)
            g = g @ proj
        if normalize:
            g = F.normalize(g, dim=1)
        out.append(g.cpu())
    return torch.cat(out).numpy()


# --------------------------------------------------------------------------------------------- fidelity


def fidelity(groups: Groups, group_scores, individual_scores, sample: int | None = None,
             seed: int = 0) -> np.ndarray:
    """float64 (m,): per target, the Pearson correlation over training points between each point's
    inherited share (:meth:`Groups.point_scores`) and its individual score.

    group_scores (m, k) and individual_scores (m, n): numpy arrays or torch tensors.
    sample: compute it on a seeded random sample of that many training points (without replacement).
    A target whose shares or individual scores are constant gets nan.
    """
    gs = _to_numpy(group_scores)
    ind = _to_numpy(individual_scores)
    if gs.ndim == 1:
        gs = gs[None]
    if ind.ndim == 1:
        ind = ind[None]
    groups._check_scores(gs.shape)
    if ind.shape != (gs.shape[0], groups.n):
        raise ValueError(f"individual_scores must have shape (m, n) = ({gs.shape[0]}, {groups.n}), "
                         f"got {ind.shape}")
    idx = np.arange(groups.n)
    if sample is not None:
        sample = _positive_int(sample, "sample")
        if sample < groups.n:
            idx = np.sort(np.random.default_rng(seed).choice(groups.n, sample, replace=False))
    lab = groups.labels[idx]
    share = gs[:, lab] / groups.sizes[lab]
    ind = ind[:, idx]
    a = share - share.mean(1, keepdims=True)
    b = ind - ind.mean(1, keepdims=True)
    denom = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(1) / denom
    r[denom == 0] = np.nan
    return np.clip(r, -1.0, 1.0)


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)
