"""Kronecker-factored gradient features (as in LoGra), individual and group, in one batched pass.

For a linear map y_t = W a_t + b applied at positions t (sequence positions of text, spatial positions
of a convolution after unfolding), the gradient of one sample's output f with respect to [W | b] is

    G = sum_t delta_t [a_t; 1]^T          (out x (in + 1)),  delta_t = df / dy_t.

Its factored feature is vec(P_out^T G P_in) / sqrt(d_out d_in) = vec(G) (P_out kron P_in) / sqrt(d_out d_in):
the dense random projection of the row-major vec(G) by a Kronecker-structured matrix. It is computed as
sum_t (delta_t P_out) outer ([a_t; 1] P_in) from the layer's input and output gradient, which an
ordinary batched forward and backward pass yields (hooks): no per-sample gradient is ever formed,
so building every training point's feature costs about one training epoch.

Per-layer dimensions: ``proj_dim`` is the total feature size, shared equally between the covered
layers (the smallest layers first; a layer whose whole gradient fits its share is kept exactly, and
what it leaves is passed on). Within a layer d_out ~ d_in ~ sqrt(share); a side whose dimension does
not exceed its d is not projected (identity), so small layers are exact.

Supported layers: ``nn.Linear`` (any leading dimensions: BERT's Linear layers included) and
``nn.Conv2d`` with ``groups=1``, integer padding and ``padding_mode="zeros"``. Selected parameters in
any other layer (embeddings, normalisation layers, grouped convolutions) are skipped with a warning:
their gradient is not part of the feature. :func:`unsupported_parameters` lists them beforehand.

Groups: a group's feature is the sum of its members' features (the projection is linear), summed in the
same pass, so group attribution holds k x D numbers, never n x D. The model is run in eval mode, so
the samples of a batch do not interact and one backward pass of the summed output gives every
sample's delta.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .gradients import (check_engine_options, check_projection_kind, per_sample_output, random_matrix,
                        select_parameters)
from .devices import resolve_device, split_batch

log = logging.getLogger(__name__)

PROJECTIONS = ("dense", "factored")


@dataclass
class FactoredLayer:
    """One covered layer: its module name, the parameter names it covers, and the factor sizes
    (n_in counts the bias column) and their projected sizes."""

    module_name: str
    module: nn.Module
    params: list[str]
    bias: bool
    n_out: int
    n_in: int
    d_out: int
    d_in: int

    @property
    def dim(self) -> int:
        return self.d_out * self.d_in


def _supported(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    if isinstance(module, nn.Conv2d):
        return (module.groups == 1 and module.padding_mode == "zeros"
                and not isinstance(module.padding, str))
    return False


def _layer_sizes(module: nn.Module, bias: bool) -> tuple[int, int]:
    w = module.weight
    return w.shape[0], math.prod(w.shape[1:]) + int(bias)


def _covered_layers(model: nn.Module,
                    names: Sequence[str]) -> tuple[list[tuple[str, nn.Module, list[str], bool]], list[str]]:
    """(module name, module, covered parameter names, bias covered) per supported layer whose weight is
    selected, in model order, and the selected parameter names left uncovered."""
    selected = set(names)
    layers, covered = [], set()
    for mod_name, module in model.named_modules():
        if not _supported(module):
            continue
        prefix = f"{mod_name}." if mod_name else ""
        w_name, b_name = prefix + "weight", prefix + "bias"
        if w_name not in selected:
            continue
        has_bias = module.bias is not None and b_name in selected
        params = [w_name] + ([b_name] if has_bias else [])
        layers.append((mod_name, module, params, has_bias))
        covered.update(params)
    return layers, [n for n in names if n not in covered]


def unsupported_parameters(model: nn.Module, params: str | Sequence[str] = "all") -> list[str]:
    """The selected parameters a factored projection cannot cover (empty: it covers them all)."""
    return _covered_layers(model, select_parameters(model, params))[1]


def layer_plan(model: nn.Module, params: str | Sequence[str] = "all",
               proj_dim: int = 512) -> list[tuple[int, int, int, int]]:
    """(n_out, n_in, d_out, d_in) of every layer ``FactoredProjector(model, params, proj_dim)`` would
    cover, without drawing its matrices (ValueError when proj_dim is below the number of layers)."""
    found = _covered_layers(model, select_parameters(model, params))[0]
    sizes = [_layer_sizes(module, bias) for _, module, _, bias in found]
    return [(n_out, n_in, d_out, d_in) for (n_out, n_in), (d_out, d_in) in zip(sizes, _allocate(sizes, proj_dim))]


def _allocate(sizes: list[tuple[int, int]], proj_dim: int) -> list[tuple[int, int]]:
    """(d_out, d_in) per layer for layers of (n_out, n_in), sharing proj_dim (see module docstring)."""
    if proj_dim < len(sizes):
        raise ValueError(f"proj_dim={proj_dim} is smaller than the number of covered layers ({len(sizes)}): "
                         "each layer needs at least one dimension")
    dims: list[tuple[int, int]] = [(0, 0)] * len(sizes)
    remaining = proj_dim
    order = sorted(range(len(sizes)), key=lambda i: sizes[i][0] * sizes[i][1])
    for rank, i in enumerate(order):
        n_out, n_in = sizes[i]
        share = remaining // (len(sizes) - rank)
        if n_out * n_in <= share:
            d_out, d_in = n_out, n_in
        else:
            d_out = min(n_out, max(1, math.isqrt(share)))
            d_in = min(n_in, max(1, share // d_out))
            d_out = min(n_out, max(1, share // d_in))
        dims[i] = (d_out, d_in)
        remaining -= d_out * d_in
    return dims


class FactoredProjector:
    """Seeded per-layer matrices P_out (n_out, d_out) and P_in (n_in, d_in) for the supported layers of
    ``model`` whose parameters ``params`` selects (see the module docstring).

    proj_dim: total feature size D (shared between layers). kind: "gaussian" or "rademacher".
    seed: layer l's matrices come from seeds derived from (seed, l, side), so features do not depend on
        batching or on other layers. Matrices are stored scaled by 1/sqrt(d) per side (None: identity).
    """

    def __init__(self, model: nn.Module, params: str | Sequence[str] = "all", proj_dim: int = 512,
                 kind: str = "gaussian", seed: int = 0):
        check_projection_kind(kind)
        if not isinstance(proj_dim, int) or proj_dim <= 0:
            raise ValueError(f"proj_dim must be a positive integer for the factored projection, got {proj_dim!r}")
        names = select_parameters(model, params)
        found, self.skipped = _covered_layers(model, names)
        if not found:
            raise ValueError("the factored projection covers nn.Linear and nn.Conv2d layers, and none of the "
                             f"selected parameters {names} belongs to one: use projection='dense'")
        if self.skipped:
            log.warning("factored projection: %d selected parameter(s) are not in a supported layer and are "
                        "left out of the features: %s", len(self.skipped), ", ".join(self.skipped))
        sizes = [_layer_sizes(module, bias) for _, module, _, bias in found]
        dims = _allocate(sizes, proj_dim)
        self.layers = [FactoredLayer(mod_name, module, params_, bias, n_out, n_in, d_out, d_in)
                       for (mod_name, module, params_, bias), (n_out, n_in), (d_out, d_in) in zip(found, sizes, dims)]
        self.kind, self.seed, self.proj_dim = kind, seed, proj_dim
        self.dim = sum(layer.dim for layer in self.layers)
        self._cache: dict[Any, tuple[torch.Tensor | None, torch.Tensor | None]] = {}

    @property
    def names(self) -> list[str]:
        """The covered parameter names, in model order."""
        return [n for layer in self.layers for n in layer.params]

    def _random(self, rows: int, cols: int, seed: int) -> torch.Tensor:
        return random_matrix(rows, cols, self.kind, seed, torch.float64) / math.sqrt(cols)

    def matrices(self, index: int, dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu") -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(P_out, P_in) of layer ``index``, scaled by 1/sqrt(d); None where that side is the identity."""
        key = (index, dtype, str(device))
        if key not in self._cache:
            layer = self.layers[index]
            base = self.seed * 1_000_003 + 7_919 * index
            p_out = None if layer.d_out == layer.n_out else self._random(layer.n_out, layer.d_out, base)
            p_in = None if layer.d_in == layer.n_in else self._random(layer.n_in, layer.d_in, base + 1)
            self._cache[key] = tuple(None if m is None else m.to(device=device, dtype=dtype) for m in (p_out, p_in))
        return self._cache[key]

    def kronecker(self, index: int) -> torch.Tensor:
        """The dense (n_out n_in, d_out d_in) matrix P_out kron P_in of layer ``index`` (scaled; float64),
        acting on the row-major vec of [W-gradient | bias-gradient]. For tests and small layers."""
        layer = self.layers[index]
        p_out, p_in = self.matrices(index)
        p_out = torch.eye(layer.n_out, dtype=torch.float64) if p_out is None else p_out
        p_in = torch.eye(layer.n_in, dtype=torch.float64) if p_in is None else p_in
        return torch.kron(p_out, p_in)

    def describe(self) -> dict[str, Any]:
        return {"kind": f"factored-{self.kind}", "seed": self.seed, "d": self.dim, "proj_dim": self.proj_dim,
                "layers": [[layer.module_name, layer.n_out, layer.n_in, layer.d_out, layer.d_in]
                           for layer in self.layers]}


