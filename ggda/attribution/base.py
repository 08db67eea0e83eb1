"""What every attribution method returns, and the plumbing they share."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._io import load_npz, save_npz
from ..factored import PROJECTIONS, FactoredEngine, FactoredProjector, layer_plan, unsupported_parameters
from ..gradients import GradientEngine, Projector, num_parameters
from ..grouping import Groups
from ..devices import split_batch

TIMING_KEYS = ("grouping_s", "train_gradients_s", "target_gradients_s", "solve_s", "scoring_s")


@dataclass
class Attribution:
    """Scores of m targets against k groups of the n training points.

    scores: float64 (m, k). Positive = group g helps target t. IF and TracIn: the predicted increase of
        target t's loss if group g were removed from training (TracIn: its first-order proxy along
        training); TRAK: the predicted decrease of target t's margin.
    groups: the grouping of the training points (singleton groups for individual attribution).
    timing: seconds: grouping_s (features included), train_gradients_s, target_gradients_s, solve_s
        (Hessian or kernel build and solve), scoring_s, gradients_s (train + target), total_s (all);
        cached_s is the part of total_s that was done once, earlier, by ggda.featurize and reused.
    """

    method: str
    scores: np.ndarray
    groups: Groups
    timing: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def individual(self) -> bool:
        return self.groups.k == self.groups.n

    def point_scores(self) -> np.ndarray:
        """(m, n): each training point gets its group's score divided by the group's size."""
        return self.groups.point_scores(self.scores)

    def group_importance(self) -> np.ndarray:
        """(k,): each group's score summed over the targets."""
        return self.scores.sum(axis=0)

    def importance(self) -> np.ndarray:
        """(n,): each point's importance for the whole target set (its group's per-member share, summed
        over targets). Higher = removing it raises the targets' loss more."""
        return (self.group_importance() / self.groups.sizes)[self.groups.labels]

    def save(self, path) -> None:
        """Write scores, group labels and options to an ``.npz`` (with a checksum), and the timing beside
        it (``<name>.timing.json``), atomically: the same scores are the same bytes."""
        save_npz(path, {"scores": self.scores, "labels": self.groups.labels},
                 {"method": self.method, "options": self.options, "grouping": self.groups.method,
                  "group_size": self.groups.group_size}, self.timing)

    @classmethod
    def load(cls, path) -> Attribution:
        """Read a file written by :meth:`save` (timing {} without the sidecar); a truncated or altered file
        is refused, naming it."""
        arrays, meta, timing = load_npz(path, "ggda attribution")
        groups = Groups.from_labels(arrays["labels"], method=meta["grouping"], group_size=meta["group_size"])
        return cls(meta["method"], arrays["scores"], groups, timing, meta["options"])


