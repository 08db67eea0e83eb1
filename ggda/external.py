"""Any PyTorch classifier in ggda: a model ggda did not build or train, with its own checkpoints.

    run = ggda.ModelRun(my_model, checkpoints=["ckpt-1.pt", "ckpt-2.pt"], lrs=[0.1, 0.01],
                        weight_decay=1e-4, retrain=my_train_function)
    data = ggda.data.from_datasets(train_set, test_set)
    groups = ggda.grouping.make("grad-kmeans", run, data, group_size=16)
    attr = ggda.attribute("tracin", run, data.train, data.test, groups)

A :class:`ModelRun` is what attribution, grouping and the retraining evaluation ask of a run, the same
interface as ``ggda.train.TrainRun`` (which ggda's own training returns): the model, its checkpoints
with the learning rate in force at each (TracIn), the weight decay of its objective (IF's curvature is
that of the mean loss plus (weight_decay / 2)|theta|^2, docs/methods.md) and, for the retraining
evaluation, how to train it again on a subset.

The model is any ``nn.Module`` mapping the inputs of a batch (one tensor, or several such as token ids
and a mask) to logits (B, C). Grouping on representations and gradients needs its last linear layer
(the ``head``, whose output is the logits) and the head's input (the penultimate representation): by
default the last ``nn.Linear`` registered in the model, checked on the first batch it sees (its output
must equal the model's); pass ``head=`` (the layer or its name) where that is not the one.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ._io import load_torch
from .hparams import HParams
from .models.base import Classifier
from .train import Checkpoint

#: How a ModelRun's model is named in recorded options and tables.
MODEL_NAME = "custom"


def _find_head(model: nn.Module, head: nn.Module | str | None) -> tuple[str, nn.Linear]:
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if head is None:
        if not linears:
            raise ValueError(f"{type(model).__name__} has no nn.Linear layer: pass head= (the last linear layer, "
                             f"whose output is the logits) to group by representations or gradients")
        return linears[-1]
    if isinstance(head, str):
        found = dict(model.named_modules()).get(head)
        if not isinstance(found, nn.Linear):
            raise ValueError(f"head={head!r} is not an nn.Linear of {type(model).__name__} (its linear layers: "
                             f"{', '.join(n for n, _ in linears) or 'none'})")
        return head, found
    for name, m in linears:
        if m is head:
            return name, m
    raise ValueError(f"head is not an nn.Linear layer of {type(model).__name__}")


class WrappedClassifier(Classifier):
    """A user's model as a ggda Classifier: ``forward`` is the model's, ``head`` its last linear layer and
    ``features`` the head's input, captured by a hook during the model's own forward pass."""

    def __init__(self, net: nn.Module, head: nn.Module | str | None = None):
        super().__init__()
        self.net = net
        self.head_name, linear = _find_head(net, head)
        # a plain attribute, not a second registration of the layer: a module under two names breaks
        # torch.func.functional_call's swap and restore of its parameters
        object.__setattr__(self, "head", linear)
        self._checked = False

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.logits_from_head(self.net(*inputs))

    def features(self, *inputs: torch.Tensor) -> torch.Tensor:
        captured = {}
        hook = self.head.register_forward_hook(lambda _m, args, out: captured.update(h=args[0], z=out))
        try:
            logits = self.net(*inputs)
        finally:
            hook.remove()
        if "h" not in captured:
            raise ValueError(f"the head {self.head_name!r} is not called by {type(self.net).__name__}.forward: "
                             f"pass head= (the layer whose output is the logits)")
        if not self._checked:
            if captured["z"].shape != logits.shape or not torch.allclose(captured["z"], logits, rtol=1e-5, atol=1e-6):
                raise ValueError(f"the output of {self.head_name!r} is not {type(self.net).__name__}'s output (the "
                                 f"logits): pass head= naming the last linear layer, with nothing after it")
            self._checked = True
        return captured["h"]


def _state_dict(ck: Any, what: str) -> dict[str, torch.Tensor]:
    if isinstance(ck, nn.Module):
        ck = ck.state_dict()
    elif isinstance(ck, (str, os.PathLike)):
        ck = load_torch(ck)
        ck = ck.get("state_dict", ck) if isinstance(ck, dict) and "state_dict" in ck else ck
    if not isinstance(ck, dict) or not all(isinstance(v, torch.Tensor) for v in ck.values()):
        raise TypeError(f"{what} must be a state dict, a path to one saved with torch.save, or an nn.Module, "
                        f"got {type(ck).__name__}")
    return {k: v.detach().cpu().clone() for k, v in ck.items()}


@dataclass
class ModelRun:
    """A trained classifier for ggda (module docstring).

    model: any ``nn.Module`` mapping inputs to logits (B, C), with its final parameters.
    checkpoints: TracIn's checkpoints, each a state dict, a path to one (``torch.save``) or a model;
        default: the final parameters alone.
    lrs: the learning rate in force at each checkpoint (TracIn weighs each by it); default 1 each.
    weight_decay: lambda of the training objective's (lambda/2)|theta|^2 (IF's ridge); 0 if none.
    retrain: ``retrain(keep, seed) -> nn.Module``, training a fresh model on the training points ``keep``
        (int64 indices) with seed ``seed``; needed by the retraining evaluation only.
    head: the last linear layer (or its name in ``model.named_modules()``); default the last nn.Linear.
    """

    model: nn.Module
    checkpoints: Sequence[Any] | None = None
    lrs: Sequence[float] | None = None
    weight_decay: float = 0.0
    retrain: Callable[[np.ndarray, int], nn.Module] | None = None
    head: nn.Module | str | None = None
    model_name: str = field(default=MODEL_NAME, init=False)

    def __post_init__(self):
        if not isinstance(self.model, nn.Module):
            raise TypeError(f"model must be an nn.Module mapping inputs to logits, got {type(self.model).__name__}")
        net = self.model
        self.model = net if isinstance(net, Classifier) else WrappedClassifier(net, self.head)
        states = [net] if self.checkpoints is None else list(self.checkpoints)
        if not states:
            raise ValueError("checkpoints is empty: pass at least one, or None for the final parameters")
        lrs = [1.0] * len(states) if self.lrs is None else [float(lr) for lr in self.lrs]
        if len(lrs) != len(states):
            raise ValueError(f"lrs has {len(lrs)} learning rates for {len(states)} checkpoints: give one per checkpoint")
        self.checkpoints = [Checkpoint(step=i, epoch=float(i), lr=lr, state_dict=_state_dict(s, f"checkpoints[{i}]"))
                            for i, (s, lr) in enumerate(zip(states, lrs))]
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative, got {self.weight_decay}")
        self.hparams = HParams(weight_decay=float(self.weight_decay))

    def _net(self, model: nn.Module) -> nn.Module:
        return model.net if isinstance(model, WrappedClassifier) else model

    def model_at(self, index: int) -> nn.Module:
        """A copy of the model with the parameters of checkpoint ``index`` (eval mode)."""
        model = copy.deepcopy(self.model)
        try:
            self._net(model).load_state_dict(self.checkpoints[index].state_dict)
        except RuntimeError as err:
            raise ValueError(f"checkpoint {index} does not fit the model: {str(err).splitlines()[0]}") from None
        return model.eval()

    def retrained(self, keep: np.ndarray, seed: int) -> tuple[nn.Module, float]:
        """(model trained by ``retrain`` on the points ``keep``, its wall time in seconds)."""
        if self.retrain is None:
            raise ValueError("this ModelRun has no retrain function: pass retrain=(keep, seed) -> model to "
                             "ModelRun for the retraining evaluation")
        start = time.perf_counter()
        model = self.retrain(np.asarray(keep, dtype=np.int64), int(seed))
        if not isinstance(model, nn.Module):
            raise TypeError(f"retrain(keep, seed) must return the trained nn.Module, got {type(model).__name__}")
        wall = time.perf_counter() - start
        return (model if isinstance(model, Classifier) else WrappedClassifier(model, getattr(self.model, "head_name", None))), wall
