"""Seeded, deterministic training with checkpoints; retraining on a subset of the training points.

``fit`` minimises J = (1/n) sum_i CE(f(x_i), y_i) + (lambda/2)|theta|^2 over the kept points and
records K checkpoints along training with the learning rate in force at each (TracIn needs both).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from . import models
from .devices import resolve_device, split_batch  # noqa: F401  (ggda.train.resolve_device: public)
from ._io import load_torch, save_json, save_torch, timing_path
from .hparams import HParams, default_hparams

log = logging.getLogger(__name__)

#: The part of a DataBundle's meta a model needs to be rebuilt (saved with every run).
_MODEL_META_KEYS = ("kind", "input_shape", "num_classes", "vocab_size", "max_length")


@dataclass
class Checkpoint:
    """Parameters at one point of training. step: optimiser steps taken; epoch: passes over the kept
    data (lbfgs: the fraction of the iterations it took to converge); lr: learning rate of the last step.
    With lbfgs fewer than K distinct checkpoints exist when it converges in fewer than K iterations."""

    step: int
    epoch: float
    lr: float
    state_dict: dict[str, torch.Tensor]


#: The metrics that are measurements of this machine, not results: saved apart (metrics.timing.json).
TIMING_METRICS = ("wall_s",)


@dataclass
class TrainRun:
    """A trained model with its checkpoints and metrics (accuracies in [0, 1], losses mean CE, wall_s seconds)."""

    model_name: str
    model: models.Classifier
    checkpoints: list[Checkpoint]
    hparams: HParams
    seed: int
    keep: np.ndarray | None
    metrics: dict[str, float]
    model_meta: dict[str, Any]
    model_options: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None

    @property
    def train_acc(self) -> float:
        return self.metrics["train_acc"]

    @property
    def test_acc(self) -> float:
        return self.metrics["test_acc"]

    @property
    def wall_s(self) -> float:
        return self.metrics["wall_s"]

    def model_at(self, index: int) -> models.Classifier:
        """A fresh copy of the model with the parameters of checkpoint ``index`` (eval mode)."""
        model = models.build(self.model_name, self.model_meta, **self.model_options)
        model.to(dtype=next(self.model.parameters()).dtype)
        model.load_state_dict(self.checkpoints[index].state_dict)
        return model.eval()

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``model.pt``, ``checkpoints/ckpt-{k}.pt``, the training time (``metrics.timing.json``: it
        differs from run to run, the rest does not) and (last, marking completion) ``metrics.json``."""
        folder = Path(folder)
        save_torch(_cpu_state(self.model), folder / "model.pt")
        for k, ck in enumerate(self.checkpoints):
            save_torch({"step": ck.step, "epoch": ck.epoch, "lr": ck.lr, "state_dict": ck.state_dict},
                       folder / "checkpoints" / f"ckpt-{k}.pt")
        metrics = {k: v for k, v in self.metrics.items() if k not in TIMING_METRICS}
        save_json({k: v for k, v in self.metrics.items() if k in TIMING_METRICS},
                  timing_path(folder / "metrics.json"))
        save_json({"model": self.model_name, "dataset": self.dataset, "seed": self.seed,
                   "hparams": self.hparams.to_dict(), "metrics": metrics, "model_meta": self.model_meta,
                   "model_options": self.model_options, "n_checkpoints": len(self.checkpoints),
                   "checkpoint_lrs": [ck.lr for ck in self.checkpoints],
                   "keep": None if self.keep is None else self.keep.tolist()},
                  folder / "metrics.json")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> TrainRun:
        """Read a run written by :meth:`save`."""
        folder = Path(folder)
        info_path = folder / "metrics.json"
        if not info_path.is_file():
            raise FileNotFoundError(f"{info_path} not found: {folder} does not hold a completed training run")
        info = json.loads(info_path.read_text())
        timing = timing_path(info_path)
        if timing.is_file():
            info["metrics"].update(json.loads(timing.read_text()))
        hp = HParams(**info["hparams"])
        model = models.build(info["model"], info["model_meta"], **info["model_options"])
        model.to(dtype=getattr(torch, hp.dtype))
        model.load_state_dict(load_torch(folder / "model.pt", "model"))
        cks = []
        for k in range(info["n_checkpoints"]):
            raw = load_torch(folder / "checkpoints" / f"ckpt-{k}.pt", "checkpoint")
            cks.append(Checkpoint(raw["step"], raw["epoch"], raw["lr"], raw["state_dict"]))
        keep = None if info["keep"] is None else np.asarray(info["keep"], dtype=np.int64)
        return cls(info["model"], model.eval(), cks, hp, info["seed"], keep, info["metrics"],
                   info["model_meta"], info["model_options"], info["dataset"])


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def l2_penalty(model: torch.nn.Module, weight_decay: float) -> torch.Tensor:
    """(weight_decay / 2) * |theta|^2 over the trainable parameters."""
    return 0.5 * weight_decay * sum(p.pow(2).sum() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: TensorDataset, device: str | torch.device = "cpu",
             batch_size: int = 1024, indices: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy (fraction) and mean cross-entropy of ``model`` on ``dataset`` (or its ``indices``)."""
    device = resolve_device(device)
    was_training = model.training
    model.eval()
    tensors = dataset.tensors if indices is None else tuple(t[torch.as_tensor(indices)] for t in dataset.tensors)
    n = len(tensors[0])
    correct, loss = 0, 0.0
    for start in range(0, n, batch_size):
        inputs, y = split_batch(tuple(t[start:start + batch_size] for t in tensors), model, device)
        logits = model(*inputs)
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(-1) == y).sum().item()
    model.train(was_training)
    return {"acc": correct / max(n, 1), "loss": loss / max(n, 1)}


def _lr_at(hp: HParams, step: int, total: int) -> float:
    """Learning rate for optimiser step ``step`` (0-based) of ``total``."""
    frac = step / max(total, 1)
    if hp.schedule == "constant":
        return hp.lr
    if hp.schedule == "cosine":
        return hp.lr * 0.5 * (1 + math.cos(math.pi * frac))
    if hp.schedule == "linear":
        return hp.lr * (1 - frac)
    # triangle
    if frac < hp.warmup:
        return hp.lr * (frac / hp.warmup)
    return hp.lr * (1 - frac) / (1 - hp.warmup)


def _checkpoint_marks(total: int, k: int) -> list[int]:
    """The k positions (1..total) after which checkpoints are saved, evenly spread, the last at the end."""
    return sorted({max(1, round(total * (j + 1) / k)) for j in range(k)})


def _check_keep(keep: Any, n: int) -> np.ndarray | None:
    if keep is None:
        return None
    keep = np.asarray(keep)
    if keep.ndim != 1 or keep.size == 0 or not np.issubdtype(keep.dtype, np.integer):
        raise ValueError("keep must be a non-empty 1-d array of integer indices into data.train")
    if keep.min() < 0 or keep.max() >= n:
        raise ValueError(f"keep holds indices outside [0, {n}) (data.train has {n} points)")
    if len(np.unique(keep)) != len(keep):
        raise ValueError("keep holds repeated indices; pass each training index at most once")
    return keep.astype(np.int64)


def fit(
    model_name: str,
    data,
    hparams: HParams | dict | None = None,
    seed: int = 0,
    keep: Any = None,
    checkpoints: int = 3,
    device: str | torch.device = "auto",
    model_options: dict[str, Any] | None = None,
    progress: bool = True,
) -> TrainRun:
    """Train ``model_name`` on ``data.train`` (a DataBundle), deterministically for a given seed and device.

    hparams: an HParams, a dict of overrides of the defaults, or None for
        ``default_hparams(data.name, model_name)``.
    seed: seeds the initialisation, the shuffling and dropout (global RNG state is left untouched).
    keep: indices of the training points to use (retraining after removal); None uses all.
    checkpoints: K >= 1 checkpoints, evenly spread over training (epochs; lbfgs: iterations); the last
        equals the final model.
    device: "auto" (CUDA when present), "cpu", "cuda", ...
    Returns a TrainRun whose metrics hold train_acc/train_loss (on the kept points), test_acc/test_loss
    and wall_s (training seconds, evaluation excluded).
    """
    if not isinstance(checkpoints, int) or checkpoints < 1:
        raise ValueError(f"checkpoints must be a positive integer, got {checkpoints!r}")
    if hparams is None or isinstance(hparams, dict):
        hp = default_hparams(data.name, model_name, **(hparams or {}))
    else:
        hp = hparams
    model_options = dict(model_options or {})
    dev = resolve_device(device)
    train_t = data.train.tensors
    keep = _check_keep(keep, len(train_t[0]))
    if keep is not None:
        train_t = tuple(t[torch.from_numpy(keep)] for t in train_t)
    n = len(train_t[0])
    model_meta = {k: data.meta[k] for k in _MODEL_META_KEYS if k in data.meta}

    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        model = models.build(model_name, model_meta, **model_options)
        model.to(dev, dtype=getattr(torch, hp.dtype)).train()
        gen = torch.Generator().manual_seed(seed)
        start = time.perf_counter()
        if hp.optimizer == "lbfgs":
            cks = _fit_lbfgs(model, train_t, hp, checkpoints, dev)
        else:
            cks = _fit_minibatch(model, train_t, hp, checkpoints, dev, gen, progress, f"{data.name}/{model_name}")
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        wall = time.perf_counter() - start
    model.eval()
    tr = evaluate(model, TensorDataset(*train_t), dev)
    te = evaluate(model, data.test, dev)
    metrics = {"train_acc": tr["acc"], "train_loss": tr["loss"], "test_acc": te["acc"], "test_loss": te["loss"],
               "wall_s": wall, "n_train": n, "n_test": len(data.test), "device": str(dev)}
    log.info("trained %s on %s (n=%d, seed=%d): train acc %.4f, test acc %.4f, %.2f s",
             model_name, data.name, n, seed, tr["acc"], te["acc"], wall)
    return TrainRun(model_name, model, cks, hp, seed, keep, metrics, model_meta, model_options, data.name)


def _fit_minibatch(model, tensors, hp: HParams, k: int, dev, gen, progress: bool, desc: str) -> list[Checkpoint]:
    n = len(tensors[0])
    steps_per_epoch = math.ceil(n / hp.batch_size)
    total = hp.epochs * steps_per_epoch
    params = [p for p in model.parameters() if p.requires_grad]
    if hp.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum)
    else:
        opt = torch.optim.Adam(params, lr=hp.lr)
    marks = set(_checkpoint_marks(hp.epochs, k))
    cks: list[Checkpoint] = []
    step = 0
    lr = hp.lr
    for epoch in tqdm(range(1, hp.epochs + 1), desc=f"train {desc}", unit="epoch", disable=not progress,
                      leave=False):
        order = torch.randperm(n, generator=gen)
        for b in range(steps_per_epoch):
            idx = order[b * hp.batch_size:(b + 1) * hp.batch_size]
            inputs, y = split_batch(tuple(t[idx] for t in tensors), model, dev)
            lr = _lr_at(hp, step, total)
            for group in opt.param_groups:
                group["lr"] = lr
            loss = F.cross_entropy(model(*inputs), y)
            if hp.weight_decay:
                loss = loss + l2_penalty(model, hp.weight_decay)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        if epoch in marks:
            cks.append(Checkpoint(step, float(epoch), lr, _cpu_state(model)))
    return cks


def _fit_lbfgs(model, tensors, hp: HParams, k: int, dev) -> list[Checkpoint]:
    inputs, y = split_batch(tensors, model, dev)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.LBFGS(params, lr=hp.lr, max_iter=1, max_eval=25, tolerance_grad=hp.tol, tolerance_change=0.0,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(*inputs), y) + l2_penalty(model, hp.weight_decay)
        loss.backward()
        return loss

    # The iteration count is unknown until convergence: keep every iterate, then pick K evenly spread.
    states = []
    it, converged = 0, False
    last_loss, stalled = None, 0
    while it < hp.max_iter and not converged:
        loss = opt.step(closure).item()
        it += 1
        states.append(_cpu_state(model))
        converged = max(p.grad.abs().max().item() for p in params) <= hp.tol
        # At the floating-point floor the line search stops moving: end there instead of spinning.
        stalled = stalled + 1 if loss == last_loss else 0
        last_loss = loss
        if stalled >= 3:
            break
    cks = [Checkpoint(m, m / it, hp.lr, states[m - 1]) for m in _checkpoint_marks(it, k)]
    closure()
    grad_max = max(p.grad.abs().max().item() for p in params)
    if grad_max > hp.tol:
        log.warning("lbfgs stopped after %d iterations with max |grad| = %.2e > tol = %.1e; raise hparams.max_iter",
                    it, grad_max, hp.tol)
    return cks
