"""ggda against the established attribution libraries, on the same trained model, data and settings.

    python benchmarks/peers.py                                   # digits lr and ann-s (bundled, offline)
    python benchmarks/peers.py --root path/to/mnist              # ... plus mnist ann-m (first 10,000 images)
    python benchmarks/peers.py --pairs digits/lr --targets 20 --repeats 1 --peers traker

The peers are optional (``pip install -e '.[peers]'``): traker (TRAK), captum (TracInCP) and dattri (TracIn,
TRAK, IF). A peer that cannot be imported, or that fails, is reported as skipped with the reason; the run
goes on. For every (data set, model) pair the model is trained once with ggda; then for each method ggda's
individual scores and each peer's are computed from the same model, checkpoints and data with matched
settings:

* TracIn: the same checkpoints and their learning rates, exact (unprojected) gradients of the summed
  cross-entropy (captum cannot project; dattri's default 512-dimensional projection is switched off).
* TRAK: one model (the final one), the margin output, TRAK's Q weighting, projection dimension
  ``--proj-dim`` with *ggda's dense projection matrix* on every side (ggda ``projection="dense"`` where it
  has other projections; traker through an ``AbstractProjector`` subclass; dattri by substituting its
  ``random_project`` for the duration of the call), and ggda's relative damping translated into each
  peer's absolute ridge (damping x mean diagonal of its kernel).
* IF: the exact Hessian of the cross-entropy (ggda ``curvature="hessian"``, or for lr its Gauss-Newton
  curvature, which equals the Hessian there; dattri IFAttributorExplicit, or CG with ``--if-solver cg``),
  ggda's ridge n (weight_decay + damping) on the summed-loss Hessian given to dattri as
  ``weight_decay + damping`` on its mean-loss Hessian (same solution up to the factor n); ggda without
  centring (a per-target constant that changes neither ranks nor correlations); the last layer only
  when the model has more than 5,000 parameters (``--if-params``).

Reported per (pair, method, peer): Spearman and Pearson correlation of the scores (per target, averaged),
the top-k overlap of the most important training points (|top-k ggda & top-k peer| / k, averaged over
targets), ggda's time, the peer's time and their ratio (medians of ``--repeats``, measured in this run,
same torch threads), ggda's group attribution time at group size ``--group-size`` (random grouping,
grouping included) and the peer's individual time over it, and in words what could not be matched.
The same again for ggda's fastest path (``fast_*`` columns: Kronecker-factored features of total size
``--proj-dim``, ggda.factored; IF with Gauss-Newton curvature in that space), whose scores are compared
with the same peer's (a different projection, so lower agreement is expected).
Signs follow ggda (positive = removing the point hurts the target); every peer here already uses it, and
``SIGN`` records the factor applied. Each time covers everything the method needs given a trained model
(gradients, projections, solves, scoring, the peer's object set-up); training is excluded. ggda keeps its
projection matrices in a process-wide cache; it is emptied before every timed call (of ggda and of the
peers that share its matrix), so that no side profits from an earlier run. Writes a CSV (``--out``,
atomically) and prints a table.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")  # the peers' progress bars (read when tqdm is imported)

import argparse
import contextlib
import copy
import dataclasses
import importlib
import inspect
import logging
import math
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats

import ggda
from ggda import grouping, train
from ggda import gradients as ggda_gradients
from ggda.attribution.influence import default_damping
from bench_output import parse_args, write_and_show

log = logging.getLogger("peers")

INSTALL_HINT = "not installed: pip install -e '.[peers]'"
#: Factor that brings each peer's scores to ggda's sign (positive = the point helps the target).
SIGN = {("captum", "tracin"): 1.0, ("dattri", "tracin"): 1.0, ("traker", "trak"): 1.0, ("dattri", "trak"): 1.0,
        ("dattri", "if"): 1.0}
#: Bytes of per-sample gradients a peer may hold in one training batch (its batch size follows from p).
PEER_BATCH_BYTES = 2**30
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz")


class PeerSkipped(Exception):
    """A peer that cannot run here (not importable, or not applicable); the message says why."""


def import_peer(module: str):
    """Import a peer library, or raise PeerSkipped with the install hint (tests replace this function)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PeerSkipped(f"{INSTALL_HINT} ({exc})") from None


