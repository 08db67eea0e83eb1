"""A prepared data set as one file: the tensors of a DataBundle (and of extra splits, e.g. a validation
split), so that later steps read tensors instead of parsing, or downloading, the published files again."""

from __future__ import annotations

import json
import os

import torch
from torch.utils.data import TensorDataset

from .._io import jsonable, load_torch, save_torch


def save_bundle(bundle, path: str | os.PathLike, extra: dict[str, TensorDataset] | None = None) -> None:
    """Write a DataBundle (and named extra TensorDatasets) to ``path``, atomically; the same bundle gives
    the same bytes."""
    extra = extra or {}
    payload = {
        "name": bundle.name,
        "train": list(bundle.train.tensors),
        "test": list(bundle.test.tensors),
        "num_classes": int(bundle.num_classes),
        "class_names": list(bundle.class_names),
        "feature_names": None if bundle.feature_names is None else list(bundle.feature_names),
        "flipped": torch.as_tensor(bundle.flipped, dtype=torch.int64),
        "clean_labels": torch.as_tensor(bundle.clean_labels, dtype=torch.int64),
        "meta": json.dumps(bundle.meta, sort_keys=True, default=jsonable),
        "extra": {k: list(v.tensors) for k, v in extra.items()},
    }
    save_torch(payload, path)


def load_bundle(path: str | os.PathLike):
    """(DataBundle, {name: TensorDataset}) from a file written by :func:`save_bundle`; a missing or
    damaged file is an error naming the path."""
    from . import DataBundle

    p = load_torch(path, "prepared data set")
    bundle = DataBundle(p["name"], TensorDataset(*p["train"]), TensorDataset(*p["test"]), p["num_classes"],
                        p["class_names"], p["feature_names"], p["flipped"].numpy(), p["clean_labels"].numpy(),
                        json.loads(p["meta"]))
    return bundle, {k: TensorDataset(*v) for k, v in p["extra"].items()}
