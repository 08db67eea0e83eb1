"""A user's own data as a DataBundle: any ``torch.utils.data.Dataset`` (or DataLoader) whose items are
``(inputs..., label)``, gathered into tensors once, in index order."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset


def as_tensor_dataset(data: Any, what: str = "data") -> TensorDataset:
    """``data`` as a TensorDataset: a TensorDataset as it is; a DataLoader's dataset (in index order, not
    the loader's shuffled batches); any map-style Dataset with items ``(inputs..., label)`` stacked item by
    item (each input a tensor or array of one shape; the label an integer, gathered as int64)."""
    if isinstance(data, DataLoader):
        data = data.dataset
    if isinstance(data, TensorDataset):
        if len(data.tensors) < 2:
            raise ValueError(f"{what}: every item must be a tuple (inputs..., label); this TensorDataset holds "
                             f"{len(data.tensors)} tensor(s)")
        return data
    if not isinstance(data, Dataset) or not hasattr(data, "__len__"):
        raise TypeError(f"{what} must be a torch Dataset with items (inputs..., label), a DataLoader over one, "
                        f"or a TensorDataset; got {type(data).__name__}")
    n = len(data)
    if n == 0:
        raise ValueError(f"{what} is empty: pass at least one point")
    items = [data[i] for i in range(n)]
    lengths = sorted({len(item) if isinstance(item, (tuple, list)) else 1 for item in items})
    if len(lengths) != 1 or lengths[0] < 2:
        raise ValueError(f"{what}: every item must be a tuple (inputs..., label) of the same length; found "
                         f"item lengths {lengths}")
    columns = []
    for j in range(len(items[0])):
        values = [torch.as_tensor(item[j]) for item in items]
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) != 1:
            raise ValueError(f"{what}: element {j} of the items has different shapes {sorted(shapes)[:3]}: "
                             f"pad or resize them to one shape")
        columns.append(torch.stack(values))
    label = columns[-1]
    if label.is_floating_point():
        if not torch.equal(label, label.round()):
            raise ValueError(f"{what}: the labels (last element of each item) must be class indices, "
                             f"got non-integer values")
    columns[-1] = label.long().reshape(n)
    columns[:-1] = [c.float() if c.is_floating_point() else c for c in columns[:-1]]
    return TensorDataset(*columns)


def from_datasets(train: Any, test: Any, num_classes: int | None = None, name: str = "custom",
                  class_names: list[str] | None = None, kind: str | None = None):
    """A :class:`ggda.data.DataBundle` from the user's training and test data (any Dataset, DataLoader or
    TensorDataset, items ``(inputs..., label)``): what grouping and the retraining evaluation take.

    num_classes: default one more than the largest label in either split. kind: "tabular" (one input of
    shape (F,)), "image" ((C, H, W)) or "text" (several integer inputs); default inferred from the shapes.
    """
    from . import DataBundle

    tr, te = as_tensor_dataset(train, "train"), as_tensor_dataset(test, "test")
    if len(tr.tensors) != len(te.tensors) or any(a.shape[1:] != b.shape[1:] for a, b in zip(tr.tensors, te.tensors)):
        raise ValueError("train and test items differ in their number or shapes of inputs: "
                         f"{[tuple(t.shape[1:]) for t in tr.tensors]} vs {[tuple(t.shape[1:]) for t in te.tensors]}")
    labels = torch.cat([tr.tensors[-1], te.tensors[-1]])
    if int(labels.min()) < 0:
        raise ValueError("labels must be class indices 0, 1, ...; found negative labels")
    classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if int(labels.max()) >= classes:
        raise ValueError(f"num_classes={classes} but a label is {int(labels.max())}")
    inputs = tr.tensors[:-1]
    if kind is None:
        kind = "text" if len(inputs) > 1 else ("image" if inputs[0].dim() == 4 else "tabular")
    y = tr.tensors[-1].numpy()
    meta = {"kind": kind, "input_shape": list(inputs[0].shape[1:]), "num_classes": classes,
            "n_train": len(tr), "n_test": len(te), "source": "user data (ggda.data.from_datasets)"}
    return DataBundle(name, tr, te, classes, class_names or [str(c) for c in range(classes)], None,
                      np.zeros(0, dtype=np.int64), y.copy(), meta)