# ------------------------------------------------------------------------------------------ metrics
def rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (m,); NaN for a constant row."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(1) / np.where(denom > 0, denom, 1.0), np.nan)


def rowwise_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation per row (ties get average ranks), (m,)."""
    return rowwise_pearson(stats.rankdata(a, axis=1), stats.rankdata(b, axis=1))


def topk_overlap(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Per row, |top-k of a & top-k of b| / k (the k largest scores = the most helpful points), (m,)."""
    a = np.asarray(a)
    b = np.asarray(b)
    k = max(1, min(k, a.shape[1]))
    ta = np.argpartition(-a, k - 1, axis=1)[:, :k]
    tb = np.argpartition(-b, k - 1, axis=1)[:, :k]
    return np.array([len(np.intersect1d(x, y)) / k for x, y in zip(ta, tb)])


def compare(ours: np.ndarray, theirs: np.ndarray, k: int) -> dict[str, float]:
    """Spearman, Pearson and top-k overlap of two (m, n) score matrices, averaged over targets."""
    if ours.shape != theirs.shape:
        raise ValueError(f"score shapes differ: ggda {ours.shape}, peer {theirs.shape}")
    if not np.isfinite(theirs).all():
        raise ValueError(f"the peer's scores hold {int((~np.isfinite(theirs)).sum())} non-finite values")
    return {"spearman": float(np.nanmean(rowwise_spearman(ours, theirs))),
            "pearson": float(np.nanmean(rowwise_pearson(ours, theirs))),
            "topk_overlap": float(topk_overlap(ours, theirs, k).mean())}


# -------------------------------------------------------------------------------------- the setup
@dataclasses.dataclass
class Setup:
    """What every adapter needs: the trained run, the data and the matched settings."""

    run: train.TrainRun
    data: object  # DataBundle (training split possibly subset)
    targets: torch.utils.data.TensorDataset
    proj_dim: int
    checkpoints: list[int]
    trak_damping: float
    if_damping: float
    if_params: str
    if_solver: str
    if_cg_max_iter: int
    peer_batch: int

    @property
    def model(self) -> torch.nn.Module:
        return self.run.model

    @property
    def dtype(self) -> torch.dtype:
        return next(self.run.model.parameters()).dtype

    def cast(self, tensors) -> tuple[torch.Tensor, ...]:
        """(x, y) with x in the model's dtype (peers do not cast inputs themselves)."""
        *xs, y = tensors
        return (*[x.to(self.dtype) if x.is_floating_point() else x for x in xs], y)

    @property
    def train_tensors(self):
        return self.cast(self.data.train.tensors)

    @property
    def target_tensors(self):
        return self.cast(self.targets.tensors)

    def param_names(self, params: str) -> list[str]:
        return ggda_gradients.select_parameters(self.model, params)

    def fresh_model(self) -> torch.nn.Module:
        """A private copy of the final model (peers load checkpoints into the model they are given)."""
        return copy.deepcopy(self.run.model).eval()


def clear_projection_cache() -> None:
    """Empty ggda's process-wide projection-matrix cache, so the next call pays for its matrix."""
    ggda_gradients._MATRICES.clear()


def timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[np.ndarray, float]:
    """(result of the last call, median wall seconds over ``repeats`` calls)."""
    times, out = [], None
    for _ in range(repeats):
        clear_projection_cache()
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """TRAK's output: logit of the label minus logsumexp of the other logits, per row."""
    correct = logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    is_label = torch.arange(logits.shape[-1], device=logits.device) == y.unsqueeze(-1)
    return correct - logits.masked_fill(is_label, float("-inf")).logsumexp(-1)