def _conv_feature(module: nn.Conv2d, a: torch.Tensor, delta: torch.Tensor, p_out: torch.Tensor | None,
                  p_in: torch.Tensor | None, bias: bool) -> torch.Tensor:
    """(B, d_out, d_in) features of a Conv2d call: input a (B, C, H, W), output gradient (B, O, H', W').

    [unfold(a); 1] P_in is itself a convolution of a with P_in's columns as filters (and its bias row as
    the bias), which avoids materialising the unfolded patches (C kh kw times the input)."""
    c, kh, kw = module.weight.shape[1:]
    n_w = c * kh * kw
    if p_in is None:
        p_in = torch.eye(n_w + int(bias), dtype=a.dtype, device=a.device)
    filters = p_in[:n_w].T.reshape(-1, c, kh, kw)
    a_proj = F.conv2d(a, filters, p_in[n_w] if bias else None, module.stride, module.padding, module.dilation)
    d = delta.flatten(2)                                     # (B, O, L)
    d_proj = d if p_out is None else torch.matmul(p_out.T, d)  # (B, d_out, L)
    return torch.bmm(d_proj, a_proj.flatten(2).transpose(1, 2))


def _linear_feature(a: torch.Tensor, delta: torch.Tensor, p_out: torch.Tensor | None, p_in: torch.Tensor | None,
                    bias: bool) -> torch.Tensor:
    """(B, d_out, d_in) features of a Linear call: input (B, ..., in), output gradient (B, ..., out),
    summed over the positions (all dimensions between the first and the last)."""
    b = a.shape[0]
    a_proj = _project_in(a.reshape(b, -1, a.shape[-1]), p_in, bias)   # (B, T, d_in)
    d_pos = delta.reshape(b, -1, delta.shape[-1])
    d_proj = d_pos if p_out is None else d_pos @ p_out                # (B, T, d_out)
    if a_proj.shape[1] == 1:
        return d_proj[:, 0, :, None] * a_proj[:, 0, None, :]
    return torch.bmm(d_proj.transpose(1, 2), a_proj)


