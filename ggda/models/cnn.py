"""A small convolutional network for 28x28 (MNIST) and 8x8 (digits) single- or multi-channel images."""

from __future__ import annotations

import torch
from torch import nn

from .base import Classifier


class SmallCNN(Classifier):
    """conv3x3(C->c1) ReLU maxpool2 -> conv3x3(c1->c2) ReLU maxpool2 -> flatten -> Linear(->hidden) ReLU -> head.

    Works for any input whose height and width are at least 4 (spatial size is floored by each pool).
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int,
                 channels: tuple[int, int] = (16, 32), hidden: int = 64):
        super().__init__()
        c, h, w = input_shape
        if h < 4 or w < 4:
            raise ValueError(f"SmallCNN needs images of at least 4x4, got input_shape={tuple(input_shape)}")
        c1, c2 = channels
        self.body = nn.Sequential(
            nn.Conv2d(c, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(c2 * (h // 4) * (w // 4), hidden), nn.ReLU(),
        )
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