def functional_output(model: torch.nn.Module, output: str, sample_ndim: int):
    """f(params, (x, y)) -> mean over the rows of the cross-entropy or margin, for dattri's tasks.
    Accepts one sample (x without a batch axis, as dattri's vmapped gradients pass it) or a batch."""

    def f(params, data):
        x, y = data
        if x.dim() == sample_ndim:
            x, y = x.unsqueeze(0), y.unsqueeze(0)
        logits = torch.func.functional_call(model, params, (x,))
        if output == "loss":
            return F.cross_entropy(logits, y)
        return margin(logits, y).mean()

    return f


# ------------------------------------------------------------------------------------------- ggda
def accepts(method: str, option: str) -> bool:
    """Whether this ggda's attribution function for ``method`` takes ``option``."""
    return option in inspect.signature(ggda.attribution.METHODS[method]).parameters


def ggda_options(method: str, s: Setup) -> dict:
    if method == "tracin":
        return {"checkpoints": s.checkpoints, "proj_dim": None}
    if method == "trak":
        # the dense seeded matrix is the one the peers can be given; other projections cannot be shared
        dense = {"projection": "dense"} if accepts("trak", "projection") else {}
        return {"proj_dim": s.proj_dim, "relative_damping": s.trak_damping, **dense}
    # dattri differentiates the loss twice: the exact Hessian, which for lr is ggda's (faster) Gauss-Newton one
    curvature = "gauss-newton" if s.run.model_name == "lr" else "hessian"
    return {"damping": s.if_damping, "solver": s.if_solver, "curvature": curvature, "params": s.if_params,
            "centre": False, "cg_max_iter": s.if_cg_max_iter}


def fast_options(method: str, s: Setup) -> dict | None:
    """ggda's fastest path for ``method`` (None when this ggda has no other): per-layer Kronecker-factored
    features of total size ``--proj-dim`` (TracIn, TRAK; IF with Gauss-Newton curvature in that space).
    Its projection differs from the peers', so its scores agree with theirs less than the matched path's."""
    if not accepts(method, "projection") or not accepts("if", "proj_dim"):
        return None
    if method == "tracin":
        return {"checkpoints": s.checkpoints, "proj_dim": s.proj_dim, "projection": "factored"}
    if method == "trak":
        return {"proj_dim": s.proj_dim, "relative_damping": s.trak_damping, "projection": "factored"}
    return {"damping": s.if_damping, "projection": "factored", "proj_dim": s.proj_dim, "centre": False}


def ggda_scores(method: str, s: Setup, groups=None, options: dict | None = None) -> np.ndarray:
    run = [s.run] if method == "trak" else s.run
    attr = ggda.attribute(method, run, s.data.train, s.targets, groups, device="cpu", progress=False,
                          **(ggda_options(method, s) if options is None else options))
    return attr.scores


def ggda_group_scores(method: str, s: Setup, size: int, options: dict | None = None) -> np.ndarray:
    """Group attribution including the (random) grouping itself."""
    groups = grouping.make("random", s.run, s.data, size, seed=0, device="cpu")
    return ggda_scores(method, s, groups, options)


# -------------------------------------------------------------------------------------- adapters
# Each returns (m, n) scores in ggda's sign convention (float64 numpy) and does all the work the method
# needs given the trained model.
def captum_tracin(s: Setup) -> np.ndarray:
    tracincp = import_peer("captum.influence._core.tracincp")
    model = s.fresh_model()
    ckpts = [s.run.checkpoints[i] for i in s.checkpoints]

    def load(m, ck):  # captum: load the checkpoint, return its learning rate
        m.load_state_dict(ck.state_dict)
        return ck.lr

    tracin = tracincp.TracInCP(model, torch.utils.data.TensorDataset(*s.train_tensors), ckpts,
                               checkpoints_load_func=load, loss_fn=torch.nn.CrossEntropyLoss(reduction="sum"),
                               batch_size=s.peer_batch, sample_wise_grads_per_batch=True)
    scores = tracin.influence(s.target_tensors, show_progress=False)
    return scores.detach().double().numpy() * SIGN[("captum", "tracin")]


