"""The data set registry: one entry per data set, with what `ggda.data.load` needs to know.

Plain Python (no torch, no numpy): the workflow reads this file without importing ggda to check a
config's data sets (their kind, whether they need files, where those are looked for) before any job runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Environment variable naming the folder that holds one sub-folder of raw files per data set.
DATA_DIR_ENV = "GGDA_DATA_DIR"


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a registered data set.

    kind: "tabular" (feature vectors), "image" (channels-first arrays) or "text" (sentence pairs).
    models: the model names of ``ggda.models`` this data set is used with in the paper's experiments.
    bundled: True when the data ship with scikit-learn (always offline).
    source: where the published files come from (human-readable).
    train_rows, example_size: training examples of the full split and numbers per example (features,
        pixels, or tokens at the default max_length): the workflow sizes cluster jobs from them.
    """

    name: str
    kind: str
    num_classes: int
    models: tuple[str, ...]
    bundled: bool
    source: str
    train_rows: int
    example_size: int


REGISTRY: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo("digits", "image", 10, ("lr", "ann-s", "cnn"), True,
                    "scikit-learn load_digits (UCI optical digits, 8x8, 1,797 images)", 1437, 64),
        DatasetInfo("breast_cancer", "tabular", 2, ("lr", "ann-s"), True,
                    "scikit-learn load_breast_cancer (Wisconsin diagnostic, 569 rows, 30 features)", 455, 30),
        DatasetInfo("heloc", "tabular", 2, ("lr", "ann-s", "ann-m"), False,
                    "FICO HELOC as prepared by OpenXAI (Harvard Dataverse files 8550942, 8550943)", 7896, 23),
        DatasetInfo("affairs", "tabular", 2, ("lr", "ann-s", "ann-m"), False,
                    "Fair (1978) extramarital affairs, statsmodels fair.csv (tag v0.14.4), md5-checked; "
                    "fixed 80/20 split", 5093, 8),
        DatasetInfo("mnist", "image", 10, ("lr", "ann-m", "cnn"), False,
                    "MNIST IDX files (torchvision mirrors), md5-checked", 60000, 784),
        DatasetInfo("cifar10", "image", 10, ("resnet9",), False,
                    "cifar-10-python.tar.gz (University of Toronto), md5-checked", 50000, 3072),
        DatasetInfo("qnli", "text", 2, ("bert",), False,
                    "GLUE QNLIv2.zip (train.tsv as train, dev.tsv as test)", 104743, 128),
    ]
}


def default_root(name: str) -> Path:
    """``$GGDA_DATA_DIR/<name>`` if that variable is set, else ``data/raw/<name>`` under the working directory."""
    return Path(os.environ.get(DATA_DIR_ENV, "data/raw")) / name


def get_info(name: str) -> DatasetInfo:
    """Return the registry entry of ``name``; raise ValueError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}: choose one of {', '.join(sorted(REGISTRY))}"
        ) from None
