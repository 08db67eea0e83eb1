"""The interface every model of the zoo exposes."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """A classifier split into a representation and a last linear layer.

    ``forward(*inputs)`` returns logits (B, C) = ``output(head(features(*inputs)))``.
    ``features(*inputs)`` returns the penultimate representation h (B, H); ``head`` is the last
    ``nn.Linear`` (H -> C, or H -> 1 for binary logistic regression). Grouping on representations and
    last-layer attribution use both. ``inputs`` are the items of a dataset minus the label: (x,) for
    tabular data and images, (input_ids, attention_mask) for text.
    """

    head: nn.Linear

    def features(self, *inputs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def logits_from_head(self, z: torch.Tensor) -> torch.Tensor:
        """Map the head's output to logits (B, C). A one-logit head z becomes [0, z] so that
        softmax cross-entropy equals the logistic loss with P(class 1) = sigmoid(z)."""
        if z.shape[-1] == 1:
            return torch.cat([torch.zeros_like(z), z], dim=-1)
        return z

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.logits_from_head(self.head(self.features(*inputs)))