def _project_in(a: torch.Tensor, p_in: torch.Tensor | None, bias: bool) -> torch.Tensor:
    """[a; 1] P_in without forming [a; 1]."""
    if p_in is None:
        return torch.cat([a, a.new_ones(*a.shape[:-1], 1)], -1) if bias else a
    if bias:
        return torch.addmm(p_in[-1], a.reshape(-1, a.shape[-1]), p_in[:-1]).reshape(*a.shape[:-1], -1)
    return a @ p_in


class FactoredEngine:
    """Factored features of a model's per-sample outputs, summed over groups (same interface as
    :class:`ggda.gradients.GradientEngine`: ``compute``, ``iter_groups``, ``out_dim``).

    model: a ggda Classifier (run in eval mode). projector: a :class:`FactoredProjector` built for this
    model's architecture (its matrices are reused across checkpoints). output: "loss" or "margin".
    batch_size: training points per forward/backward pass (no per-sample gradients are held, so it can
    be large).
    """

    def __init__(self, model: nn.Module, projector: FactoredProjector, output: str = "loss",
                 batch_size: int = 1024, device: str | torch.device = "auto"):
        check_engine_options(output, batch_size)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        modules = dict(self.model.named_modules())
        for layer in projector.layers:
            mod = modules.get(layer.module_name)
            if mod is None or _layer_sizes(mod, layer.bias) != (layer.n_out, layer.n_in):
                raise ValueError(f"the factored projector was built for another architecture: layer "
                                 f"{layer.module_name!r} is missing or has another shape")
        self._modules = [modules[layer.module_name] for layer in projector.layers]
        self.projector = projector
        self.output = output
        self.batch_size = batch_size
        self.dtype = next(model.parameters()).dtype
        self.names = projector.names
        named = dict(model.named_parameters())
        self.dim = sum(named[n].numel() for n in self.names)

    @property
    def out_dim(self) -> int:
        return self.projector.dim

    def _forward(self, xs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, torch.Tensor, torch.Tensor]]]:
        """Logits (B, C) in the autograd graph, and each covered layer call as (layer, input, output)."""
        calls: list[tuple[int, torch.Tensor, torch.Tensor]] = []

        def hook(i):
            def fn(module, inputs, output):
                calls.append((i, inputs[0].detach(), output))
            return fn

        handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(self._modules)]
        weights = [m.weight for m in self._modules]
        flags = [p.requires_grad for p in weights]
        try:
            for p in weights:  # the layer outputs must be in the graph even for frozen weights
                p.requires_grad_(True)
            with torch.enable_grad():
                logits = self.model(*xs)
        finally:
            for h in handles:
                h.remove()
            for p, flag in zip(weights, flags):
                p.requires_grad_(flag)
        return logits, calls

    @staticmethod
    def _deltas(calls, total: torch.Tensor, retain_graph: bool = False) -> list[torch.Tensor]:
        """d total / d output of every recorded layer call (zeros for an output ``total`` ignores)."""
        outputs = [o for _, _, o in calls]
        with torch.enable_grad():
            grads = torch.autograd.grad(total, outputs, allow_unused=True, retain_graph=retain_graph)
        return [torch.zeros_like(o) if g is None else g for o, g in zip(outputs, grads)]

    @torch.no_grad()
    def _project(self, calls, total: torch.Tensor, retain_graph: bool = False) -> torch.Tensor:
        """Per-sample features (B, D) of the scalar ``total`` (a sum of per-sample terms)."""
        acc: list[torch.Tensor | None] = [None] * len(self._modules)
        for (i, a, _), delta in zip(calls, self._deltas(calls, total, retain_graph)):
            layer, module = self.projector.layers[i], self._modules[i]
            p_out, p_in = self.projector.matrices(i, self.dtype, self.device)
            if isinstance(module, nn.Conv2d):
                feat = _conv_feature(module, a, delta, p_out, p_in, layer.bias)
            else:
                feat = _linear_feature(a, delta, p_out, p_in, layer.bias)
            acc[i] = feat if acc[i] is None else acc[i] + feat
        first = calls[0][1]
        b = first.shape[0]
        return torch.cat([first.new_zeros(b, layer.dim) if f is None else f.reshape(b, -1)  # unused layer: 0
                          for f, layer in zip(acc, self.projector.layers)], 1)

    def factors(self, xs: Sequence[torch.Tensor], y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per covered layer, every sample's input with its bias column (B, n_in) and output gradient
        (B, n_out): the per-sample gradient of the layer is their outer product. Only for layers applied
        once to a single position per sample (ordinary MLP layers; see :func:`single_position_layers`)."""
        logits, calls = self._forward(xs)
        if len(calls) != len(self._modules) or any(a.dim() != 2 for _, a, _ in calls):
            raise ValueError("exact factored inner products need every covered layer applied once to 2-D inputs")
        with torch.enable_grad():
            total = per_sample_output(logits, y, self.output).sum()
        out: list = [None] * len(self._modules)
        for (i, a, _), delta in zip(calls, self._deltas(calls, total)):
            out[i] = (_project_in(a, None, self.projector.layers[i].bias), delta)
        return out

    def iter_factors(self, tensors: Sequence[torch.Tensor], progress: bool = False, desc: str = "factors"):
        """Yield (row slice, :meth:`factors`) over the data in batches of ``batch_size``."""
        n = len(tensors[0])
        for lo in tqdm(range(0, n, self.batch_size), desc=desc, disable=not progress, leave=False):
            rows = slice(lo, min(lo + self.batch_size, n))
            xs, y = split_batch(tuple(t[rows] for t in tensors), self.model, self.device)
            yield rows, self.factors(xs, y)

    def _batch(self, xs: Sequence[torch.Tensor], y: torch.Tensor, w: torch.Tensor | None, keep_graph: bool = False):
        """Per-sample features (B, D) of the (weighted) output of one batch (inputs on the device), the
        logits (B, C) and the layer calls; ``keep_graph`` keeps the graph for further backward passes."""
        logits, calls = self._forward(xs)
        with torch.enable_grad():
            out = per_sample_output(logits, y, self.output)
            total = (out if w is None else out * w).sum()
        return self._project(calls, total, retain_graph=keep_graph), logits, calls

    def _gauss_newton_moment(self, logits: torch.Tensor, calls) -> torch.Tensor:
        """sum_i sum_c p_ic g_ic g_ic^T (D, D) float64 over the batch, g_ic the feature of the loss with
        label c: the Gauss-Newton matrix of cross-entropy (= its Fisher) in the feature space. One
        backward pass per class, sharing the forward pass."""
        probs = logits.detach().softmax(-1)
        moment = None
        classes = logits.shape[-1]
        for c in range(classes):
            with torch.enable_grad():
                labels = torch.full((len(logits),), c, dtype=torch.long, device=logits.device)
                total = (probs[:, c].sqrt() * F.cross_entropy(logits, labels, reduction="none")).sum()
            f = self._project(calls, total, retain_graph=c < classes - 1).double()
            moment = f.T @ f if moment is None else moment + f.T @ f
        return moment

    def pass_over(self, tensors: Sequence[torch.Tensor], labels: np.ndarray | None = None,
                  weights: torch.Tensor | None = None, moment: str | None = None, progress: bool = False,
                  desc: str = "factored features") -> dict[str, torch.Tensor]:
        """One pass over the data. Returns ``features`` (k, D): group sums of the members' features, rows
        in group order (per-sample when labels is None); ``logits`` (n, C) of every row; and with
        ``moment`` a (D, D) float64 ``moment`` summed over the samples: "empirical-fisher" =
        sum_i phi_i phi_i^T (free), "gauss-newton" = the Gauss-Newton matrix of the cross-entropy loss
        (one extra backward pass per class)."""
        if moment not in (None, "empirical-fisher", "gauss-newton"):
            raise ValueError(f"moment must be None, 'empirical-fisher' or 'gauss-newton', got {moment!r}")
        n = len(tensors[0])
        if labels is not None:
            labels = np.asarray(labels, dtype=np.int64)
            if labels.shape != (n,):
                raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
        k = n if labels is None else int(labels.max()) + 1
        feats = torch.zeros(k, self.out_dim, dtype=self.dtype, device=self.device)
        total = (torch.zeros(self.out_dim, self.out_dim, dtype=torch.float64, device=self.device)
                 if moment else None)
        logits_all = []
        w_all = None if weights is None else torch.as_tensor(weights).to(self.dtype)
        bar = tqdm(total=n, desc=desc, unit="pt", disable=not progress, leave=False)
        for lo in range(0, n, self.batch_size):
            idx = torch.arange(lo, min(lo + self.batch_size, n))
            xs, y = split_batch(tuple(t[idx] for t in tensors), self.model, self.device)
            w = None if w_all is None else w_all[idx].to(self.device)
            phi, logits, calls = self._batch(xs, y, w, keep_graph=moment == "gauss-newton")
            logits_all.append(logits.detach())
            if labels is None:
                feats[lo:lo + len(idx)] = phi
            else:
                feats.index_add_(0, torch.from_numpy(labels[lo:lo + len(idx)]).to(self.device), phi)
            if moment == "empirical-fisher":
                phi64 = phi.double()
                total += phi64.T @ phi64
            elif moment == "gauss-newton":
                total += self._gauss_newton_moment(logits, calls)
            bar.update(len(idx))
        bar.close()
        result = {"features": feats, "logits": torch.cat(logits_all)}
        if total is not None:
            result["moment"] = total
        return result

    def compute(self, tensors: Sequence[torch.Tensor], labels: np.ndarray | None = None,
                weights: torch.Tensor | None = None, progress: bool = False,
                desc: str = "factored features") -> torch.Tensor:
        """(k, D) group features (per-sample when labels is None), as GradientEngine.compute."""
        return self.pass_over(tensors, labels, weights, progress=progress, desc=desc)["features"]

    def iter_groups(self, tensors, labels=None, weights=None, progress: bool = False, desc: str = "factored features"):
        """Yield (group ids, features) once for all groups (k x D fits in memory by construction)."""
        feats = self.compute(tensors, labels, weights, progress, desc)
        yield np.arange(len(feats)), feats


def single_position_layers(model: nn.Module, params, sample: Sequence[torch.Tensor],
                           device: str | torch.device = "cpu") -> FactoredProjector | None:
    """A projector-less (all identity) layer map for exact inner products, when every selected
    parameter is in an ``nn.Linear`` applied once to one position per sample (checked on ``sample``, the
    first rows of the data: tensors (inputs..., labels)); None otherwise.

    Then grad_z . grad_i = sum over layers of (delta_z . delta_i)(a_z . a_i): the exact inner products
    of per-sample gradients from activations and output gradients alone, never forming a gradient
    (the "ghost" inner products used for private training)."""
    names = select_parameters(model, params)
    layers, skipped = _covered_layers(model, names)
    if skipped or not layers or not all(isinstance(module, nn.Linear) for _, module, _, _ in layers):
        return None
    full = sum(math.prod(_layer_sizes(module, bias)) for _, module, _, bias in layers)
    projector = FactoredProjector(model, params, full)  # every layer fits its share: all identities
    engine = FactoredEngine(model, projector, "loss", 1, device)
    xs, y = split_batch(tuple(t[:2] for t in sample), engine.model, engine.device)
    try:
        engine.factors(xs, y)
    except ValueError:
        return None
    return projector


def factor_inner_products(left: list[tuple[torch.Tensor, torch.Tensor]],
                          right: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """(m, B) exact inner products of per-sample gradients, from :meth:`FactoredEngine.factors` of two
    batches: sum over layers of (D_left D_right^T) * (A_left A_right^T)."""
    total = None
    for (a_l, d_l), (a_r, d_r) in zip(left, right):
        term = (d_l @ d_r.T).mul_(a_l @ a_r.T)
        total = term if total is None else total.add_(term)
    return total