class Timer:
    """Accumulates wall seconds per key; synchronises CUDA so that GPU work is counted where it ran."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {k: 0.0 for k in TIMING_KEYS}
        self.cached = 0.0

    @contextlib.contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def add(self, timing: dict[str, float], cached: bool) -> None:
        """Count the recorded cost of features (their ``timing``) as part of this attribution; the cost
        of features made earlier and reused (``cached``) is also summed in ``cached_s``, so that
        ``total_s`` stays the cost of the whole attribution either way."""
        for key in TIMING_KEYS:
            if key in timing:
                self.seconds[key] = self.seconds.get(key, 0.0) + float(timing[key])
                self.cached += float(timing[key]) if cached else 0.0

    def finish(self, grouping_s: float) -> dict[str, float]:
        out = dict(self.seconds, grouping_s=float(grouping_s), cached_s=self.cached)
        out["gradients_s"] = out["train_gradients_s"] + out["target_gradients_s"]
        out["total_s"] = sum(out[k] for k in TIMING_KEYS)
        return out


def timed(iterable, timer: Timer, key: str):
    """Yield from ``iterable``, adding the time spent producing each item to ``timer[key]``."""
    it = iter(iterable)
    while True:
        with timer(key):
            try:
                item = next(it)
            except StopIteration:
                return
        yield item


def as_tensors(data: Any, what: str) -> tuple[torch.Tensor, ...]:
    """The (inputs..., labels) tensors of a TensorDataset, a DataBundle (its training split for
    ``what == 'train'``, its test split otherwise), a tuple of tensors, or any Dataset with items
    (inputs..., label) or a DataLoader over one (gathered in index order: ggda.data.as_tensor_dataset)."""
    if hasattr(data, "train") and hasattr(data, "test"):
        data = data.train if what == "train" else data.test
    if hasattr(data, "tensors"):
        return tuple(data.tensors)
    if isinstance(data, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in data):
        return tuple(data)
    if isinstance(data, (torch.utils.data.Dataset, torch.utils.data.DataLoader)):
        from ..data.custom import as_tensor_dataset

        return tuple(as_tensor_dataset(data, what).tensors)
    raise TypeError(f"{what} must be a Dataset with items (inputs..., label), a DataLoader, a DataBundle or a "
                    f"tuple of tensors, got {type(data).__name__}")


def checked_tensors(data: Any, what: str, model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
    """:func:`as_tensors`, checked against ``model`` before any work: non-empty, rows of equal length,
    finite floating inputs, 1-D integer labels that are class indices of the model's outputs, and inputs
    the model takes (one forward pass on the first row). A ValueError names ``what`` and the problem."""
    tensors = as_tensors(data, what)
    if len(tensors) < 2:
        raise ValueError(f"{what} must hold inputs and labels (inputs..., labels), got {len(tensors)} tensor(s)")
    n = len(tensors[0])
    if n == 0:
        raise ValueError(f"{what} is empty: pass at least one point")
    if any(len(t) != n for t in tensors):
        raise ValueError(f"{what}: its tensors have different lengths {[len(t) for t in tensors]}")
    for i, t in enumerate(tensors[:-1]):
        if t.is_floating_point():
            bad = ~torch.isfinite(t.reshape(n, -1)).all(1)
            if bad.any():
                raise ValueError(f"{what} input {i} holds NaN or inf in {int(bad.sum())} row(s) (first: row "
                                 f"{int(bad.nonzero()[0])}): remove or impute them before attributing")
    y = tensors[-1]
    if y.dim() != 1 or y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"{what} labels (the last tensor) must be a 1-D integer tensor of class indices, "
                         f"got dtype {y.dtype}, shape {tuple(y.shape)}")
    try:
        with torch.no_grad():
            inputs, _ = split_batch(tuple(t[:1] for t in tensors), model, next(model.parameters()).device)
            logits = model.eval()(*inputs)
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        shapes = ", ".join(str(tuple(t.shape[1:])) for t in tensors[:-1])
        raise ValueError(f"the model cannot take the {what} inputs (per-row shape {shapes}): "
                         f"{str(err).splitlines()[0]}") from None
    classes = logits.shape[-1]
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        raise ValueError(f"{what} labels must be class indices in [0, {classes}) for the model's {classes} "
                         f"outputs; found labels from {low} to {high}")
    return tensors


def check_damping(damping, default_note: str = "", name: str = "damping") -> None:
    """A damping must be a finite non-negative number (NaN passes a plain ``< 0`` test); ``name`` is the
    argument's name in the error."""
    if isinstance(damping, bool) or not isinstance(damping, (int, float)) or not math.isfinite(damping) \
            or damping < 0:
        raise ValueError(f"{name} must be a finite non-negative number{default_note}, got {damping!r}")


def check_finite_scores(scores: torch.Tensor, method: str) -> None:
    """Never return NaN or inf scores silently."""
    if not torch.isfinite(scores).all():
        bad = int((~torch.isfinite(scores)).sum())
        raise FloatingPointError(f"{method} produced {bad} non-finite score(s) (NaN or inf): the model's "
                                 "parameters or outputs are not finite, or the damping is too small for "
                                 "the curvature; check the model and raise damping")


def resolve_groups(groups: Groups | None, n: int) -> Groups:
    """Singleton groups when None; otherwise check the grouping covers the n training points."""
    if groups is None:
        return Groups.from_labels(np.arange(n), method="individual")
    if groups.n != n:
        raise ValueError(f"groups cover {groups.n} points but the training data has {n}")
    return groups