def dattri_task(s: Setup, output: str, checkpoints, target_too: bool = False):
    """(dattri AttributionTask, its private model copy) with ``output`` as the loss (and the target
    function too when ``target_too``)."""
    task_mod = import_peer("dattri.task")
    model = s.fresh_model()
    fn = functional_output(model, output, s.train_tensors[0].dim() - 1)
    extra = {"target_func": fn} if target_too else {}
    return task_mod.AttributionTask(loss_func=fn, model=model, checkpoints=checkpoints, **extra), model


def dattri_tracin(s: Setup) -> np.ndarray:
    tracin_mod = import_peer("dattri.algorithm.tracin")
    task, _ = dattri_task(s, "loss", [s.run.checkpoints[i].state_dict for i in s.checkpoints])
    lrs = torch.tensor([s.run.checkpoints[i].lr for i in s.checkpoints], dtype=torch.float64)
    # dattri projects to 512 dimensions unless told not to; its projector settings are a module-level
    # dict updated in place, so the full dict is passed and projection is switched off afterwards.
    attributor = tracin_mod.TracInAttributor(task, weight_list=lrs, normalized_grad=False,
                                             projector_kwargs=dict(tracin_mod.DEFAULT_PROJECTOR_KWARGS),
                                             device="cpu")
    attributor.projector_kwargs = None
    dl = torch.utils.data.DataLoader
    scores = attributor.attribute(dl(torch.utils.data.TensorDataset(*s.train_tensors), batch_size=s.peer_batch),
                                  dl(torch.utils.data.TensorDataset(*s.target_tensors), batch_size=len(s.targets)))
    return scores.detach().T.double().numpy() * SIGN[("dattri", "tracin")]


def shared_projector(s: Setup) -> ggda_gradients.Projector:
    """ggda's TRAK projection for model 0 of the ensemble (the matrix every side uses)."""
    return ggda_gradients.Projector(ggda_gradients.num_parameters(s.model), s.proj_dim, "gaussian", 0)


def traker_trak(s: Setup) -> np.ndarray:
    trak = import_peer("trak")
    projectors = import_peer("trak.projectors")
    proj = shared_projector(s)

    class SharedProjector(projectors.AbstractProjector):
        """traker's projector interface around ggda's matrix: x -> x R / sqrt(d)."""

        def __init__(self):
            super().__init__(proj.p, proj.d, proj.seed, projectors.ProjectionType.normal, "cpu")

        def project(self, grads, model_id):
            if isinstance(grads, dict):
                grads = projectors.vectorize(grads, device="cpu")
            return proj(grads)

    model = s.fresh_model()
    state = s.run.model.state_dict()
    x, y = s.train_tensors
    xt, yt = s.target_tensors
    with tempfile.TemporaryDirectory(prefix="traker-") as tmp:
        traker = trak.TRAKer(model=model, task="image_classification", train_set_size=len(y), save_dir=tmp,
                             load_from_save_dir=True, device="cpu", projector=SharedProjector(),
                             use_half_precision=False, logging_level=logging.WARNING)
        traker.load_checkpoint(state, model_id=0)
        for lo in range(0, len(y), s.peer_batch):
            traker.featurize(batch=(x[lo:lo + s.peer_batch], y[lo:lo + s.peer_batch]),
                             num_samples=len(y[lo:lo + s.peer_batch]))
        # ggda's damping is relative (x mean diagonal of the kernel); traker's lambda_reg is absolute
        g = torch.as_tensor(np.asarray(traker.saver.current_store["grads"]), dtype=torch.float64)
        traker.score_computer.lambda_reg = s.trak_damping * float((g * g).sum()) / g.shape[1]
        traker.finalize_features()
        traker.start_scoring_checkpoint(exp_name="targets", checkpoint=state, model_id=0, num_targets=len(yt))
        for lo in range(0, len(yt), s.peer_batch):
            traker.score(batch=(xt[lo:lo + s.peer_batch], yt[lo:lo + s.peer_batch]),
                         num_samples=len(yt[lo:lo + s.peer_batch]))
        scores = np.array(traker.finalize_scores(exp_name="targets"), dtype=np.float64)  # (n, m)
    return scores.T * SIGN[("traker", "trak")]


