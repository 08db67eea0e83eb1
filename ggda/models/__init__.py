"""The model zoo: ``ggda.models.build(name, data_meta)``.

Every model is a :class:`Classifier`: ``forward`` gives logits (B, C), ``features`` the penultimate
representation and ``head`` the last linear layer.

=========  ====================================================================================
name       architecture
=========  ====================================================================================
lr         logistic regression on the flattened input (one logit when there are two classes)
ann-s      one hidden layer of 64 ReLU units
ann-m      two hidden layers of 128 and 64 ReLU units
cnn        two 3x3 conv + max-pool stages (16, 32 channels), a 64-unit dense layer (images only)
resnet9    ResNet-9 (64-128-256-512 channels, option ``width``) (images only)
bert       BertForSequenceClassification; tiny random config offline, option ``pretrained`` (text only)
=========  ====================================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from .base import Classifier
from .catalog import INPUT_KINDS, MLP_HIDDEN, MODELS
from .mlp import MLP, flat_size


__all__ = ["build", "Classifier", "MODELS", "last_layer"]


def build(name: str, data_meta: Mapping[str, Any], **options: Any) -> Classifier:
    """Build an untrained model for a data set.

    name: one of ``MODELS``.
    data_meta: a DataBundle's ``meta`` (needs kind, input_shape, num_classes; vocab_size and
        max_length for text).
    options: architecture options: ``width`` (resnet9), ``pretrained`` (bert), ``hidden`` (a tuple
        overriding the hidden sizes of lr/ann-s/ann-m), ``channels``/``hidden`` (cnn).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    kind, shape, classes = data_meta["kind"], tuple(data_meta["input_shape"]), data_meta["num_classes"]
    if kind not in INPUT_KINDS[name]:
        if kind == "text":
            raise ValueError(f"text data sets need the bert model, got {name!r}")
        raise ValueError(f"model {name!r} needs {' or '.join(INPUT_KINDS[name])} data, got a {kind} data set")
    if name in MLP_HIDDEN:
        hidden = tuple(options.pop("hidden", MLP_HIDDEN[name]))
        model: Classifier = MLP(flat_size(shape), classes, hidden, binary_head=(name == "lr"), **options)
    elif name == "cnn":
        from .cnn import SmallCNN

        if len(shape) != 3:
            raise ValueError(f"cnn needs (C, H, W) images, got input_shape={shape}")
        model = SmallCNN(shape, classes, **options)
    elif name == "resnet9":
        from .resnet9 import ResNet9

        model = ResNet9(shape, classes, **options)
    else:
        from .bert import BertClassifier

        model = BertClassifier(classes, data_meta["vocab_size"], data_meta["max_length"], **options)
    return model


def last_layer(model: Classifier) -> nn.Linear:
    """The model's last linear layer (its ``head``)."""
    return model.head