def fingerprint(*items: Any) -> str:
    """A short sha256 of tensors, arrays, state dicts (by sorted key) and JSON-able values."""
    h = hashlib.sha256()

    def feed(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            h.update(str((obj.dtype, tuple(obj.shape))).encode())
            h.update(obj.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(obj, np.ndarray):
            h.update(str((obj.dtype, obj.shape)).encode())
            h.update(np.ascontiguousarray(obj).tobytes())
        elif isinstance(obj, dict):
            for key in sorted(obj):
                h.update(str(key).encode())
                feed(obj[key])
        elif isinstance(obj, (list, tuple)):
            for o in obj:
                feed(o)
        else:
            h.update(json.dumps(obj, sort_keys=True, default=str).encode())

    for item in items:
        feed(item)
    return h.hexdigest()[:16]


def group_sum(features: torch.Tensor, labels: np.ndarray, k: int) -> torch.Tensor:
    """(n, d) per-point features -> (k, d) group features, each the sum of its members' rows (in row
    order, the same summation as a pass that adds each batch's rows to their groups)."""
    index = torch.as_tensor(labels, device=features.device)
    return torch.zeros(k, features.shape[1], dtype=features.dtype, device=features.device).index_add_(0, index, features)


def parameter_names(params) -> str | list[str]:
    """``params`` as recorded in options and fingerprints."""
    return params if isinstance(params, str) else list(params)


#: projection="auto": the largest p x d (selected parameters times proj_dim) for which the dense projection
#: is chosen where it keeps more of the gradient. The p x d float32 matrix (512 MiB at the bound) is
#: then still held in memory by Projector, and projecting costs about p x d multiply-adds per sample:
#: measured 1.1 ms per sample at p x d = 39M and 7.3 ms at 134M on one CPU core (an MLP on digits,
#: batch 256), against under 0.1 ms for the factored features, whose cost hardly depends on d.
AUTO_DENSE_MAX = 2**27
#: projection="auto" for TRAK: below this relative damping the kernel solve whitens the features, and the
#: dense projection keeps more of the gradients' span than a factored one (see resolve_projection).
AUTO_WHITENING_DAMPING = 0.01


def keeps_output_sides(model, params, proj_dim: int) -> bool:
    """Whether the factored projection to ``proj_dim`` keeps the output side of every covered layer whole
    (d_out = n_out), so that each layer's feature is its exact output gradient times a random projection
    of its input (False when proj_dim is below the number of covered layers)."""
    try:
        plan = layer_plan(model, params, proj_dim)
    except ValueError:
        return False
    return all(d_out == n_out for n_out, n_in, d_out, d_in in plan)


def resolve_projection(model, params, proj_dim: int | None, projection: str, *, relative_damping: float | None = None,
                       dense: bool = True) -> str:
    """The projection that runs for ``projection`` in ("auto", "dense", "factored"): "dense", "factored",
    or "none" (auto only: no projection at all). Without proj_dim there is no projection whatever the
    choice ("dense" then names the vectorised gradient path, as it always did).

    "auto", with proj_dim given and p the number of selected parameters, in this order:

    1. proj_dim >= p: "none", the exact gradients: a projection could only lose information (a dense
       p x d Gaussian matrix is not orthogonal, even at d = p). Per method: TracIn takes exact inner
       products (layer by layer from activations and output gradients on MLPs, as with proj_dim=None),
       TRAK the raw gradients as its features (a p x p kernel, no bigger than the d x d one asked
       for), IF its exact curvature (as with proj_dim=None).
    2. a selected parameter outside nn.Linear / nn.Conv2d layers: "dense" (the factored features would
       leave it out).
    3. "factored" when ``dense`` is False (IF, whose only projection it is), or when p x proj_dim
       exceeds :data:`AUTO_DENSE_MAX` (2^27: a 512 MiB matrix, ~7 ms per sample on one CPU core).
    4. "factored" when every covered layer keeps its output side whole (:func:`keeps_output_sides`;
       lr with up to sqrt(proj_dim) classes) and the method does not whiten the features
       (``relative_damping`` None, as for TracIn, or TRAK's relative damping >= :data:`AUTO_WHITENING_DAMPING`);
       otherwise "dense".

    Why 4. A layer's gradient at one position is delta a^T (delta: output gradient, a: input). With the
    output side whole, the factored inner product is (delta_z . delta_i) <P a_z, P a_i>: its error is
    proportional to the score itself, relative error ~ 1/sqrt(d_in) when the inputs' cosines are
    large (pixels, ReLU activations, the bias column), whereas the dense error, ~ |g_z| |g_i| / sqrt(d),
    is the same for every score and swamps the many small ones (output gradients of different points
    are nearly orthogonal with three or more classes). Projecting the output side as well multiplies
    in that side's error with only ~sqrt(d / layers) dimensions (keeping the input side whole instead
    does not help), and convolutions sum over positions, so dense keeps more. A nearly unregularised
    kernel solve (TRAK, damping -> 0) is invariant to any invertible map of the gradients' span: what
    counts is how much of the span survives, and dense keeps more (a whole softmax output side also
    spends one of its rows on a direction the output gradients never take); at larger damping the
    solve is closer to plain inner products.

    Measured, Spearman against the unprojected scores, dense / factored (mean over projection seeds;
    digits, 500 training points, 60 targets, seed 2, as in tests/test_projection_auto.py): TracIn lr
    (p = 650) 0.60 / 0.47 at d = 64 (both sides projected), 0.80 / 0.99 at 512 (output side whole);
    ann-s 0.53 / 0.47 at 64, 0.88 / 0.88 at 1024; cnn 0.65 / 0.46 at 64, 0.86 / 0.63 at 512; ann-m
    0.86 / 0.83 at 512, 0.92 / 0.80 at 1024, 0.94 / 0.89 at 2048; TRAK lr at 512, damping 0.1 (the
    default) 0.66 / 0.72, 1e-6 0.81 / 0.60. On all of digits (TRAK lr at 512): damping 1e-4 0.90 /
    0.85, 1e-3 0.84 / 0.81, 1e-2 0.73 / 0.75; MNIST lr (p = 7,850, 2,000 points) at 2048: 1e-3
    0.39 / 0.34, 1e-2 0.43 / 0.43, 0.1 0.45 / 0.52 (1e-6: 0.17 / 0.19, both poor with fewer points
    than d), TracIn 0.74 / 0.97; ann-s with 512 hidden units on breast_cancer at 2048 (input side
    whole), 0.998 / 0.98. With one logit (binary lr) the two have the same distribution. The known
    shortfall: ann-s on digits at d = 256-512, where its head carries most of the score, factored is
    ahead by ~0.03 (0.815 / 0.845 at 512, 10 seeds) and auto takes dense.
    """
    if projection not in ("auto", *PROJECTIONS):
        raise ValueError(f"projection must be 'auto', 'dense' or 'factored', got {projection!r}")
    if projection == "auto":
        if proj_dim is None:
            return "dense"
        p = num_parameters(model, params)
        if proj_dim >= p:
            return "none"
        if unsupported_parameters(model, params):
            return "dense"
        if not dense or p * proj_dim > AUTO_DENSE_MAX:
            return "factored"
        whitening = relative_damping is not None and relative_damping < AUTO_WHITENING_DAMPING
        return "factored" if keeps_output_sides(model, params, proj_dim) and not whitening else "dense"
    if projection == "factored" and proj_dim is None:
        raise ValueError("projection='factored' needs proj_dim (the total feature size)")
    return projection


def check_proj_dim(proj_dim) -> int | None:
    """``proj_dim`` as an int, or None; anything else is a ValueError naming it."""
    if proj_dim is None:
        return None
    if isinstance(proj_dim, bool) or not isinstance(proj_dim, (int, np.integer)) or proj_dim < 1:
        raise ValueError(f"proj_dim must be a positive integer or None (no projection), got {proj_dim!r}")
    return int(proj_dim)


def make_projector(model, params, proj_dim: int | None, proj_kind: str, proj_seed: int,
                   projection: str = "dense", relative_damping: float | None = None) -> Projector | FactoredProjector | None:
    """The projection of the selected parameters' gradients to ``proj_dim`` dimensions (None: none):
    a dense seeded matrix, or per-layer Kronecker factors (``projection="factored"``, where a proj_dim
    at or above the parameter count keeps every layer exact); "auto" as :func:`resolve_projection`
    decides (``relative_damping``: TRAK's, None for methods without a kernel solve), None when
    it chooses no projection. A dense ``proj_dim`` above the number p of selected parameters is an
    error: it cannot add information; use proj_dim=None for the exact gradients."""
    proj_dim = check_proj_dim(proj_dim)
    projection = resolve_projection(model, params, proj_dim, projection, relative_damping=relative_damping)
    if proj_dim is None or projection == "none":
        return None
    if projection == "factored":
        return FactoredProjector(model, params, proj_dim, proj_kind, proj_seed)
    p = num_parameters(model, params)
    if proj_dim > p:
        raise ValueError(f"proj_dim={proj_dim} exceeds the {p} selected parameters: a dense projection to more "
                         f"dimensions than parameters adds nothing; use proj_dim <= {p}, or proj_dim=None for "
                         "the exact gradients")
    return Projector(p, proj_dim, proj_kind, proj_seed)


def make_engine(model, params, output: str, projector, batch_size: int, device) -> GradientEngine | FactoredEngine:
    """The gradient featurizer for ``projector``: per-layer factored features (batched forward and
    backward, no per-sample gradients) or the vectorised gradient engine (dense projection or none)."""
    if isinstance(projector, FactoredProjector):
        return FactoredEngine(model, projector, output, batch_size, device)
    return GradientEngine(model, params, output, projector, batch_size, device)


def projection_options(projector) -> dict[str, Any]:
    """What an Attribution records about its projection."""
    if projector is None:
        return {"projection": "none"}
    if isinstance(projector, FactoredProjector):
        return {"projection": "factored", "proj_layers": projector.describe()["layers"]}
    return {"projection": "dense"}


@dataclass
class SelfInfluence:
    """Group self-influence S(G) = sum_{i in G} score(z_i, G) (see ``ggda.attribution.self_influence``).

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