@contextlib.contextmanager
def dattri_shared_projection(trak_mod, proj: ggda_gradients.Projector, on_train_features: Callable):
    """Replace dattri's ``random_project`` in its TRAK module by ggda's matrix while the block runs.
    ``on_train_features(projected)`` sees every projected block (to derive the ridge from the kernel)."""
    original = trak_mod.random_project

    def random_project(feature, feature_batch_size, **kwargs):
        def project(features, ensemble_id=0):
            if isinstance(features, dict):
                features = torch.cat([f.reshape(f.shape[0], -1) for f in features.values()], dim=1)
            out = proj(features)
            on_train_features(out)
            return out
        return project

    trak_mod.random_project = random_project
    try:
        yield
    finally:
        trak_mod.random_project = original


def dattri_trak(s: Setup) -> np.ndarray:
    trak_mod = import_peer("dattri.algorithm.trak")
    task, model = dattri_task(s, "margin", [s.run.model.state_dict()], target_too=True)

    def correct_probability(params, data):
        x, y = data
        logits = torch.func.functional_call(model, params, (x.unsqueeze(0),))
        return logits.softmax(-1)[0, y]

    kwargs = dict(trak_mod.DEFAULT_PROJECTOR_KWARGS, proj_dim=s.proj_dim)  # the full dict, every time
    attributor = trak_mod.TRAKAttributor(task, correct_probability, projector_kwargs=kwargs, device="cpu",
                                         regularization=0.0)
    trace = {"sum": 0.0, "on": True}

    def on_features(out):  # regularization = damping x mean diagonal of dattri's own kernel
        if trace["on"]:
            trace["sum"] += float((out.detach().double() ** 2).sum())
            attributor.regularization = s.trak_damping * trace["sum"] / s.proj_dim

    dl = torch.utils.data.DataLoader
    with dattri_shared_projection(trak_mod, shared_projector(s), on_features):
        attributor.cache(dl(torch.utils.data.TensorDataset(*s.train_tensors), batch_size=s.peer_batch))
        trace["on"] = False
        scores = attributor.attribute(dl(torch.utils.data.TensorDataset(*s.target_tensors),
                                         batch_size=len(s.targets)))
    return scores.detach().T.double().numpy() * SIGN[("dattri", "trak")]


def dattri_if(s: Setup) -> np.ndarray:
    if_mod = import_peer("dattri.algorithm.influence_function")
    task, _ = dattri_task(s, "loss", s.run.model.state_dict())
    names = s.param_names(s.if_params)
    layer = None if s.if_params == "all" else names
    # dattri's Hessian is of the mean loss: ggda's ridge n (wd + damping) on the summed loss is wd + damping
    reg = s.run.hparams.weight_decay + s.if_damping
    if s.if_solver == "cg":
        attributor = if_mod.IFAttributorCG(task, layer_name=layer, device="cpu", regularization=reg,
                                           max_iter=s.if_cg_max_iter, tol=1e-10)
    else:
        attributor = if_mod.IFAttributorExplicit(task, layer_name=layer, device="cpu", regularization=reg)
    dl = torch.utils.data.DataLoader
    train_ds = torch.utils.data.TensorDataset(*s.train_tensors)
    n = len(train_ds)
    # one batch each: dattri solves once per (training batch, target batch) pair, and sums the inverse
    # over the batches of the cached loader (exact only with the whole training set in one batch)
    attributor.cache(dl(train_ds, batch_size=n))
    scores = attributor.attribute(dl(train_ds, batch_size=n),
                                  dl(torch.utils.data.TensorDataset(*s.target_tensors), batch_size=len(s.targets)))
    return scores.detach().T.double().numpy() * SIGN[("dattri", "if")]


