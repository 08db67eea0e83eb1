"""Where tensors go: the device a call runs on, and a batch moved there in the model's dtype."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def split_batch(batch: tuple[torch.Tensor, ...], model: torch.nn.Module, device: torch.device):
    """(inputs..., y) -> (inputs moved to ``device``, floating ones cast to the model's dtype; y)."""
    dtype = next(model.parameters()).dtype
    *inputs, y = batch
    inputs = [t.to(device, dtype=dtype) if t.is_floating_point() else t.to(device) for t in inputs]
    return inputs, y.to(device)
