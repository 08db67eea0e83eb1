"""ResNet-9, the small residual network used for CIFAR-10 in the data attribution literature (TRAK, datamodels)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Classifier


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block = nn.Sequential(_conv_bn(channels, channels), _conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResNet9(Classifier):
    """prep(64) -> layer1(128, pool, residual) -> layer2(256, pool) -> layer3(512, pool, residual) -> pool -> head.

    ``width`` scales every channel count (1.0 = the standard 64-128-256-512); smaller widths make
    CPU runs feasible. ``features`` is the globally max-pooled 8*width*64 vector.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, width: float = 1.0):
        super().__init__()
        c = [max(1, int(round(k * width))) for k in (64, 128, 256, 512)]
        self.body = nn.Sequential(
            _conv_bn(input_shape[0], c[0]),
            _conv_bn(c[0], c[1]), nn.MaxPool2d(2), _Residual(c[1]),
            _conv_bn(c[1], c[2]), nn.MaxPool2d(2),
            _conv_bn(c[2], c[3]), nn.MaxPool2d(2), _Residual(c[3]),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(c[3], num_classes, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