#: Modules each peer's adapters import: imported before the timed calls, so no time includes an import.
REQUIRES = {"captum": ("captum.influence._core.tracincp",), "traker": ("trak", "trak.projectors"),
            "dattri": ("dattri.task", "dattri.algorithm.tracin", "dattri.algorithm.trak",
                       "dattri.algorithm.influence_function")}

#: method -> [(peer, adapter)]
PEERS: dict[str, list[tuple[str, Callable[[Setup], np.ndarray]]]] = {
    "tracin": [("captum", captum_tracin), ("dattri", dattri_tracin)],
    "trak": [("traker", traker_trak), ("dattri", dattri_trak)],
    "if": [("dattri", dattri_if)],
}


def differs(method: str, peer: str, s: Setup) -> str:
    """What could not be matched exactly, in words."""
    dtype = "float64" if s.dtype == torch.float64 else "float32"
    notes = {
        ("captum", "tracin"): f"nothing: same checkpoints and lrs, exact gradients of the summed CE ({dtype})",
        ("dattri", "tracin"): "projection switched off (dattri's default: 512); scores accumulated in float32",
        ("traker", "trak"): "ggda's projection matrix via an AbstractProjector; traker keeps features, kernel "
                            "inverse and scores in float32 and rescales the inverse by its mean |entry|; "
                            "lambda_reg = damping x its mean kernel diagonal",
        ("dattri", "trak"): "ggda's projection matrix substituted for dattri's random_project (its own one "
                            "regenerates the matrix per batch, so stock dattri is slower); regularization = "
                            f"damping x its mean kernel diagonal; kernel in {dtype}",
        ("dattri", "if"): f"{'explicit Hessian' if s.if_solver != 'cg' else 'CG'} of the mean CE + (wd + damping) "
                          "I = ggda's sum-form / n (scores n x ggda's); ggda without centring"
                          + ("; last layer only on both sides" if s.if_params == "last" else ""),
    }
    return notes[(peer, method)]


# -------------------------------------------------------------------------------------------- main
def load_pair(dataset: str, root: str | None, n_train: int, n_targets: int):
    if dataset == "mnist":
        data = ggda.data.load("mnist", root=root, download=False)
    else:
        data = ggda.data.load(dataset, root=root, download=root is None)
    if n_train < len(data.train):  # mnist: the first n training images in file order
        keep = torch.arange(n_train)
        data = dataclasses.replace(data, train=torch.utils.data.TensorDataset(*(t[keep] for t in data.train.tensors)))
    targets = torch.utils.data.TensorDataset(*(t[:n_targets] for t in data.test.tensors))
    return data, targets


def default_pairs(root: str | None) -> list[str]:
    pairs = ["digits/lr", "digits/ann-s"]
    if root is not None and all((Path(root) / f).is_file() for f in MNIST_FILES):
        pairs.append("mnist/ann-m")
    return pairs


