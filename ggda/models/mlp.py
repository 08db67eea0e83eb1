"""Logistic regression and fully connected networks on flattened inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .base import Classifier


class MLP(Classifier):
    """Flatten -> [Linear -> ReLU] * len(hidden) -> Linear head.

    With ``hidden=()`` this is (multinomial) logistic regression and ``features`` is the flattened input.
    With two classes and ``binary_head=True`` the head has one output (binary logistic regression).
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (), binary_head: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        out = 1 if (binary_head and num_classes == 2) else num_classes
        self.head = nn.Linear(width, out)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def flat_size(input_shape: Sequence[int]) -> int:
    return int(math.prod(input_shape))
