"""Per-sample and group gradients and seeded random projections.

One engine serves both: the gradient of the (weighted) summed output of each group's members,
vectorised with ``torch.func.vmap`` over groups. Individual attribution is the case of singleton
groups, i.e. vectorised per-sample gradients. Groups are never reduced from per-sample gradients:

* groups of at most ``batch_size`` members are bucketed by size (padded to the next power of two,
  padding weighted 0), and ``batch_size // size`` of them are differentiated in one vmapped call, so
  small groups never cost one tiny backward pass each and padding wastes at most half the work;
* larger groups are split into mini-batches whose gradients are accumulated.

Outputs whose gradient is taken (per sample, before summing over a group's members):
``"loss"`` = cross-entropy; ``"margin"`` = logit of the label minus logsumexp of the other logits
(TRAK's output function, log(p / (1 - p))).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap
from tqdm.auto import tqdm

from .devices import resolve_device, split_batch

log = logging.getLogger(__name__)

OUTPUTS = ("loss", "margin")
#: Raw gradients held before one projection product (bytes): amortises reading the projection matrix.
PROJECT_BUFFER_BYTES = 256 * 2**20


# ----------------------------------------------------------------------------------------- params
def select_parameters(model: torch.nn.Module, params: str | Sequence[str] = "all") -> list[str]:
    """Names of the parameters to differentiate.

    params: "all" (every trainable parameter), "last" (the model's ``head``, its last linear layer), or
        an explicit list of names from ``model.named_parameters()``.
    """
    named = dict(model.named_parameters())
    if params == "all":
        return [n for n, p in named.items() if p.requires_grad]
    if params == "last":
        head = {id(p) for p in model.head.parameters()}
        return [n for n, p in named.items() if id(p) in head]
    if isinstance(params, str):
        raise ValueError(f"params must be 'all', 'last' or a list of parameter names, got {params!r}")
    unknown = [n for n in params if n not in named]
    if unknown:
        raise ValueError(f"unknown parameter name(s) {unknown}; the model has {list(named)}")
    return list(params)


def num_parameters(model: torch.nn.Module, params: str | Sequence[str] = "all") -> int:
    named = dict(model.named_parameters())
    return sum(named[n].numel() for n in select_parameters(model, params))


def per_sample_output(logits: torch.Tensor, y: torch.Tensor, output: str) -> torch.Tensor:
    """The scalar output of each sample (B,): cross-entropy ("loss") or TRAK's margin ("margin")."""
    if output == "loss":
        return F.cross_entropy(logits, y, reduction="none")
    if output == "margin":
        correct = logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        is_label = torch.arange(logits.shape[-1], device=logits.device) == y.unsqueeze(-1)  # vmap-safe one-hot
        others = logits.masked_fill(is_label, float("-inf")).logsumexp(-1)
        return correct - others
    raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")


# ------------------------------------------------------------------------------------- projection
PROJECTION_KINDS = ("gaussian", "rademacher")


def check_projection_kind(kind: str) -> None:
    if kind not in PROJECTION_KINDS:
        raise ValueError(f"projection kind must be 'gaussian' or 'rademacher', got {kind!r}")


def random_matrix(rows: int, cols: int, kind: str, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A (rows, cols) matrix of N(0, 1) ("gaussian") or +-1 ("rademacher") entries from ``seed``,
    generated in ``dtype`` (the values depend on it), unscaled."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        return torch.randn(rows, cols, generator=gen, dtype=dtype)
    return torch.randint(0, 2, (rows, cols), generator=gen).to(dtype).mul_(2).sub_(1)


#: How many projection matrices (each at most ``max_cached_bytes``) the process keeps.
MATRIX_CACHE_SIZE = 4
_MATRICES: OrderedDict = OrderedDict()


class Projector:
    """A seeded random linear map R^p -> R^d, x -> x R / sqrt(d), so that E|xR/sqrt(d)|^2 = |x|^2.

    kind: "gaussian" (N(0, 1) entries) or "rademacher" (+-1 entries).
    R is generated in row blocks of ``block_rows``, each from its own seed derived from ``seed``, so the
    result does not depend on batching. When p * d * 4 bytes exceed ``max_cached_bytes`` the whole
    matrix is never held: each call regenerates it block by block (slower; use large batches).
    Otherwise the matrix is generated once and kept, with the ``MATRIX_CACHE_SIZE`` most recently used
    ones, for the life of the process.
    """

    def __init__(self, p: int, d: int, kind: str = "gaussian", seed: int = 0, block_rows: int = 8192,
                 max_cached_bytes: int = 512 * 2**20):
        check_projection_kind(kind)
        if d <= 0 or p <= 0:
            raise ValueError(f"projection sizes must be positive, got p={p}, d={d}")
        self.p, self.d, self.kind, self.seed, self.block_rows = p, d, kind, seed, block_rows
        self.cache = p * d * 4 <= max_cached_bytes

    def _block(self, b: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        rows = min(self.block_rows, self.p - b * self.block_rows)
        m = random_matrix(rows, self.d, self.kind, self.seed * 1_000_003 + b)
        return m.to(device=device, dtype=dtype)

    def _cached_matrix(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        # Generating a large p x d matrix costs as much as projecting thousands of gradients: keep the
        # most recent ones for the process, so repeated attributions (new targets, ensembles seen
        # again, notebooks) do not pay it again.
        key = (self.p, self.d, self.kind, self.seed, self.block_rows, dtype, str(device))
        if key in _MATRICES:
            _MATRICES.move_to_end(key)
            return _MATRICES[key]
        m = self.matrix(dtype, device)
        _MATRICES[key] = m
        while len(_MATRICES) > MATRIX_CACHE_SIZE:
            _MATRICES.popitem(last=False)
        return m

    def matrix(self, dtype=torch.float32, device="cpu") -> torch.Tensor:
        """The whole (p, d) matrix, unscaled (for tests and small p)."""
        nb = math.ceil(self.p / self.block_rows)
        return torch.cat([self._block(b, dtype, torch.device(device)) for b in range(nb)])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Project (B, p) -> (B, d)."""
        if x.shape[-1] != self.p:
            raise ValueError(f"projector expects vectors of length {self.p}, got {x.shape[-1]}")
        scale = 1.0 / math.sqrt(self.d)
        if self.cache:
            return (x @ self._cached_matrix(x.dtype, x.device)).mul_(scale)
        out = torch.zeros(x.shape[0], self.d, dtype=x.dtype, device=x.device)
        for b in range(math.ceil(self.p / self.block_rows)):
            lo = b * self.block_rows
            out += x[:, lo:lo + self.block_rows] @ self._block(b, x.dtype, x.device)
        return out.mul_(scale)

    def describe(self) -> dict[str, Any]:
        return {"p": self.p, "d": self.d, "kind": self.kind, "seed": self.seed, "block_rows": self.block_rows}


# ------------------------------------------------------------------------------------------ engine
def check_engine_options(output: str, batch_size: int) -> None:
    """Shared argument checks of the gradient engines (this one and ggda.factored's)."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size!r}")


def _plan(labels: np.ndarray, batch_size: int) -> tuple[list[np.ndarray], list[tuple[int, np.ndarray]]]:
    """Split the groups into large ones (> batch_size members, accumulated over mini-batches) and
    buckets of small ones: (padded size, group ids) with sizes in (padded/2, padded]."""
    sizes = np.bincount(labels)
    large = [g for g in np.flatnonzero(sizes > batch_size)]
    small = np.flatnonzero((sizes > 0) & (sizes <= batch_size))
    pads = 1 << np.ceil(np.log2(np.maximum(sizes[small], 1))).astype(np.int64)
    buckets = [(int(p), small[pads == p]) for p in np.unique(pads)]
    return large, buckets


class GradientEngine:
    """Vectorised gradients of a model's per-sample outputs summed over groups.

    model: a ggda Classifier (evaluated in eval mode: no dropout, batch-norm running statistics).
    params: see :func:`select_parameters`. output: "loss" or "margin".
    projector: a :class:`Projector` applied to every gradient (None: the raw flattened gradient).
    batch_size: the number of training points differentiated per vmapped call.
    """

    def __init__(self, model: torch.nn.Module, params: str | Sequence[str] = "all", output: str = "loss",
                 projector: Projector | None = None, batch_size: int = 256, device: str | torch.device = "auto"):
        check_engine_options(output, batch_size)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.names = select_parameters(model, params)
        named = dict(model.named_parameters())
        self.dim = sum(named[n].numel() for n in self.names)
        if projector is not None and projector.p != self.dim:
            raise ValueError(f"projector maps {projector.p}-vectors but the selected parameters have {self.dim}")
        self.projector = projector
        self.output = output
        self.batch_size = batch_size
        self.dtype = next(model.parameters()).dtype
        self.selected = {n: named[n].detach() for n in self.names}
        self.frozen = {n: p.detach() for n, p in named.items() if n not in self.selected}
        self.frozen.update(dict(model.named_buffers()))

        def group_output(sel, inputs, y, w):  # inputs (s, ...), y (s,), w (s,) -> scalar
            logits = functional_call(self.model, (sel, self.frozen), tuple(inputs))
            return (w * per_sample_output(logits, y, output)).sum()

        self._vgrad = vmap(grad(group_output), in_dims=(None, 0, 0, 0))
        self._grad = grad(group_output)

    @property
    def out_dim(self) -> int:
        return self.projector.d if self.projector is not None else self.dim

    def _parts(self, grads: dict[str, torch.Tensor], lead: int) -> list[torch.Tensor]:
        """The selected parameters' gradients as (lead, numel) views, in the order of the flat vector."""
        return [grads[n].reshape(lead, -1) for n in self.names]

    def _inputs(self, tensors: Sequence[torch.Tensor], idx: torch.Tensor):
        return split_batch(tuple(t[idx] for t in tensors), self.model, self.device)

    def iter_groups(self, tensors: Sequence[torch.Tensor], labels: np.ndarray | None = None,
                    weights: torch.Tensor | None = None, progress: bool = False,
                    desc: str = "gradients") -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield (group ids (g,), gradients (g, out_dim)) covering every group once.

        tensors: the dataset's tensors (inputs..., labels), n rows. labels: group id of each row, (n,)
        in [0, k); None for per-sample gradients (group i = row i). weights: (n,) multiplier of each
        sample's output (None: 1).

        With a projector, raw gradients are buffered up to about ``PROJECT_BUFFER_BYTES`` and projected
        in one product: projecting a few rows at a time would re-read the whole p x d matrix each time.
        """
        raw = self._iter_raw(tensors, labels, weights, progress, desc)
        if self.projector is None:
            for ids, parts in raw:
                yield ids, torch.cat(parts, dim=1)
            return
        # Each block's per-parameter gradients are written once, straight into a reused buffer (no
        # flat copy, no concatenation of blocks): at 10^5 parameters those copies cost as much as the
        # projection itself.
        k = len(tensors[0]) if labels is None else int(np.max(labels)) + 1
        rows = min(k, max(32, PROJECT_BUFFER_BYTES // (4 * self.dim)))  # never more rows than groups to come
        buf = torch.empty(rows, self.dim, dtype=self.dtype, device=self.device)
        ids_buf, pending = [], 0
        for ids, parts in raw:
            if pending and pending + len(ids) > rows:
                yield np.concatenate(ids_buf), self.projector(buf[:pending])
                ids_buf, pending = [], 0
            if len(ids) > rows:  # a block larger than the buffer: project it on its own
                yield ids, self.projector(torch.cat(parts, dim=1))
                continue
            col = 0
            for part in parts:
                buf[pending:pending + len(ids), col:col + part.shape[1]] = part
                col += part.shape[1]
            ids_buf.append(ids)
            pending += len(ids)
        if pending:
            yield np.concatenate(ids_buf), self.projector(buf[:pending])

    def _iter_raw(self, tensors, labels, weights, progress, desc) -> Iterator[tuple[np.ndarray, list[torch.Tensor]]]:
        """:meth:`iter_groups` before projection and flattening: (group ids, per-parameter (g, numel) parts)."""
        n = len(tensors[0])
        labels = np.arange(n) if labels is None else np.asarray(labels, dtype=np.int64)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
        w_all = (torch.ones(n, dtype=self.dtype) if weights is None else torch.as_tensor(weights).to(self.dtype))
        order = np.argsort(labels, kind="stable")
        sizes = np.bincount(labels)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        large, buckets = _plan(labels, self.batch_size)
        bar = tqdm(total=n, desc=desc, unit="pt", disable=not progress, leave=False)
        with torch.no_grad():
            for g in large:
                members = order[starts[g]:starts[g + 1]]
                acc = None
                for lo in range(0, len(members), self.batch_size):
                    idx = torch.from_numpy(members[lo:lo + self.batch_size])
                    xs, y = self._inputs(tensors, idx)
                    with torch.enable_grad():
                        gr = self._grad(self.selected, xs, y, w_all[idx].to(self.device))
                    parts = self._parts(gr, 1)
                    acc = parts if acc is None else [a + b for a, b in zip(acc, parts)]
                    bar.update(len(idx))
                yield np.array([g]), acc
            for pad, groups in buckets:
                per_call = max(1, self.batch_size // pad)
                for lo in range(0, len(groups), per_call):
                    chunk = groups[lo:lo + per_call]
                    idx = np.empty((len(chunk), pad), dtype=np.int64)
                    mask = np.zeros((len(chunk), pad), dtype=bool)
                    for r, g in enumerate(chunk):
                        members = order[starts[g]:starts[g + 1]]
                        idx[r, :len(members)] = members
                        idx[r, len(members):] = members[0]  # padding repeats a member, weighted 0
                        mask[r, :len(members)] = True
                    flat_idx = torch.from_numpy(idx.reshape(-1))
                    xs, y = self._inputs(tensors, flat_idx)
                    xs = [x.reshape(len(chunk), pad, *x.shape[1:]) for x in xs]
                    y = y.reshape(len(chunk), pad)
                    w = (w_all[flat_idx].reshape(len(chunk), pad) * torch.from_numpy(mask)).to(self.device)
                    with torch.enable_grad():
                        gr = self._vgrad(self.selected, xs, y, w)
                    yield chunk, self._parts(gr, len(chunk))
                    bar.update(int(mask.sum()))
        bar.close()

    def compute(self, tensors: Sequence[torch.Tensor], labels: np.ndarray | None = None,
                weights: torch.Tensor | None = None, progress: bool = False, desc: str = "gradients") -> torch.Tensor:
        """All group gradients as one (k, out_dim) tensor, rows in group order (per-sample when labels is None)."""
        k = len(tensors[0]) if labels is None else int(np.max(labels)) + 1
        out = torch.zeros(k, self.out_dim, dtype=self.dtype, device=self.device)
        for ids, block in self.iter_groups(tensors, labels, weights, progress, desc):
            out[torch.from_numpy(ids).to(self.device)] = block
        return out


def sample_gradients(model, tensors, params="all", output="loss", projector=None, batch_size=256,
                     device="auto", progress=False) -> torch.Tensor:
    """Per-sample gradients (n, p), or projected (n, d), vectorised with torch.func."""
    return GradientEngine(model, params, output, projector, batch_size, device).compute(tensors, None, None, progress)


def group_gradients(model, tensors, labels, params="all", output="loss", projector=None, weights=None,
                    batch_size=256, device="auto", progress=False) -> torch.Tensor:
    """Group gradients g_G = sum_{i in G} w_i grad output(z_i), (k, p) or projected (k, d)."""
    return GradientEngine(model, params, output, projector, batch_size, device).compute(tensors, labels, weights,
                                                                                     progress)