def run_pair(dataset: str, model_name: str, args) -> list[dict]:
    n_targets = args.targets or (500 if dataset == "mnist" else 100)
    data, targets = load_pair(dataset, args.root if dataset == "mnist" else None, args.n_train, n_targets)
    run = train.fit(model_name, data, seed=0, checkpoints=args.checkpoints, device="cpu", progress=False)
    n, m = len(data.train), len(targets)
    p = ggda_gradients.num_parameters(run.model)
    if_params = ("last" if p > 5000 else "all") if args.if_params == "auto" else args.if_params
    p_if = ggda_gradients.num_parameters(run.model, if_params)
    if_solver = ("exact" if p_if <= 5000 else "cg") if args.if_solver == "auto" else args.if_solver
    s = Setup(run=run, data=data, targets=targets, proj_dim=args.proj_dim, checkpoints=list(range(len(run.checkpoints))),
              trak_damping=args.trak_damping,
              if_damping=default_damping(model_name) if args.if_damping is None
              else args.if_damping,
              if_params=if_params, if_solver=if_solver, if_cg_max_iter=args.cg_max_iter,
              peer_batch=max(32, min(n, PEER_BATCH_BYTES // (4 * p))))
    k = args.top_k or max(10, math.ceil(0.01 * n))
    log.info("%s/%s: n=%d, targets=%d, p=%d, test acc %.4f, %d checkpoints, threads=%d", dataset, model_name, n, m,
             p, run.test_acc, len(run.checkpoints), torch.get_num_threads())
    wanted = set(args.peers.split(","))
    rows = []
    for method in args.methods.split(","):
        ours, ggda_s = timed(lambda: ggda_scores(method, s), args.repeats)
        _, group_s = timed(lambda: ggda_group_scores(method, s, args.group_size), args.repeats)
        log.info("%s ggda: individual %.3f s, group-%d %.3f s", method, ggda_s, args.group_size, group_s)
        fast = fast_options(method, s)
        if fast is not None:
            fast_scores, fast_s = timed(lambda: ggda_scores(method, s, None, fast), args.repeats)
            _, fast_group_s = timed(lambda: ggda_group_scores(method, s, args.group_size, fast), args.repeats)
            log.info("%s ggda factored: individual %.3f s, group-%d %.3f s", method, fast_s, args.group_size,
                     fast_group_s)
        for peer, adapter in PEERS[method]:
            base = {"dataset": dataset, "model": model_name, "method": method, "peer": peer, "n": n, "targets": m,
                    "params": p if method != "if" else p_if, "proj_dim": s.proj_dim if method == "trak" else None,
                    "top_k": k, "ggda_s": ggda_s, "ggda_group_s": group_s, "group_size": args.group_size,
                    "differs": differs(method, peer, s)}
            if peer not in wanted:
                rows.append({**base, "status": "skipped: not selected (--peers)"})
                continue
            try:
                for module in REQUIRES.get(peer, ()):
                    import_peer(module)
                theirs, peer_s = timed(lambda: adapter(s), args.repeats)
                metrics = compare(ours, theirs, k)
            except PeerSkipped as exc:
                rows.append({**base, "status": f"skipped: {exc}"})
                log.info("%s %s: skipped (%s)", method, peer, exc)
                continue
            except Exception as exc:  # a peer failure is reported, never fatal
                rows.append({**base, "status": f"skipped: failed: {type(exc).__name__}: {exc}"[:300]})
                log.warning("%s %s: failed: %s: %s", method, peer, type(exc).__name__, exc)
                continue
            row = {**base, "status": "ok", **metrics, "peer_s": peer_s, "ratio_ggda_over_peer": ggda_s / peer_s,
                   "peer_over_ggda_group": peer_s / group_s}
            if fast is not None:
                row.update({"fast_spearman": compare(fast_scores, theirs, k)["spearman"], "fast_s": fast_s,
                            "ratio_fast_over_peer": fast_s / peer_s, "fast_group_s": fast_group_s,
                            "peer_over_fast_group": peer_s / fast_group_s})
            rows.append(row)
            log.info("%s %s: spearman %.3f, pearson %.3f, top-%d %.2f, ggda %.3f s, peer %.3f s (ratio %.2f)",
                     method, peer, metrics["spearman"], metrics["pearson"], k, metrics["topk_overlap"], ggda_s,
                     peer_s, ggda_s / peer_s)
    for r in rows:
        r.update({"repeats": args.repeats, "threads": torch.get_num_threads(), "torch": torch.__version__,
                  "machine": f"{platform.machine()} {os.cpu_count()} cpus"})
    return rows


COLUMNS = ["dataset", "model", "method", "peer", "status", "n", "targets", "params", "proj_dim", "spearman", "pearson",
           "top_k", "topk_overlap", "ggda_s", "peer_s", "ratio_ggda_over_peer", "ggda_group_s", "peer_over_ggda_group",
           "fast_spearman", "fast_s", "ratio_fast_over_peer", "fast_group_s", "peer_over_fast_group", "differs"]


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default=None,
                    help="comma-separated dataset/model pairs (default: digits/lr,digits/ann-s, plus mnist/ann-m "
                         "when --root holds the MNIST IDX files)")
    ap.add_argument("--dataset", default=None, help="a single data set (with --model; overrides --pairs)")
    ap.add_argument("--model", default=None, help="a single model (with --dataset)")
    ap.add_argument("--root", default=None, help="folder with the MNIST IDX files (never downloaded here)")
    ap.add_argument("--n-train", type=int, default=10_000, help="training points (first-n subset; mnist)")
    ap.add_argument("--targets", type=int, default=None, help="targets attributed (default 100 digits, 500 mnist)")
    ap.add_argument("--methods", default="tracin,trak,if")
    ap.add_argument("--peers", default="traker,captum,dattri", help="peers to run (the others are reported skipped)")
    ap.add_argument("--proj-dim", type=int, default=256,
                    help="TRAK projection dimension, and the feature size of ggda's factored fast path (TracIn "
                         "matched: unprojected)")
    ap.add_argument("--checkpoints", type=int, default=3, help="TracIn checkpoints recorded by training")
    ap.add_argument("--trak-damping", type=float, default=1e-6, help="TRAK damping relative to mean kernel diagonal")
    ap.add_argument("--if-damping", type=float, default=None, help="IF damping (default: 0 for lr, 0.1 otherwise)")
    ap.add_argument("--if-params", default="auto", help="IF parameters: all, last, or auto (last when p > 5000)")
    ap.add_argument("--if-solver", default="auto", choices=("auto", "exact", "cg"),
                    help="IF solver on both sides (auto: exact up to 5000 parameters)")
    ap.add_argument("--cg-max-iter", type=int, default=200, help="CG iterations (--if-solver cg)")
    ap.add_argument("--group-size", type=int, default=64, help="group size of ggda's group attribution")
    ap.add_argument("--top-k", type=int, default=None, help="k of the top-k overlap (default max(10, 1%% of n))")
    args = parse_args(ap, argv, "benchmarks/out/peers.csv")
    if args.dataset or args.model:
        if not (args.dataset and args.model):
            ap.error("--dataset and --model go together")
        pairs = [f"{args.dataset}/{args.model}"]
    else:
        pairs = args.pairs.split(",") if args.pairs else default_pairs(args.root)
    rows = []
    for pair in pairs:
        dataset, model_name = pair.split("/")
        rows += run_pair(dataset, model_name, args)
    df = pd.DataFrame(rows).reindex(columns=COLUMNS + ["group_size", "repeats", "threads", "torch", "machine"])
    show = ["dataset", "model", "method", "peer", "spearman", "pearson", "topk_overlap", "ggda_s", "peer_s",
            "ratio_ggda_over_peer", "ggda_group_s", "peer_over_ggda_group", "fast_spearman", "fast_s",
            "ratio_fast_over_peer", "peer_over_fast_group", "status"]
    write_and_show(df, args.out, show,
                   f"ggda against its peers ({torch.get_num_threads()} threads, medians of {args.repeats})")
    return df


if __name__ == "__main__":
    main()
