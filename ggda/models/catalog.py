"""What each model of the zoo takes, in plain Python (no torch): ``build`` enforces it, and the workflow
reads this file (without importing ggda) to reject a model that cannot take a data set's inputs, or an
option its class does not have, before any job runs."""

from __future__ import annotations

MODELS: tuple[str, ...] = ("lr", "ann-s", "ann-m", "cnn", "resnet9", "bert")

#: The data kinds (``ggda.data.DatasetInfo.kind``) each model takes: the MLPs flatten any fixed-size
#: array, the convolutional models need (C, H, W) images, BERT needs token ids.
INPUT_KINDS: dict[str, tuple[str, ...]] = {
    "lr": ("tabular", "image"),
    "ann-s": ("tabular", "image"),
    "ann-m": ("tabular", "image"),
    "cnn": ("image",),
    "resnet9": ("image",),
    "bert": ("text",),
}

#: The class each model is built from: (module of ggda.models, class name). Its constructor's
#: parameters, less those ``build`` fills from the data (DATA_ARGUMENTS), are the model's options.
CLASSES: dict[str, tuple[str, str]] = {
    "lr": ("mlp", "MLP"),
    "ann-s": ("mlp", "MLP"),
    "ann-m": ("mlp", "MLP"),
    "cnn": ("cnn", "SmallCNN"),
    "resnet9": ("resnet9", "ResNet9"),
    "bert": ("bert", "BertClassifier"),
}
#: Hidden layer sizes of the MLPs (lr has none), unless the model options give ``hidden``.
MLP_HIDDEN: dict[str, tuple[int, ...]] = {"lr": (), "ann-s": (64,), "ann-m": (128, 64)}
DATA_ARGUMENTS: tuple[str, ...] = ("in_features", "input_shape", "num_classes", "vocab_size", "max_length",
                                   "binary_head")


def models_for(kind: str) -> list[str]:
    """The models that take data of ``kind``, in zoo order."""
    return [m for m in MODELS if kind in INPUT_KINDS[m]]
